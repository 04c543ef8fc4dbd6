#!/usr/bin/env bash
# rabbit-node.sh start DIR NODE PORT DIST_PORT [CONF_LINE...]
# rabbit-node.sh start DIR        again, as it was (after `kill`, say)
# rabbit-node.sh stop DIR [NODE]  stop it (NODE: when DIR may be gone), remove DIR
# rabbit-node.sh kill DIR         SIGKILL its beam process; prints the pid
# rabbit-node.sh pid NODE         the OS pid of NODE's beam process, if it runs
#
# Why: the test bench needs RabbitMQ nodes of its own beside the shared broker
# (one to restart, one with TLS, clusters), each with its own node name, ports
# and data, none touching /etc/rabbitmq or /var/lib/rabbitmq's data. This is
# the one place that knows how to run such a node with Debian's
# rabbitmq-server; scripts/test-services.sh and scripts/rabbit-cluster.sh
# (hence the Rust harness) go through it.
#
# `start` makes a new node in DIR (removing what DIR held), writes
# DIR/rabbitmq.conf from the CONF_LINEs (without a `listeners.`
# line among them it adds a plain AMQP listener on 127.0.0.1:PORT), starts the
# node detached with its data and log in DIR (log: DIR/log/NODE.log) and
# returns once it has booted and PORT accepts connections (60 s at most; else
# it prints the log's tail and fails). The distribution listens on
# 127.0.0.1:DIST_PORT. No plugins (no management: 15672 stays free). Avoid
# ports 35672-35682: rabbitmqctl's own distribution takes them.
# `stop` is graceful (SIGTERM; SIGKILL after 20 s) and copies the node's log
# to $DPSD_TEST_RABBIT_LOGS/NODE.log first when that is set.
#
# Root only: Debian's wrappers run the server and rabbitmqctl as user
# rabbitmq (HOME /var/lib/rabbitmq), so every node and every rabbitmqctl
# shares the cookie /var/lib/rabbitmq/.erlang.cookie (what clustering needs);
# DIR must be reachable by that user (its parents searchable: o+x).
# Checked by hand with 3.10.8 on Erlang 25: a node boots in 5-10 s alone on 2
# cores, 15-20 s beside four others (4-7 s of CPU each, whatever +S: the
# bench's start-up is CPU-bound). The beam's command line
# does not name the node (3.10 starts its distribution late), its environment
# does (RABBITMQ_NODENAME), which is how `pid` finds it. 3.10 already passes
# +sbwt none (no busy-waiting schedulers) by default; we say it again so that
# another version cannot change it under us.
set -euo pipefail

die() { echo "rabbit-node: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# No `producer | grep -q` here: grep leaves at its first match, a producer still
# writing dies of SIGPIPE, and pipefail makes a found line a failure (seen: a running
# node's beam.smp not found, its environment being longer than a pipe's 4 KiB).
registered() { grep -q "^name ${1%@*} " < <(epmd -names 2>/dev/null); }

beam_pid() { # NODE: the beam.smp whose environment names it
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/} pid=${pid%/environ}
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == beam.smp ]] || continue
    if grep -qxzF "RABBITMQ_NODENAME=$1" "$environ" 2>/dev/null; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

gone() { # PID: exited (or a zombie waiting for its parent)
  local state
  state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 0
  [[ $state == Z || $state == X ]]
}

