#!/usr/bin/env bash
# test-services.sh COMMAND [ARGS...]
#
# Why: dpsd's tests need real servers. This starts them, exports their
# addresses, runs COMMAND, stops what it started (also on failure or ctrl-c)
# and exits with COMMAND's status. Each variable already set in the
# environment (even to "") is kept, and its server is not started:
#   DPSD_TEST_AMQP_URL              shared broker from scripts/ensure-rabbitmq.sh
#                                   (127.0.0.1:5672); never restarted.
#   DPSD_TEST_MONGODB_URI           mongod if on PATH, else SecantusDB (PyPI, in
#                                   .venv/) with in-memory storage, on a free port.
#   DPSD_TEST_RESTARTABLE_AMQP_URL  private RabbitMQ node dpsd-test@localhost
#   DPSD_TEST_RESTARTABLE_NODE      (port 5673 or the next free one) that a test
#                                   may `rabbitmqctl -n NODE stop_app`/`start_app`;
#                                   root only (Debian's rabbitmqctl needs it).
# Private node, checked by hand: `stop_app` (~0.5 s) closes clients with 320
# CONNECTION_FORCED and the port refuses connections until `start_app` (~1.5 s;
# listening when it returns); durable queues and persistent messages survive.
# Logs: target/test-logs/. One run at a time (flock); a private node or
# SecantusDB left over by a killed run is stopped first.
#
# SecantusDB 0.7.0b3 (reports MongoDB 8.2.11, wire 27), checked with pymongo:
# - It advertises itself as primary of a one-node replica set "secantus" whose
#   host is exactly 127.0.0.1:PORT, so a plain mongodb://127.0.0.1:PORT URI
#   works (sessions, retryable writes, transactions, change streams too).
# - Work as mongod: upsert with $set/$push/$setOnInsert (and $each/$slice,
#   $inc, $unset, $addToSet, $pull, $currentDate, $min/$max), positional $ and
#   arrayFilters, update pipelines [{$set: ...}] (with $$NOW, also upserting),
#   find_one_and_update/replace with upsert, unique (also partial) and TTL
#   indexes, duplicate key -> code 11000 on insert, update and index build,
#   {"stages.worker": "w", "stages.status": "done"} (any-element semantics),
#   $elemMatch, count_documents, estimated_document_count, delete_many,
#   aggregate ($unwind/$group/$lookup), list_database_names (listDatabases),
#   drop_database, datetimes (ms precision).
# - SURPRISE: distinct() on a path through an array of sub-documents
#   ("stages.worker") returns [] (mongod returns the values); use aggregate
#   $unwind + $group instead. distinct on plain or array-of-scalar fields works.
# - Slower than mongod: ~1 ms per insert, and a query without an index scans in
#   Python (~12 ms over 1000 docs): index what tests query, keep data small.
# - SIGTERM takes ~1 s to stop it; :memory: data lives in a temp dir, which we
#   point (TMPDIR) at target/test-mongo so a killed run leaves nothing in /tmp.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
logs=$root/target/test-logs
run=$root/target/test-services # lock and pid file
mongo_dir=$root/target/test-mongo
rabbit_node=dpsd-test@localhost
mkdir -p "$logs" "$run"

exec 9>"$run/lock" # the private node's name is fixed: one run at a time
if ! flock -n 9; then
  echo "test-services: waiting for another run to finish..." >&2
  flock 9
fi

