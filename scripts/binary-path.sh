#!/usr/bin/env bash
# binary-path.sh debug|release [NAME] — where cargo puts the built binary NAME (default
# dpsd; examples/relay for an example) of that profile. Prints the path; builds nothing, so
# the file may not exist yet.
#
# Why: cargo's target directory is ./target only by default (CARGO_TARGET_DIR,
# CARGO_BUILD_TARGET_DIR or build.target-dir in a cargo config move it), so the Makefile
# and tools/ ask cargo instead of assuming: `cargo metadata` reports the target directory
# as cargo resolves it. $CARGO is the cargo asked (default cargo; it may carry arguments,
# as the Makefile's CARGO does). Host builds only: a --target build puts binaries one
# folder deeper.
set -euo pipefail
usage() { echo "usage: $0 debug|release [NAME]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
case $1 in debug | release) profile=$1 ;; *) usage ;; esac
name=${2:-dpsd}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck disable=SC2086 # CARGO may carry arguments (cargo +stable)
metadata=$(cd "$root" && ${CARGO:-cargo} metadata --format-version 1 --no-deps --offline) ||
  { echo "binary-path: cargo metadata failed" >&2; exit 1; }
# "target_directory":"PATH": JSON escapes a path's " and \ (control characters aside).
field='"target_directory":"(([^"\\]|\\.)*)"'
[[ $metadata =~ $field ]] || { echo "binary-path: cargo metadata gave no target_directory" >&2; exit 1; }
dir=${BASH_REMATCH[1]}
dir=${dir//\\\"/\"}
dir=${dir//\\\\/\\}
printf '%s\n' "$dir/$profile/$name"
