#!/usr/bin/env bash
# Installs what Valve needs on a fresh machine (Debian, Node.js 20, root or sudo) and builds it.
#   scripts/setup.sh          Valve itself: git, npm packages, build
#   scripts/setup.sh --test   also what the tests use: skopeo (a real registry client), chromium
set -euo pipefail
cd "$(dirname "$0")/.."

want=(git curl)
if [[ "${1:-}" == "--test" ]]; then want+=(skopeo chromium); fi
missing=()
for pkg in "${want[@]}"; do
  command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]} (apt)"
  SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Containers for the podman executor and its tests (runc, rlimits off: see scripts/setup-podman.sh).
if [[ "${1:-}" == "--test" && -f scripts/setup-podman.sh ]]; then bash scripts/setup-podman.sh; fi

stamp=node_modules/.valve-lock-stamp
if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp"; then
  echo "==> installing npm packages (better-sqlite3 compiles from source: about 90 s)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

echo "==> building"
npm run --silent build
