#!/usr/bin/env bash
# test-certs.sh DIR
#
# Why: the TLS tests need certificates the bench controls (a CA of their own,
# mutual TLS, a CA the broker does not trust) without touching the system's
# trust store. This makes them in DIR (created; files already there are
# replaced), all PEM, ECDSA P-256 keys, SHA-256, valid for 30 days from now:
#   ca.pem, ca.key                  the test CA ("dpsd test CA")
#   server.pem, server.key          signed by it; CN and SAN DNS:localhost and
#                                   IP:127.0.0.1; serverAuth
#   client.pem, client.key          signed by it; CN dpsd-test-client; clientAuth
#                                   (mutual TLS)
#   wrong-host.pem, wrong-host.key  signed by it, but for DNS:wrong-host.invalid
#                                   only: a server certificate whose host name
#                                   does not match (e.g. for `openssl s_server`)
#   other-ca.pem, other-ca.key      a second CA that signed no server: verifying
#                                   the broker with it fails ("wrong CA")
#   other-client.pem, other-client.key  a client certificate signed by the other
#                                   CA: a broker trusting ca.pem refuses it
# Keys are PKCS#8 ("BEGIN PRIVATE KEY"), mode 0640. Run as root, the files'
# group is rabbitmq (when that group exists) so that a RabbitMQ node started
# by scripts/rabbit-node.sh can read server.key; DIR itself must be reachable
# by the rabbitmq user for that (scripts/test-services.sh sees to it).
# Certificates are v3 with basicConstraints, keyUsage and extendedKeyUsage as
# strict verifiers (rustls/webpki, Erlang's ssl) want them: a CA is CA:TRUE,
# a leaf is CA:FALSE. Takes ~0.2 s. Installs openssl when it is
# missing (root only), as scripts/ensure-rabbitmq.sh does rabbitmq-server.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
if ! command -v openssl >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test-certs: openssl is not installed; as root run: apt-get install -y openssl" >&2
    exit 1
  fi
  echo "test-certs: installing openssl (apt-get)..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
mkdir -p "$dir"
cd "$dir"

# A config of our own, so that the system's openssl.cnf adds no extensions.
cat >openssl.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[wrong_host]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong-host.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# ECDSA, not RSA: the six keys take ~0.1 s, RSA 2048 ones 1-3 s on 2 busy
# cores, which the TLS node (started once they exist) would wait for.
new_key() { openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }

new_ca() { # NAME CN
  new_key "$1"
  openssl req -config openssl.cnf -x509 -new -key "$1.key" -sha256 -days 30 \
    -subj "/CN=$2" -extensions ca -out "$1.pem"
}

new_leaf() { # NAME CN SECTION CA
  new_key "$1"
  openssl req -config openssl.cnf -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  # a random serial: two runs' certificates never share issuer and serial
  openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" \
    -set_serial "0x$(openssl rand -hex 12)" -sha256 -days 30 \
    -extfile openssl.cnf -extensions "$3" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}

new_ca ca "dpsd test CA"
new_ca other-ca "dpsd other test CA"
new_leaf server localhost server ca
new_leaf client dpsd-test-client client ca
new_leaf wrong-host wrong-host.invalid wrong_host ca
new_leaf other-client dpsd-other-client client other-ca
rm -f openssl.cnf

chmod 0644 ./*.pem
chmod 0640 ./*.key
if [[ $(id -u) -eq 0 ]] && getent group rabbitmq >/dev/null; then
  chgrp rabbitmq ./*.pem ./*.key
fi
openssl verify -CAfile ca.pem server.pem client.pem wrong-host.pem >/dev/null
openssl verify -CAfile other-ca.pem other-client.pem >/dev/null
