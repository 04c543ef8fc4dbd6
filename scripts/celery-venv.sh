#!/usr/bin/env bash
# celery-venv.sh — prints the path of a Python that has Celery, for `make bench`'s
# comparison with Celery (tools/celery_chain.py).
#
# Why: the comparison must be run by `make bench` itself, never quoted, and nothing may be
# installed by hand: this creates .tools/celery-venv (git-ignored) with the pinned Celery.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.tools/celery-venv
version=5.7.0 # the Celery the issue names: raise deliberately
log=$root/target/celery-pip.log
mkdir -p "$root/target" "$root/.tools"

if [[ ! -x $venv/bin/python ]] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  [[ $(id -u) -eq 0 ]] || { echo "celery-venv: cannot create a venv: install python3-venv" >&2; exit 1; }
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('celery') != '$version')" 2>/dev/null; then
  echo "celery-venv: installing celery==$version into .tools/celery-venv..." >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "celery==$version" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; echo "celery-venv: pip install celery failed" >&2; exit 1; }
fi
echo "$venv/bin/python"
