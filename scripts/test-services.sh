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
#                                   may `rabbitmqctl -n NODE stop_app`/`start_app`.
#   DPSD_TEST_TLS_AMQP_URL          private node dpsd-tls@localhost with only a
#   DPSD_TEST_TLS_DIR               TLS listener, amqps://guest:guest@localhost:
#                                   PORT/%2f (5671 or the next free port; the
#                                   URL says localhost, the host name its
#                                   certificate is for), and the folder of the
#                                   certificates scripts/test-certs.sh made for
#                                   it (file names in that script: ca.pem,
#                                   server.pem, client.pem/.key, other-ca.pem,
#                                   other-client.pem/.key, ...). verify_peer with
#                                   fail_if_no_peer_cert false: a client without
#                                   a certificate connects, one signed by
#                                   other-ca.pem is refused.
#   DPSD_TEST_CLUSTER_URLS          three-node cluster dpsd-c1..3@localhost
#   DPSD_TEST_CLUSTER_NODES         (scripts/rabbit-cluster.sh; ports 5681.. or
#                                   the next free): its comma-separated
#                                   amqp://guest:guest@127.0.0.1:PORT/%2f URLs
#                                   and node names, in the same order. Shared
#                                   by the tests: one that stops a node starts
#                                   its own (PrivateCluster in tests/common).
# The private nodes are root only (Debian's rabbitmqctl needs it): as another
# user they are skipped with a message, and their tests fail saying so. They
# start side by side in the background while MongoDB starts (a node boots in
# 5-10 s alone on 2 cores; five side by side are ready in ~20 s, the cluster
# last: 15-20 s added to a run); the "servers ready" line says how long each
# took. Also exported, for the harness's private clusters:
#   DPSD_TEST_RABBIT_DIR            where they keep their nodes (the trap stops
#                                   any a killed test left there)
#   DPSD_TEST_RABBIT_LOGS           where a private node's log is copied when it
#                                   stops (target/test-logs/rabbit/NODE.log)
# Restartable node, checked by hand: `stop_app` (~0.5 s) closes clients with 320
# CONNECTION_FORCED and the port refuses connections until `start_app` (~1.5 s;
# listening when it returns); durable queues and persistent messages survive.
# Logs: target/test-logs/ (a node's own log in rabbit/ once it stopped). One run
# at a time (flock); a private node, cluster or SecantusDB left over by a
# killed run is stopped first.
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
scripts=$root/scripts
logs=$root/target/test-logs
run=$root/target/test-services # lock and pid file
mongo_dir=$root/target/test-mongo
rabbit_node=dpsd-test@localhost
tls_node=dpsd-tls@localhost
cluster_nodes=(dpsd-c1@localhost dpsd-c2@localhost dpsd-c3@localhost)
mkdir -p "$logs" "$run"

exec 9>"$run/lock" # the private nodes' names are fixed: one run at a time
if ! flock -n 9; then
  echo "test-services: waiting for another run to finish..." >&2
  flock 9
fi

die() { echo "test-services: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while port_open "$p"; do p=$((p + 1)); done; echo "$p"; }
is_root() { [[ $(id -u) -eq 0 ]]; }
# For a server's subshell: it keeps none of our descriptors (our lock, or the
# lock of a `flock /tmp/dpsd-suite.lock` around us, which a server left over
# by a killed run would otherwise hold, blocking every later run).
close_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd/"*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-"
  done
  return 0
}

# The private nodes start side by side, so two must never pick the same free
# port: take_port sets $port to the first free one from $1 not taken before.
taken=' '
take_port() {
  port=$1
  while port_open "$port" || [[ $taken == *" $port "* ]]; do port=$((port + 1)); done
  taken+="$port "
}

# Debian's rabbitmq-server runs as user rabbitmq: its dirs must be reachable.
rabbit_dir=$root/target/test-rabbit
# shellcheck disable=SC2016 # $1 is expanded by su's shell
if is_root && ! su rabbitmq -s /bin/sh -c 'test -x "$1"' _ "$root/target" 2>/dev/null; then
  rabbit_dir=/tmp/dpsd-test-rabbit
fi
# Where the private nodes' logs go when they stop (scripts/rabbit-node.sh).
export DPSD_TEST_RABBIT_LOGS=$logs/rabbit

