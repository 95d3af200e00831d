#!/usr/bin/env bash
# Installs what the podman executor, the builders and their tests need (podman, buildah, runc,
# bubblewrap, a static busybox for test images, skopeo, docker-registry as a remote registry
# and apache2-utils for its htpasswd) and writes the containers.conf that makes
# `podman run` work on these machines: the default crun fails on their hybrid cgroups, and
# setting rlimits is not permitted, so: runtime runc, no default ulimits.
#
# Idempotent. Writes the settings to $CONTAINERS_CONF when that is set (podman then reads
# only that file), otherwise to /etc/containers/containers.conf.d/valve.conf.
set -euo pipefail

want=(podman buildah runc bubblewrap busybox-static skopeo docker-registry apache2-utils)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]} (apt)"
  SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

settings='[containers]
default_ulimits = []

[engine]
runtime = "runc"'

if [[ -n "${CONTAINERS_CONF:-}" ]]; then
  conf=$CONTAINERS_CONF
  if [[ -f $conf ]] && ! grep -q '^default_ulimits *= *\[\]' "$conf"; then
    echo "error: $conf exists without 'default_ulimits = []'; add these settings to it:" >&2
    echo "$settings" >&2
    exit 1
  fi
else
  conf=/etc/containers/containers.conf.d/valve.conf
fi
if [[ ! -f $conf ]]; then
  echo "==> writing $conf"
  SUDO=$([[ $(id -u) == 0 || -w $(dirname "$conf") ]] && echo "" || echo sudo)
  $SUDO mkdir -p "$(dirname "$conf")"
  printf '# Written by scripts/setup-podman.sh\n%s\n' "$settings" | $SUDO tee "$conf" >/dev/null
fi

podman info >/dev/null
echo "==> podman $(podman version --format '{{.Client.Version}}') ready (settings in $conf)"
