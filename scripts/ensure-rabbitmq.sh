#!/usr/bin/env bash
# ensure-rabbitmq.sh — make sure a RabbitMQ broker answers on 127.0.0.1:5672
# (guest/guest), because dpsd's tests (and `make services`) talk to a real one.
#
# Installs Debian's rabbitmq-server when it is missing (root only), starts it
# with `rabbitmq-server -detached` when nothing answers, and waits up to 60 s.
# Idempotent: when the port already accepts connections it returns at once and
# silently. It never stops or restarts a broker.
set -euo pipefail

port=5672
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

port_open && exit 0

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-rabbitmq: rabbitmq-server is not installed; as root run:" >&2
    echo "  apt-get update && apt-get install -y rabbitmq-server" >&2
    exit 1
  fi
  echo "ensure-rabbitmq: installing rabbitmq-server (apt-get)..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
port_open && exit 0 # the package's postinst may have started it

if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-rabbitmq: nothing answers on 127.0.0.1:$port; start RabbitMQ as root" >&2
  exit 1
fi
if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  # the node runs but has no listener: booting (start_app is then harmless)
  # or its app was stopped with `rabbitmqctl stop_app`
  rabbitmqctl -q start_app >/dev/null
else
  echo "ensure-rabbitmq: starting rabbitmq-server..." >&2
  rabbitmq-server -detached
fi

deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  if port_open && rabbitmq-diagnostics -q ping >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "ensure-rabbitmq: RabbitMQ did not come up on 127.0.0.1:$port within 60 s;" \
  "see /var/log/rabbitmq/" >&2
exit 1
