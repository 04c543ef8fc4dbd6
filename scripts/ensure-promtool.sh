#!/usr/bin/env bash
# ensure-promtool.sh — Prometheus's own checker of the text format; prints its path.
#
# Why: `/metrics` must pass `promtool check metrics` (a test runs it on a loaded daemon's
# output). promtool ships in Debian's `prometheus` package, whose install would also start a
# Prometheus server; so the package is only downloaded and promtool taken out of it, into
# .tools/ (ignored by git).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tool="$root/.tools/bin/promtool"

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
if [[ ! -x $tool ]]; then
  echo "ensure-promtool: downloading Debian's prometheus package for promtool..." >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    [[ $(id -u) -eq 0 ]] || { echo "ensure-promtool: cannot download prometheus (apt-get download); install promtool" >&2; exit 1; }
    apt-get update -qq
    (cd "$work" && apt-get download prometheus >/dev/null)
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/tree"
  mkdir -p "$(dirname "$tool")"
  cp "$work/tree/usr/bin/promtool" "$tool"
fi
echo "$tool"