# Waits until NODE's beam process PID is gone and epmd has forgotten NODE
# (a start of the same node name right after must not find it registered).
await_gone() { # NODE PID SECONDS
  local deadline=$((SECONDS + $3))
  while ! gone "$2" || registered "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

start() {
  local dir=$1 node port dist line has_listener=''
  if [[ $# -gt 1 ]]; then
    [[ $# -ge 4 ]] || die "usage: start DIR NODE PORT DIST_PORT [CONF_LINE...]"
    node=$2 port=$3 dist=$4
    shift 4
    registered "$node" && die "node $node already runs (stop it first: $0 stop $dir $node)"
    rm -rf "$dir" # a new node: no data of an old one (which might name other peers)
    mkdir -p "$dir"
    printf '%s\n' "$node" "$port" "$dist" >"$dir/node"
    : >"$dir/rabbitmq.conf"
    for line in "$@"; do
      [[ $line == listeners.* ]] && has_listener=1
      echo "$line" >>"$dir/rabbitmq.conf"
    done
    [[ -n $has_listener ]] || echo "listeners.tcp.1 = 127.0.0.1:$port" >>"$dir/rabbitmq.conf"
    echo '[].' >"$dir/enabled_plugins"
    # own env file, so /etc/rabbitmq/rabbitmq-env.conf's NODENAME is not used
    printf '%s\n' ERL_EPMD_ADDRESS=127.0.0.1 \
      'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$dir/rabbitmq-env.conf"
  else
    [[ -f $dir/node ]] || die "$dir/node is missing: start it once with NODE PORT DIST_PORT"
    { read -r node; read -r port; read -r dist; } <"$dir/node"
  fi
  registered "$node" && die "node $node already runs (stop it first: $0 stop $dir $node)"
  port_open "$port" && die "port $port (for node $node) is taken"
  chown -R rabbitmq:rabbitmq "$dir"

  local log=$dir/log/$node.log deadline=$((SECONDS + 60)) pid offset=0
  # a node started again appends to its log: its boot is what follows
  [[ -f $log ]] && offset=$(stat -c %s "$log")
  (
    # A daemon keeps no descriptor of its caller's: the lock of a
    # `flock /tmp/dpsd-suite.lock make test` above all, which a node outliving a
    # killed run would hold for ever, blocking every later run.
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-"
    done
    export RABBITMQ_NODENAME=$node RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$dist
    # Idle schedulers must not busy-wait: the bench runs several nodes on 2 cores.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none" \
      RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf \
      RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf \
      RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config \
      RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
      RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log \
      RABBITMQ_PID_FILE=$dir/pid
    exec rabbitmq-server -detached
  ) </dev/null >>"$dir/detached.out" 2>&1

  fail() {
    tail -n 30 "$log" >&2 2>/dev/null || cat "$dir/detached.out" >&2
    die "node $node did not come up: $1 (log: $log)"
  }
  # Booted when its log says so: reading a file costs nothing, where
  # `rabbitmqctl await_startup` is a VM of its own (~0.7 s of CPU, beside five
  # booting nodes on 2 cores).
  until grep -q 'Server startup complete' < <(tail -c +$((offset + 1)) "$log" 2>/dev/null); do
    ((SECONDS < deadline)) || fail "not booted after 60 s"
    if [[ -z ${pid:-} ]]; then
      pid=$(beam_pid "$node") || pid=
    elif gone "$pid"; then
      fail "its beam process $pid exited"
    fi
    sleep 0.2
  done
  registered "$node" || fail "booted but not registered with epmd"
  port_open "$port" || fail "nothing listens on 127.0.0.1:$port"
}

stop() {
  local dir=$1 node=${2:-} pid
  [[ -n $node ]] || node=$(head -n 1 "$dir/node" 2>/dev/null) || node=
  if [[ -n $node ]]; then
    # SIGTERM, not `rabbitmqctl stop`: RabbitMQ shuts down as gracefully on it,
    # booted or still booting, without a VM of rabbitmqctl's
    pid=$(beam_pid "$node") || pid=
    if [[ -n $pid ]]; then
      kill -TERM "$pid" 2>/dev/null || true
    elif registered "$node"; then # not started by this script: ask it
      timeout 60 rabbitmqctl -q -n "$node" stop >/dev/null 2>&1 || true
    fi
    if [[ -n $pid ]] && ! await_gone "$node" "$pid" 20; then
      kill -9 "$pid" 2>/dev/null || true
      await_gone "$node" "$pid" 10 || die "node $node (pid $pid) would not stop"
    fi
    if [[ -n ${DPSD_TEST_RABBIT_LOGS:-} && -f $dir/log/$node.log ]]; then
      mkdir -p "$DPSD_TEST_RABBIT_LOGS"
      cp "$dir/log/$node.log" "$DPSD_TEST_RABBIT_LOGS/$node.log"
    fi
  fi
  rm -rf "$dir"
}

kill_node() {
  local dir=$1 node pid
  node=$(head -n 1 "$dir/node") || die "$dir/node is missing"
  pid=$(beam_pid "$node") || die "node $node has no beam process to kill"
  kill -9 "$pid"
  await_gone "$node" "$pid" 10 || die "node $node (pid $pid) still there 10 s after SIGKILL"
  echo "$pid"
}

[[ $# -ge 1 ]] || die "usage: $0 start|stop|kill|pid ..."
verb=$1
shift
case $verb in
  start) [[ $# -ge 1 ]] || die "usage: start DIR [NODE PORT DIST_PORT [CONF_LINE...]]"; start "$@" ;;
  stop) [[ $# -ge 1 ]] || die "usage: stop DIR [NODE]"; stop "$@" ;;
  kill) [[ $# -eq 1 ]] || die "usage: kill DIR"; kill_node "$1" ;;
  pid) [[ $# -eq 1 ]] || die "usage: pid NODE"; beam_pid "$1" ;;
  *) die "unknown verb $verb (start, stop, kill, pid)" ;;
esac
