#!/usr/bin/env bash
# ensure-cargo-fuzz.sh — prints the path of a `cargo-fuzz` executable, for tools/fuzz.sh
# (bounded libFuzzer runs of the message and configuration parsers, fuzz/).
#
# Why: nothing installed by hand survives a new machine, so the project installs its own
# pinned cargo-fuzz, once, into the git-ignored .tools/cargo-fuzz/ (not ~/.cargo/bin).
#
# Toolchain: cargo-fuzz itself builds on stable, but *running* it (`cargo fuzz build/run`)
# passes nightly-only flags to rustc (-Zsanitizer=address, -Cpasses=sancov-module, ...)
# and the machines only have the stable toolchain (rustup cannot fetch nightly here).
# RUSTC_BOOTSTRAP=1 makes the stable compiler accept those -Z flags; it is the documented
# escape hatch the Rust project uses to build itself. Callers (tools/fuzz.sh) set it for
# the cargo-fuzz invocations only, never for the main crate's build.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=0.13.2 # raise deliberately: options and the fuzz/ layout it expects can change
prefix=$root/.tools/cargo-fuzz
bin=$prefix/bin/cargo-fuzz
log=$root/.tools/cargo-fuzz-install.log
mkdir -p "$root/.tools"

installed=$("$bin" --version 2>/dev/null || true) # "cargo-fuzz 0.13.2"
if [[ $installed != "cargo-fuzz $version" ]]; then
  echo "ensure-cargo-fuzz: installing cargo-fuzz $version into .tools/cargo-fuzz/ (a few minutes)..." >&2
  # Its own target dir, so this build never contends with the project's target/.
  CARGO_TARGET_DIR=$root/.tools/cargo-fuzz-build \
    cargo install --locked --quiet --root "$prefix" --version "$version" --force cargo-fuzz >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; echo "ensure-cargo-fuzz: cargo install cargo-fuzz failed" >&2; exit 1; }
  rm -rf "$root/.tools/cargo-fuzz-build"
fi
echo "$bin"
