#!/usr/bin/env bash
# rabbit-cluster.sh start DIR NODE:PORT:DIST_PORT NODE:PORT:DIST_PORT...
# rabbit-cluster.sh stop DIR
# rabbit-cluster.sh kill-node DIR I    SIGKILL node I's beam process; prints its pid
# rabbit-cluster.sh start-node DIR I   start node I again; returns once it is
#                                      running in the cluster again
# rabbit-cluster.sh running DIR I      the running nodes as node I sees them
#
# Why: production brokers are clusters, and dpsd must survive losing a node
# of one (SPEC 3.3). This runs a RabbitMQ cluster of private nodes on this
# machine, one rabbit-node.sh node each (own name, AMQP port on 127.0.0.1,
# distribution port, data in DIR/I): nodes are numbered from 1 in the order
# given. `start` boots node 1, then the others side by side, joining node 1
# as they boot (peer discovery, classic_config: they join one at a time under
# the backend's lock), and returns once node 1 sees
# them all running; it writes DIR/nodes (the names) and DIR/urls (their AMQP
# URLs, amqp://guest:guest@127.0.0.1:PORT/%2f), one a line, in order. A
# `start` that fails leaves what it started: the caller runs `stop DIR`
# (test-services' trap does, as PrivateCluster's Drop does).
# A killed node started again keeps its data and rejoins on its own (its
# mnesia remembers the cluster; the others are running). `stop` stops all
# nodes side by side and removes DIR.
# Root only, like rabbit-node.sh (the nodes share /var/lib/rabbitmq's cookie).
# Checked by hand with 3.10.8 on 2 cores: three nodes boot side by side and
# form the cluster in ~15 s, the time one boot takes beside the others (also
# when node 1 starts 8 s after the others: they retry every 500 ms). Joining
# them afterwards (stop_app, join_cluster, start_app) took 6 s more: a second
# boot of the app on each, and nine rabbitmqctl calls. Node 1 now boots alone
# first, one boot more: a node joining it while it is still booting can make
# its boot fail (incompatible_feature_flags, not_active, "All replicas on
# diskfull nodes are not active yet"; rabbitmq-server#4881), seen once in
# `make test` on 2026-12-07.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_sh=$here/rabbit-node.sh
die() { echo "rabbit-cluster: $*" >&2; exit 1; }
ctl() { # NODE ARGS...: rabbitmqctl on NODE, its output on failure
  local node=$1 out
  shift
  out=$(timeout 120 rabbitmqctl -q -n "$node" "$@" 2>&1) || {
    echo "$out" >&2
    return 1
  }
  printf '%s' "$out"
}
node_name() { sed -n "${2}p" "$1/nodes"; }
log_of() { echo "$1/$2/log/$(node_name "$1" "$2").log"; }

running() { # DIR I: the running nodes as node I sees them, one a line
  ctl "$(node_name "$1" "$2")" cluster_status --formatter json |
    grep -o '"running_nodes":\[[^]]*\]' | grep -o '"[^"]*@[^"]*"' | tr -d '"'
}

# Waits until node I sees every node of the cluster running (60 s at most).
await_all_running() { # DIR I
  local dir=$1 want deadline=$((SECONDS + 60)) seen
  want=$(sort "$dir/nodes")
  until seen=$(running "$dir" "$2" | sort) && [[ $seen == "$want" ]]; do
    ((SECONDS < deadline)) ||
      die "node $(node_name "$dir" "$2") sees running: $(echo "$seen" | paste -sd' ') (want: $(echo "$want" | paste -sd' '); logs: $dir/*/log)"
    sleep 0.5
  done
}

start() {
  local dir=$1 i=0 spec node port dist first=''
  shift
  [[ $# -ge 2 ]] || die "a cluster needs two nodes or more"
  mkdir -p "$dir"
  : >"$dir/nodes"
  : >"$dir/urls"
  local -a jobs=() conf=()
  for spec in "$@"; do
    i=$((i + 1))
    IFS=: read -r node port dist <<<"$spec"
    [[ -n $node && -n $port && -n $dist ]] || die "bad node spec '$spec' (NODE:PORT:DIST_PORT)"
    echo "$node" >>"$dir/nodes"
    echo "amqp://guest:guest@127.0.0.1:$port/%2f" >>"$dir/urls"
    # named after DIR, so that cluster_status tells clusters apart
    conf=("cluster_name = $(basename "$dir")")
    if [[ -z $first ]]; then
      first=$node
    else
      # Only node 1 is listed: a node listing another that is still blank
      # could cluster with it instead (and logs a harmless warning that it
      # is not in the list itself).
      conf+=('cluster_formation.peer_discovery_backend = classic_config'
        "cluster_formation.classic_config.nodes.1 = $first"
        'cluster_formation.discovery_retry_limit = 120'
        'cluster_formation.discovery_retry_interval = 500')
    fi
    "$node_sh" start "$dir/$i" "$node" "$port" "$dist" "${conf[@]}" &
    if ((i == 1)); then
      wait $! || die "node 1 did not start (log: $(log_of "$dir" 1))"
    else
      jobs+=($!)
    fi
  done
  for i in "${!jobs[@]}"; do
    wait "${jobs[$i]}" || die "node $((i + 2)) did not start (log: $(log_of "$dir" $((i + 2))))"
  done
  await_all_running "$dir" 1
}

stop() {
  local dir=$1 i=0 node
  [[ -f $dir/nodes ]] || { rm -rf "$dir"; return 0; }
  while read -r node; do
    i=$((i + 1))
    "$node_sh" stop "$dir/$i" "$node" &
  done <"$dir/nodes"
  local status=0 job
  for job in $(jobs -p); do wait "$job" || status=1; done
  rm -rf "$dir"
  return "$status"
}

start_node() {
  local dir=$1 i=$2 n
  "$node_sh" start "$dir/$i"
  n=$(wc -l <"$dir/nodes")
  # seen from another node when there is one: it is back for the others too
  await_all_running "$dir" $((i % n + 1))
}

[[ $# -ge 2 ]] || die "usage: $0 start|stop|kill-node|start-node|running DIR ..."
verb=$1 dir=$2
shift 2
case $verb in
  start) start "$dir" "$@" ;;
  stop) stop "$dir" ;;
  kill-node) [[ $# -eq 1 ]] || die "usage: kill-node DIR I"; "$node_sh" kill "$dir/$1" ;;
  start-node) [[ $# -eq 1 ]] || die "usage: start-node DIR I"; start_node "$dir" "$1" ;;
  running) [[ $# -eq 1 ]] || die "usage: running DIR I"; running "$dir" "$1" ;;
  *) die "unknown verb $verb (start, stop, kill-node, start-node, running)" ;;
esac
