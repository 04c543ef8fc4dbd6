#!/usr/bin/env bash
# api-fuzz.sh [--examples N] [--seed N]
#
# Why: the HTTP API must answer any input with a 2xx/4xx, never a 5xx, and never take the
# daemon down. This fuzzes a real daemon from its own OpenAPI document
# (GET /api/openapi.json) with schemathesis, property-based: every operation gets generated
# valid and invalid path parameters, queries and bodies, and every response is checked
# against the document (status code, content type, JSON schema).
#
# What it does: starts the release build of dpsd where cargo puts it
# (scripts/binary-path.sh: target/release/dpsd unless CARGO_TARGET_DIR or a cargo config
# says otherwise), or $DPSD; built with `cargo build --release` when missing and DPSD is
# unset. It runs in a temp dir on the embedded store, with Basic auth,
# two workers and three jobs; seeds an execution and a parked message; runs schemathesis
# with Basic auth; checks that the daemon is alive and healthy at the end and that it
# logged no panic. Exit 0 when schemathesis found nothing, 1 otherwise; the temp dir (daemon
# log, schemathesis output and reports) is kept on failure and its path printed.
#
# RabbitMQ: the broker of $DPSD_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f),
# in a vhost of this run's own (`dpsd_fuzz_<random>`), because POST /api/publish/{queue}
# declares every queue the fuzzer invents. The run's queues are named with the same random
# suffix; at the end they are deleted, then the vhost with whatever else was declared in it.
# This needs `rabbitmqctl` for that broker (root, on Debian).
#
# --examples N: test cases per operation and phase (default 50: under a minute on 2 cores);
# `make chaos` passes more. --seed N replays a run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
examples=50
seed=
while [[ $# -gt 0 ]]; do
  case $1 in
  --examples) examples=${2:?--examples needs a number}; shift 2 ;;
  --examples=*) examples=${1#*=}; shift ;;
  --seed) seed=${2:?--seed needs a number}; shift 2 ;;
  --seed=*) seed=${1#*=}; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "api-fuzz: unknown argument $1 (usage: $0 [--examples N] [--seed N])" >&2; exit 2 ;;
  esac
done
[[ $examples =~ ^[1-9][0-9]*$ ]] || { echo "api-fuzz: --examples must be a positive number" >&2; exit 2; }
[[ -z $seed || $seed =~ ^[0-9]+$ ]] || { echo "api-fuzz: --seed must be a number" >&2; exit 2; }

say() { echo "api-fuzz: $*" >&2; }
die() { say "$*"; exit 1; }

command -v rabbitmqctl >/dev/null || die "rabbitmqctl not found: it makes and deletes this run's vhost"
command -v curl >/dev/null || die "curl not found"

if [[ -n ${DPSD:-} ]]; then
  dpsd=$DPSD
else
  dpsd=$("$root/scripts/binary-path.sh" release)
  if [[ ! -x $dpsd ]]; then
    say "building $dpsd..."
    # shellcheck disable=SC2086 # CARGO may carry arguments (cargo +stable)
    (cd "$root" && ${CARGO:-cargo} build --release) >&2
  fi
fi
[[ -x $dpsd ]] || die "no dpsd binary at $dpsd"

st=$("$root/scripts/ensure-schemathesis.sh")
python=$(dirname "$st")/python

amqp=${DPSD_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
[[ $amqp =~ ^(amqps?://[^/?]*)(/[^?]*)?(\?.*)?$ ]] || die "cannot read the AMQP URL $amqp"
amqp_base=${BASH_REMATCH[1]} amqp_query=${BASH_REMATCH[3]}
amqp_user=guest
[[ $amqp_base =~ ^amqps?://([^:@]+)(:[^@]*)?@ ]] && amqp_user=${BASH_REMATCH[1]}

suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
vhost=dpsd_fuzz_$suffix
work=$(mktemp -d "${TMPDIR:-/tmp}/dpsd-api-fuzz.XXXXXX")
password=fuzz-$suffix
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
q_stage1=fuzz_stage1_$suffix q_stage2=fuzz_stage2_$suffix q_broken=fuzz_broken_$suffix
queues=("$q_stage1" "$q_stage2" "$q_broken" "$q_broken.retry.200ms")
daemon=
vhost_made=
ok=

stop_daemon() {
  [[ -n $daemon ]] || return 0
  if kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon" 2>/dev/null || true
  fi
  wait "$daemon" 2>/dev/null || true
  daemon=
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  set +e
  stop_daemon
  if [[ -n $vhost_made ]]; then
    for queue in "${queues[@]}"; do
      rabbitmqctl -q -p "$vhost" delete_queue "$queue" </dev/null >/dev/null 2>&1
    done
    rabbitmqctl -q delete_vhost "$vhost" </dev/null >/dev/null 2>&1 ||
      say "could not delete the vhost $vhost: rabbitmqctl delete_vhost $vhost"
  fi
  if [[ -n $ok ]]; then
    rm -rf "$work"
  else
    say "kept $work (daemon.log, schemathesis.log, reports/)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rabbitmqctl -q add_vhost "$vhost" </dev/null >/dev/null || die "rabbitmqctl add_vhost $vhost failed"
vhost_made=1
rabbitmqctl -q set_permissions -p "$vhost" "$amqp_user" '.*' '.*' '.*' </dev/null >/dev/null ||
  die "rabbitmqctl set_permissions for $amqp_user failed"

mkdir -p "$work/workers.d" "$work/jobs.d" "$work/reports"
cat >"$work/dpsd.yaml" <<EOF
amqp:
  url: "$amqp_base/$vhost$amqp_query"
  prefetch: 10
state_dir: state
api:
  listen: 127.0.0.1:$port
  auth:
    fuzz: {password: "$password"}
log:
  level: info
workers_dir: workers.d
jobs_dir: jobs.d
supervisor:
  shutdown_timeout: 10s
services:
  stamp: {builtin: constant, value: {fuzzed: true}}
  broken: {builtin: fail, message: broken on purpose}
EOF
cat >"$work/workers.d/fuzz_stage1.yaml" <<EOF
queue: $q_stage1
follow_queue: $q_stage2
job_state: 1
services: [stamp]
EOF
cat >"$work/workers.d/fuzz_broken.yaml" <<EOF
queue: $q_broken
job_state: 1
services: [broken]
retry: {max_attempts: 2, delay: 200ms}
EOF
cat >"$work/jobs.d/fuzz_exec.yaml" <<EOF
schedule: 1 hour
exec: ["true"]
timeout: 10s
EOF
cat >"$work/jobs.d/fuzz_publish.yaml" <<EOF
publish: {queue: $q_stage1, message: {mydata: {from: job}}}
EOF
cat >"$work/jobs.d/fuzz_inactive.yaml" <<EOF
schedule: "00 02 * * *"
active: false
publish: {queue: $q_broken}
EOF

"$dpsd" --config "$work/dpsd.yaml" run >"$work/daemon.log" 2>&1 &
daemon=$!
started=$SECONDS

alive() { kill -0 "$daemon" 2>/dev/null; }
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
call() { curl -s --max-time 10 -u "fuzz:$password" "$@"; }

deadline=$((SECONDS + 30))
until [[ $(status_of "$api/health") == 200 ]]; do
  alive || { tail -n 30 "$work/daemon.log" >&2; die "dpsd exited during start-up"; }
  ((SECONDS < deadline)) || { tail -n 30 "$work/daemon.log" >&2; die "/health not 200 after 30 s"; }
  sleep 0.2
done
say "dpsd $("$dpsd" --version 2>/dev/null | awk '{print $NF}') healthy on $api after $((SECONDS - started)) s (vhost $vhost)"

# Seed the store, so that the routes answer with data and not only with 404s: an execution
# through the chain and a parked message (after two attempts).
call -H 'Content-Type: application/json' -d '{"executionId": "fuzz-seed-1", "mydata": {}}' \
  "$api/api/publish/$q_stage1" >/dev/null || die "seeding: publish failed"
call -H 'Content-Type: application/json' -d '{"executionId": "fuzz-seed-2", "mydata": {}}' \
  "$api/api/publish/$q_broken" >/dev/null || die "seeding: publish failed"
deadline=$((SECONDS + 20))
until grep -q '"total":[1-9]' < <(call "$api/api/failed"); do
  ((SECONDS < deadline)) || die "seeding: the message to $q_broken was not parked within 20 s"
  sleep 0.2
done

# Known names and ids, which replace the generated values part of the time, so that the
# operations also reach past their 404s: the jobs, the seeded execution and parked message,
# the workers, schedules, and the run's queues (with a delay queue, which has arguments).
cat >"$work/schemathesis.toml" <<EOF
[dictionaries.names]
values = ["fuzz_exec", "fuzz_publish", "fuzz_inactive"]
[dictionaries.ids]
values = ["fuzz-seed-1", "fuzz-seed-2", "fuzz_broken:fuzz-seed-2"]
[dictionaries.workers]
values = ["fuzz_stage1", "fuzz_broken"]
[dictionaries.queues]
values = ["$q_stage1", "$q_broken", "$q_broken.retry.200ms"]
[dictionaries.schedules]
values = ["1 hour", "90 minutes", "1h 30m", "300000 years", "2562047788015215h", "99999999999999999999s",
  "00 02,10 * * *", "*/5 * * * 1-5", "0 0 * * 5L", "0 0 29 2 *", "0 0 31 2 *", "0 0 * * 1#5", "59 23 31 12 7",
  "1s", "100ms", "61 * * * *", "*/0 * * * *", "0 0 * * 7-0"]
[dictionaries.zones]
values = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "Mars/Olympus"]

[parameters]
"path.name" = { dictionary = "names", probability = 0.5 }
"path.id" = { dictionary = "ids", probability = 0.5 }
"path.queue" = { dictionary = "queues", probability = 0.3 }
"path.worker" = { dictionary = "workers", probability = 0.5 }
"query.worker" = { dictionary = "workers", probability = 0.5 }
"body.interval" = { dictionary = "schedules", probability = 0.5 }
"body.timezone" = { dictionary = "zones", probability = 0.5 }
"query.schedule" = { dictionary = "schedules", probability = 0.5 }
"query.timezone" = { dictionary = "zones", probability = 0.5 }
EOF

seed_args=()
[[ -n $seed ]] && seed_args=(--seed "$seed")
say "schemathesis $("$st" --version | awk '{print $NF}'), $examples examples per operation..."
fuzz_started=$SECONDS
set +e
# --include-path-regex: every operation, GET /api/openapi.json too (schemathesis leaves out
# the one that served the document unless a filter selects it).
# --max-redirects 0: the redirects (/dashboard, /agendash) are checked as the 302s they are.
# Left out: unsupported_method (dpsd answers 404 to a known path with another method,
# docs/api.md 1, where that check wants 405) and positive_data_acceptance (a schema cannot
# say which strings are schedules, so a schema-valid `interval` is mostly a 400).
# --workers 1: with two threads, hypothesis parsing its lambdas' source in both at once hit
# CPython 3.11's "AST constructor recursion depth mismatch" (a Runtime Error, no failure).
(cd "$work" && "$st" --config-file "$work/schemathesis.toml" run "$api/api/openapi.json" \
  --auth "fuzz:$password" \
  --include-path-regex "^/" \
  --checks all --exclude-checks unsupported_method,positive_data_acceptance \
  --max-examples "$examples" \
  --max-redirects 0 \
  --request-timeout 40 \
  --workers 1 \
  --generation-database none \
  --report junit,ndjson --report-dir "$work/reports" \
  --no-color \
  "${seed_args[@]}") >"$work/schemathesis.log" 2>&1
st_status=$?
set -e
fuzz_seconds=$((SECONDS - fuzz_started))

problems=()
((st_status == 0)) || problems+=("schemathesis exited with $st_status")
if ! alive; then
  problems+=("dpsd died during the run")
else
  health=$(status_of "$api/health")
  [[ $health == 200 ]] || problems+=("/health answered $health after the run")
fi
if grep -n 'panicked at' "$work/daemon.log" >&2; then
  problems+=("dpsd logged a panic")
fi

# The summary: operations, test cases and failures, from schemathesis' own lines.
summary=$("$python" - "$work/schemathesis.log" <<'EOF'
import re, sys
log = sys.argv[1]
text = open(log, encoding="utf-8", errors="replace").read()
def number(pattern):
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None
operations = number(r"Selected:\s*\d+/(\d+)")
tested = number(r"Tested:\s*(\d+)")
cases = number(r"Test cases:\s*(\d+) generated")
failures = number(r"found (\d+) unique failures?") or 0
errors = number(r"(\d+) errored")
print(f"operations={tested if tested is not None else '?'}/{operations if operations is not None else '?'} "
      f"examples={cases if cases is not None else '?'} failures={failures}"
      + (f" errors={errors}" if errors else ""))
EOF
) || summary="(no summary: see $work/schemathesis.log)"

if ((${#problems[@]})); then
  tail -n 60 "$work/schemathesis.log" >&2
  tail -n 20 "$work/daemon.log" >&2
  echo "api-fuzz: FAILED: $(printf '%s; ' "${problems[@]}")$summary; ${fuzz_seconds}s"
  exit 1
fi
ok=1
echo "api-fuzz: ok: $summary; ${fuzz_seconds}s; no 5xx, daemon alive and healthy"
