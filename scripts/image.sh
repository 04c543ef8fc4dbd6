#!/usr/bin/env bash
# image.sh — what `make image` does: the image dpsd:VERSION and dpsd:latest (SPEC 13).
#
# Why a script: the Rust build runs on the host, not in the Dockerfile, so that the same
# Dockerfile builds on a machine with registry access and on one without, and needs no Rust
# image: the release binary is built, stripped (the release profile keeps debug info: 159 MB,
# 22 MB stripped) into target/image/dpsd, and copied in. Where no registry answers, the
# FROM image is made locally (scripts/base-image.sh). Docker comes from Debian's docker.io
# (scripts/ensure-docker.sh starts dockerd when none runs). Builds with --network host:
# the engine runs without a bridge here (dockerd --bridge=none).
# Prints the image's name and size last. Exit 1 when Docker cannot run here.
# DPSD_IMAGE_BINARY: a built binary to use instead of the release build (the tests give the
# binary under test: a release build from scratch takes tens of minutes on 2 cores);
# DPSD_IMAGE_TAGS: the tags instead of "dpsd:VERSION dpsd:latest".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
base=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | head -n 1)
[[ -n $version && -n $base ]] || { echo "image: no version in Cargo.toml or FROM in Dockerfile" >&2; exit 1; }

scripts/ensure-docker.sh
if [[ -n ${DPSD_IMAGE_BINARY:-} ]]; then
  binary=$DPSD_IMAGE_BINARY staged=target/image/test/dpsd
else
  # shellcheck disable=SC2086 # CARGO may carry arguments (cargo +stable)
  $cargo build --release --quiet --bin dpsd
  binary=$(scripts/binary-path.sh release) staged=target/image/dpsd
fi
read -r -a tags <<<"${DPSD_IMAGE_TAGS:-dpsd:$version dpsd:latest}"
mkdir -p "$(dirname "$staged")"
strip -o "$staged.new" "$binary"
chmod 755 "$staged.new"
# Replaced only when it differs: an unchanged binary keeps every layer cached.
if cmp -s "$staged.new" "$staged"; then
  rm "$staged.new"
else
  mv "$staged.new" "$staged"
fi

scripts/base-image.sh "$base"
tag_args=()
for tag in "${tags[@]}"; do tag_args+=(-t "$tag"); done
docker build --network host --build-arg "BINARY=$staged" "${tag_args[@]}" . >&2
size=$(docker image inspect -f '{{.Size}}' "${tags[0]}")
echo "image: ${tags[*]}, $((size / 1000000)) MB ($size bytes)"
