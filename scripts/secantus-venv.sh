#!/usr/bin/env bash
# secantus-venv.sh — prints the path of a Python that can run SecantusDB, the
# MongoDB-compatible server used where no `mongod` is installed.
#
# Why: `make test` and `make run` both need it, and neither may rely on anything
# installed by hand: this creates .venv/ at the project root (git-ignored) and
# installs the pinned secantusdb into it, once.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv
version=0.7.0b3 # the only release on PyPI (a beta): raise deliberately
log=$root/target/secantus-pip.log
mkdir -p "$root/target"

if [[ ! -x $venv/bin/python ]] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  [[ $(id -u) -eq 0 ]] || { echo "secantus-venv: cannot create a venv: install python3-venv" >&2; exit 1; }
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('secantusdb') != '$version')" 2>/dev/null; then
  echo "secantus-venv: installing secantusdb==$version into .venv/..." >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "secantusdb==$version" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; echo "secantus-venv: pip install secantusdb failed" >&2; exit 1; }
fi
echo "$venv/bin/python"
