#!/usr/bin/env bash
# ensure-docker.sh — make sure a Docker engine answers, for `make image` and the
# container tests.
#
# Installs Debian's docker.io when dockerd is missing (root only), and starts
# `dockerd --bridge=none --iptables=false` in the background when no engine
# answers: these machines have no registry to pull from and the tests run their
# containers with host networking, so the engine needs no bridge nor NAT rules.
# Waits up to 60 s. Idempotent and silent when an engine already answers.
# Exit 0: an engine answers; 1: none can run here (the reason on stderr).
set -euo pipefail

log=${DPSD_DOCKERD_LOG:-/var/log/dpsd-dockerd.log}
answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

answers && exit 0

if ! command -v dockerd >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-docker: dockerd is not installed; as root run:" >&2
    echo "  apt-get update && apt-get install -y docker.io" >&2
    exit 1
  fi
  echo "ensure-docker: installing docker.io (apt-get)..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io >/dev/null
fi
answers && exit 0 # the package's postinst may have started it

if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-docker: no Docker engine answers; start dockerd as root" >&2
  exit 1
fi
echo "ensure-docker: starting dockerd --bridge=none --iptables=false (log: $log)..." >&2
# setsid and closed descriptors: the engine outlives this script and holds none of
# the caller's files (the lock of scripts/test-services.sh or of a `flock` around
# make test, which a left-over engine would otherwise hold, blocking every later run).
(
  for fd in "/proc/$BASHPID/fd/"*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-"
  done
  exec setsid dockerd --bridge=none --iptables=false --ip6tables=false
) </dev/null >>"$log" 2>&1 &

deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  answers && exit 0
  if ! pgrep -x dockerd >/dev/null; then break; fi
  sleep 0.5
done
echo "ensure-docker: no Docker engine came up within 60 s; the end of $log:" >&2
tail -n 15 "$log" >&2 || true
exit 1