stop_mongo() {
  local pid
  if pid=$(cat "$run/mongo.pid" 2>/dev/null) &&
    grep -qE 'secantus|mongod' < <(ps -o args= -p "$pid" 2>/dev/null); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$run/mongo.pid" "$mongo_dir"
}

# Every private node of this bench, side by side: ours by their fixed names
# (found by name even when their folder is gone), and the clusters tests
# started in private/ (by their folders). For the trap, and for what a killed
# run left over.
stop_rabbits() {
  local dir node i=0 job
  local -a jobs=()
  if [[ -n ${rabbit_started:-} ]]; then
    "$scripts/rabbit-node.sh" stop "$rabbit_dir/restartable" "$rabbit_node" &
    jobs+=($!)
  fi
  if [[ -n ${tls_started:-} ]]; then
    "$scripts/rabbit-node.sh" stop "$rabbit_dir/tls" "$tls_node" &
    jobs+=($!)
  fi
  if [[ -n ${cluster_started:-} ]]; then
    for node in "${cluster_nodes[@]}"; do
      i=$((i + 1))
      "$scripts/rabbit-node.sh" stop "$rabbit_dir/cluster/$i" "$node" &
      jobs+=($!)
    done
  fi
  for dir in "$rabbit_dir"/private/*/; do
    [[ -d $dir ]] || continue
    "$scripts/rabbit-cluster.sh" stop "${dir%/}" &
    jobs+=($!)
  done
  # these jobs only: a bare `wait` would wait for the MongoDB server too
  for job in "${jobs[@]}"; do wait "$job" || true; done
  [[ -n ${tls_started:-} ]] && rm -rf "$rabbit_dir/certs"
  [[ -n ${cluster_started:-} ]] && rm -rf "$rabbit_dir/cluster"
  rm -rf "$rabbit_dir/private"
  rmdir "$rabbit_dir" 2>/dev/null || true
}

# A background start (and the rabbitmqctl calls it is making), before its node stops.
# shellcheck disable=SC2317 # called by the EXIT trap
kill_tree() {
  local kids kid
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null) || kids=
  kill "$1" 2>/dev/null || true
  for kid in $kids; do kill_tree "$kid"; done
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  set +e
  local job mongo_stop=''
  for job in ${rabbit_job:-} ${tls_job:-} ${cluster_job:-}; do
    kill_tree "$job"
    wait "$job" 2>/dev/null
  done
  if [[ -n ${mongo_started:-} ]]; then
    stop_mongo &
    mongo_stop=$!
  fi
  stop_rabbits
  [[ -n $mongo_stop ]] && wait "$mongo_stop"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP # a closed terminal: stop the nodes all the same

# In the background: runs "$@" with its output in $logs/$1.log and writes how
# many seconds it took to $run/$1.secs (for the "servers ready" line).
timed() {
  local name=$1 start=$SECONDS
  shift
  "$@" >"$logs/$name.log" 2>&1 9>&- || return
  echo $((SECONDS - start)) >"$run/$name.secs"
}

# shellcheck disable=SC2317 # called through timed
start_tls() { # the certificates, then the node that uses them
  "$scripts/test-certs.sh" "$rabbit_dir/certs"
  local certs=$rabbit_dir/certs
  "$scripts/rabbit-node.sh" start "$rabbit_dir/tls" "$tls_node" "$tls_port" "$tls_dist" \
    'listeners.tcp = none' "listeners.ssl.default = 127.0.0.1:$tls_port" \
    "ssl_options.cacertfile = $certs/ca.pem" "ssl_options.certfile = $certs/server.pem" \
    "ssl_options.keyfile = $certs/server.key" 'ssl_options.verify = verify_peer' \
    'ssl_options.fail_if_no_peer_cert = false'
}

start_mongo() { # sets mongo_port once the server accepts connections
  local deadline=$((SECONDS + 60))
  mongo_port=$(free_port 27018)
  mkdir -p "$mongo_dir"
  if command -v mongod >/dev/null 2>&1; then
    (close_fds && exec mongod --bind_ip 127.0.0.1 --port "$mongo_port" \
      --dbpath "$mongo_dir" >"$logs/mongo.log" 2>&1) &
  else
    local python
    python=$("$root/scripts/secantus-venv.sh")
    touch "$mongo_dir/secantusd.toml" # so no other secantusd.toml is picked up
    (close_fds && cd "$mongo_dir" && TMPDIR=$mongo_dir exec "$python" -m secantus \
      --config secantusd.toml --host 127.0.0.1 --port "$mongo_port" \
      --storage-path :memory: >"$logs/mongo.log" 2>&1) &
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

# Waits for a background start; dies with its output when it failed.
await_job() { # NAME JOB WHAT
  wait "$2" || { cat "$logs/$1.log" >&2; die "$3 did not start (output: $logs/$1.log)"; }
  ready+=", $3 $(cat "$run/$1.secs") s"
}

started=$SECONDS
ready=''
"$root/scripts/ensure-rabbitmq.sh"
export DPSD_TEST_AMQP_URL=${DPSD_TEST_AMQP_URL-amqp://guest:guest@127.0.0.1:5672/%2f}

# Which private nodes to start: those whose variable is not set.
[[ -z ${DPSD_TEST_RESTARTABLE_AMQP_URL+set} ]] && rabbit_started=1
[[ -z ${DPSD_TEST_TLS_AMQP_URL+set} ]] && tls_started=1
[[ -z ${DPSD_TEST_CLUSTER_URLS+set} ]] && cluster_started=1
if is_root && command -v rabbitmqctl >/dev/null; then
  rm -rf "$DPSD_TEST_RABBIT_LOGS" # the last run's; a leftover's log goes there now
  stop_rabbits # what a killed run left over (by the fixed names, and private/)
  mkdir -p "$rabbit_dir/private"
  export DPSD_TEST_RABBIT_DIR=$rabbit_dir/private
elif [[ -n ${rabbit_started:-}${tls_started:-}${cluster_started:-} ]]; then
  echo "test-services: not root: no private RabbitMQ nodes (restartable, TLS, cluster: their tests fail)" >&2
  rabbit_started='' tls_started='' cluster_started=''
fi

if [[ -n ${rabbit_started:-} ]]; then
  take_port 5673 && rabbit_port=$port
  take_port $((rabbit_port + 20000)) && rabbit_dist=$port
  timed rabbit-restartable "$scripts/rabbit-node.sh" start "$rabbit_dir/restartable" \
    "$rabbit_node" "$rabbit_port" "$rabbit_dist" &
  rabbit_job=$!
fi

if [[ -n ${tls_started:-} ]]; then
  take_port 5671 && tls_port=$port
  take_port $((tls_port + 20000)) && tls_dist=$port
  timed rabbit-tls start_tls &
  tls_job=$!
fi

if [[ -n ${cluster_started:-} ]]; then
  specs=()
  for node in "${cluster_nodes[@]}"; do
    take_port 5681 && amqp=$port
    take_port $((amqp + 20000))
    specs+=("$node:$amqp:$port")
  done
  timed rabbit-cluster "$scripts/rabbit-cluster.sh" start "$rabbit_dir/cluster" "${specs[@]}" &
  cluster_job=$!
fi

if [[ -z ${DPSD_TEST_MONGODB_URI+set} ]]; then
  mongo_started=1
  stop_mongo # a server left over by a killed run
  start_mongo
  export DPSD_TEST_MONGODB_URI=mongodb://127.0.0.1:$mongo_port
fi

if [[ -n ${rabbit_job:-} ]]; then
  await_job rabbit-restartable "$rabbit_job" "restartable node"
  rabbit_job=''
  export DPSD_TEST_RESTARTABLE_AMQP_URL=amqp://guest:guest@127.0.0.1:$rabbit_port/%2f
  export DPSD_TEST_RESTARTABLE_NODE=$rabbit_node
fi
if [[ -n ${tls_job:-} ]]; then
  await_job rabbit-tls "$tls_job" "TLS node"
  tls_job=''
  export DPSD_TEST_TLS_AMQP_URL=amqps://guest:guest@localhost:$tls_port/%2f
  export DPSD_TEST_TLS_DIR=$rabbit_dir/certs
fi
if [[ -n ${cluster_job:-} ]]; then
  await_job rabbit-cluster "$cluster_job" "cluster"
  cluster_job=''
  DPSD_TEST_CLUSTER_URLS=$(paste -sd, "$rabbit_dir/cluster/urls")
  DPSD_TEST_CLUSTER_NODES=$(IFS=,; echo "${cluster_nodes[*]}")
  export DPSD_TEST_CLUSTER_URLS DPSD_TEST_CLUSTER_NODES
fi
echo "test-services: servers ready in $((SECONDS - started)) s${ready:+ (${ready#, })}" >&2

set +e
"$@" 9>&-
status=$?
set -e
exit "$status"
