#!/usr/bin/env bash
# ensure-mongo.sh — makes sure a MongoDB-wire server answers on 127.0.0.1:27017,
# the address of the shipped etc/dpsd.yaml.
#
# Why: `make run` must work on a fresh machine. Uses `mongod` when installed,
# else SecantusDB (see secantus-venv.sh). The server is left running in the
# background, its data and log in state/ (git-ignored), like a local service.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=$root/state
port=27017
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_open "$port" && exit 0
mkdir -p "$state/mongo"
if command -v mongod >/dev/null 2>&1; then
  setsid mongod --bind_ip 127.0.0.1 --port "$port" --dbpath "$state/mongo" \
    >"$state/mongo.log" 2>&1 </dev/null &
else
  python=$("$root/scripts/secantus-venv.sh")
  touch "$state/mongo/secantusd.toml"
  (cd "$state/mongo" && exec setsid "$python" -m secantus --config secantusd.toml \
    --host 127.0.0.1 --port "$port" --storage-path "$state/mongo/data" \
    >"$state/mongo.log" 2>&1 </dev/null) &
fi
echo $! >"$state/mongo.pid"
for _ in $(seq 600); do
  port_open "$port" && { echo "MongoDB-wire server on 127.0.0.1:$port (log: state/mongo.log)" >&2; exit 0; }
  kill -0 "$(cat "$state/mongo.pid")" 2>/dev/null || break
  sleep 0.1
done
tail -n 20 "$state/mongo.log" >&2
echo "ensure-mongo: no server came up on 127.0.0.1:$port" >&2
exit 1
