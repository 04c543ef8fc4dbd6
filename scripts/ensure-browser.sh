#!/usr/bin/env bash
# ensure-browser.sh — headless Chromium and Playwright for the dashboard's tests.
#
# Why: the dashboard must work in a real browser, so `make test` drives Debian's chromium
# with Playwright (Python, in .venv/ like SecantusDB). Playwright never downloads a browser
# here: the tests point it at /usr/bin/chromium.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=1.65.2

if ! command -v chromium >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || { echo "ensure-browser: install Debian's chromium (apt-get install chromium)" >&2; exit 1; }
  echo "ensure-browser: installing chromium..." >&2
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
python=$("$root/scripts/secantus-venv.sh")
if ! "$python" -c "import importlib.metadata as m, sys
sys.exit(m.version('playwright') != '$version')" 2>/dev/null; then
  echo "ensure-browser: installing playwright==$version into .venv/..." >&2
  "$python" -m pip install -q --disable-pip-version-check "playwright==$version" >&2
fi