die() { echo "test-services: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while port_open "$p"; do p=$((p + 1)); done; echo "$p"; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# Debian's rabbitmq-server runs as user rabbitmq: its dirs must be reachable.
rabbit_dir=$root/target/test-rabbit
# shellcheck disable=SC2016 # $1 is expanded by su's shell
if is_root && ! su rabbitmq -s /bin/sh -c 'test -x "$1"' _ "$root/target" 2>/dev/null; then
  rabbit_dir=/tmp/dpsd-test-rabbit
fi

stop_mongo() {
  local pid
  if pid=$(cat "$run/mongo.pid" 2>/dev/null) &&
    ps -o args= -p "$pid" 2>/dev/null | grep -qE 'secantus|mongod'; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$run/mongo.pid" "$mongo_dir"
}

stop_rabbit() {
  local pid
  pid=$(cat "$rabbit_dir/pid" 2>/dev/null) || pid=
  if epmd -names 2>/dev/null | grep -q "^name ${rabbit_node%@*} "; then
    timeout 60 rabbitmqctl -q -n "$rabbit_node" stop >/dev/null 2>&1 || true
  fi
  if [[ -n $pid ]] && ps -o comm= -p "$pid" 2>/dev/null | grep -q beam; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$rabbit_dir"
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  set +e
  [[ -n ${rabbit_job:-} ]] && kill "$rabbit_job" 2>/dev/null && wait "$rabbit_job"
  [[ -n ${mongo_started:-} ]] && stop_mongo &
  [[ -n ${rabbit_started:-} ]] && stop_rabbit
  wait
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_rabbit() { # prints the AMQP port once the node is up
  local port dist deadline=$((SECONDS + 30))
  port=$(free_port 5673)
  dist=$(free_port $((port + 20000)))
  mkdir -p "$rabbit_dir"
  echo '[].' >"$rabbit_dir/enabled_plugins" # no management: 15672 stays free
  echo "listeners.tcp.1 = 127.0.0.1:$port" >"$rabbit_dir/rabbitmq.conf"
  # own env file, so /etc/rabbitmq/rabbitmq-env.conf's NODENAME is not used
  printf '%s\n' ERL_EPMD_ADDRESS=127.0.0.1 \
    'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$rabbit_dir/rabbitmq-env.conf"
  chown -R rabbitmq:rabbitmq "$rabbit_dir"
  RABBITMQ_NODENAME=$rabbit_node RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$dist \
    RABBITMQ_CONF_ENV_FILE=$rabbit_dir/rabbitmq-env.conf \
    RABBITMQ_CONFIG_FILE=$rabbit_dir/rabbitmq.conf \
    RABBITMQ_ADVANCED_CONFIG_FILE=$rabbit_dir/advanced.config \
    RABBITMQ_ENABLED_PLUGINS_FILE=$rabbit_dir/enabled_plugins \
    RABBITMQ_MNESIA_BASE=$rabbit_dir/mnesia RABBITMQ_LOG_BASE=$rabbit_dir/log \
    RABBITMQ_PID_FILE=$rabbit_dir/pid \
    rabbitmq-server -detached 9>&-
  # await_startup fails at once until the node has registered with epmd
  until rabbitmqctl -q -n "$rabbit_node" await_startup --timeout 30 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 30 "$rabbit_dir/log/$rabbit_node.log" >&2; return 1; }
    sleep 0.5
  done
  port_open "$port" || return 1
  echo "$port"
}

start_mongo() { # sets mongo_port once the server accepts connections
  local deadline=$((SECONDS + 60))
  mongo_port=$(free_port 27018)
  mkdir -p "$mongo_dir"
  if command -v mongod >/dev/null 2>&1; then
    mongod --bind_ip 127.0.0.1 --port "$mongo_port" --dbpath "$mongo_dir" \
      >"$logs/mongo.log" 2>&1 9>&- &
  else
    local python
    python=$("$root/scripts/secantus-venv.sh")
    touch "$mongo_dir/secantusd.toml" # so no other secantusd.toml is picked up
    (cd "$mongo_dir" && TMPDIR=$mongo_dir exec "$python" -m secantus \
      --config secantusd.toml --host 127.0.0.1 --port "$mongo_port" \
      --storage-path :memory: >"$logs/mongo.log" 2>&1 9>&-) &
  fi
  echo $! >"$run/mongo.pid"
  until port_open "$mongo_port"; do
    if ((SECONDS >= deadline)) || ! kill -0 $! 2>/dev/null; then
      tail -n 30 "$logs/mongo.log" >&2
      die "MongoDB server did not come up on 127.0.0.1:$mongo_port (log: $logs/mongo.log)"
    fi
    sleep 0.1
  done
}

started=$SECONDS
"$root/scripts/ensure-rabbitmq.sh"
export DPSD_TEST_AMQP_URL=${DPSD_TEST_AMQP_URL-amqp://guest:guest@127.0.0.1:5672/%2f}

if [[ -z ${DPSD_TEST_RESTARTABLE_AMQP_URL+set} ]]; then
  if is_root && command -v rabbitmqctl >/dev/null; then
    rabbit_started=1
    stop_rabbit # a node left over by a killed run
    start_rabbit >"$run/rabbit.port" 2>"$logs/rabbit-restartable.log" &
    rabbit_job=$!
  else
    echo "test-services: not root: no restartable RabbitMQ node (that test skips)" >&2
  fi
fi

if [[ -z ${DPSD_TEST_MONGODB_URI+set} ]]; then
  mongo_started=1
  stop_mongo # a server left over by a killed run
  start_mongo
  export DPSD_TEST_MONGODB_URI=mongodb://127.0.0.1:$mongo_port
fi

if [[ -n ${rabbit_job:-} ]]; then
  wait "$rabbit_job" || { cat "$logs/rabbit-restartable.log" >&2;
    die "restartable RabbitMQ node $rabbit_node did not start (see $rabbit_dir/log)"; }
  rabbit_job='' rabbit_port=$(cat "$run/rabbit.port")
  export DPSD_TEST_RESTARTABLE_AMQP_URL=amqp://guest:guest@127.0.0.1:$rabbit_port/%2f
  export DPSD_TEST_RESTARTABLE_NODE=$rabbit_node
fi
echo "test-services: servers ready in $((SECONDS - started)) s" >&2

set +e
"$@" 9>&-
status=$?
set -e
exit "$status"
