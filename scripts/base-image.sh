#!/usr/bin/env bash
# base-image.sh NAME — make sure the image NAME (the Dockerfile's FROM, e.g.
# debian:bookworm-slim) exists in the local Docker engine.
#
# Why: these machines reach Debian's package mirror but no image registry, and
# that must not stop `make image`. An image that exists locally is used as it is;
# else a registry pull is tried (a user's machine); else the image is made from
# Debian's packages with mmdebstrap (installed when missing, root only) and
# `docker import`ed under NAME, so the same Dockerfile builds everywhere.
# --variant=essential with ca-certificates and no docs, man pages, locales nor
# info files weighs about what Debian's slim image does (~110 MB; minbase: 173 MB).
set -euo pipefail
name=${1:?usage: base-image.sh NAME}
suite=${name##*:}
suite=${suite%-slim}

docker image inspect "$name" >/dev/null 2>&1 && exit 0
if timeout 20 docker pull -q "$name" >/dev/null 2>&1; then exit 0; fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "base-image: no $name here and no registry; as root run:" >&2
    echo "  apt-get update && apt-get install -y mmdebstrap" >&2
    exit 1
  fi
  echo "base-image: installing mmdebstrap (apt-get)..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    mmdebstrap >/dev/null
fi

tarball=$(mktemp --suffix=.tar)
trap 'rm -f "$tarball"' EXIT
echo "base-image: making $name from Debian $suite with mmdebstrap..." >&2
mmdebstrap --quiet --variant=essential --include=ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  "$suite" "$tarball"
docker import --change 'CMD ["bash"]' "$tarball" "$name" >/dev/null
echo "base-image: $name imported ($(docker image inspect -f '{{.Size}}' "$name") bytes)" >&2
