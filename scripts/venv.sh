#!/usr/bin/env bash
# venv.sh DIR PACKAGE VERSION — prints the path of a Python in the venv DIR (below the
# project root, git-ignored) that has PACKAGE==VERSION, creating the venv and installing
# the package once.
#
# Why: the tests and benchmarks need Python servers and tools (SecantusDB, Celery) and may
# rely on nothing installed by hand; this is the one way the scripts make them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/$1
package=$2
version=$3
name="venv.sh ($package)"
log=$root/target/$package-pip.log
mkdir -p "$root/target" "$(dirname "$venv")"

if [[ ! -x $venv/bin/python ]] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  [[ $(id -u) -eq 0 ]] || { echo "$name: cannot create a venv: install python3-venv" >&2; exit 1; }
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('$package') != '$version')" 2>/dev/null; then
  echo "$name: installing $package==$version into $1/..." >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$package==$version" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; echo "$name: pip install $package failed" >&2; exit 1; }
fi
echo "$venv/bin/python"
