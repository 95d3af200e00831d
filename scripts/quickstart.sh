#!/usr/bin/env bash
# The README's first command: set up Valve, start it, and take a sample app from `git push`
# to serving HTTP on the embedded default (one process, Node.js and git only).
#
#   VALVE_PORT (default 7080)   VALVE_DATA_DIR (default ./.valve-data)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/setup.sh

port=${VALVE_PORT:-7080}
data=${VALVE_DATA_DIR:-$root/.valve-data}
server="http://127.0.0.1:$port"
export VALVE_CONFIG="$data/cli-config.json"
valve() { node "$root/bin/valve.js" "$@"; }
mkdir -p "$data"

if curl -s -o /dev/null "$server/api/me"; then
  echo "==> Valve is already running at $server"
else
  echo "==> starting Valve at $server (data in $data, log in $data/server.out)"
  nohup node "$root/bin/valve.js" server --data-dir "$data" --port "$port" >"$data/server.out" 2>&1 &
  echo $! >"$data/server.pid"
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$server/api/me" && break
    sleep 0.2
  done
  curl -s -o /dev/null "$server/api/me" || { cat "$data/server.out"; exit 1; }
fi

user=demo
password=${VALVE_DEMO_PASSWORD:-valve-demo-password}
if ! valve login --server "$server" --username "$user" --password "$password" >/dev/null 2>&1; then
  echo "==> signing up user '$user' in a new team 'dev'"
  valve signup --server "$server" --username "$user" --team dev --password "$password"
fi

if ! valve status dev/hello >/dev/null 2>&1; then
  echo "==> creating app dev/hello from the node-http template"
  valve apps create dev/hello --template node-http
fi

token=$(valve token "quickstart git push")
clone="$data/work/hello"
rm -rf "$clone"
mkdir -p "$data/work"
echo "==> cloning, changing and pushing the sample app"
git clone -q "http://$user:$token@127.0.0.1:$port/git/dev/hello.git" "$clone"
cd "$clone"
sed -i "s/VERSION = '[^']*'/VERSION = '$(date +%H%M%S)'/" greeting.js
git -c user.name="$user" -c user.email="$user@example.com" commit -qam "change the greeting's version"
git push -q origin main
cd "$root"

echo "==> following the pipeline run"
sleep 1
valve logs dev/hello -f
echo
valve status dev/hello
url=$(curl -s -H "authorization: Bearer $token" "$server/api/apps/dev/hello/environments" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].url))')
echo
echo "The sample app answers at $url :"
curl -s "$url"
echo
echo "Console:  $server/   (user $user, password $password)"
echo "CLI:      VALVE_CONFIG=$VALVE_CONFIG node bin/valve.js apps"
echo "Stop:     kill \$(cat $data/server.pid)   (the app keeps running; Valve re-adopts it when it starts again)"
