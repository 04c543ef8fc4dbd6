#!/usr/bin/env bash
# ensure-schemathesis.sh — prints the path of a `schemathesis` executable, for
# tools/api-fuzz.sh (property-based fuzzing of the HTTP API from its OpenAPI document).
#
# Why: `make test` runs the API fuzzing and may not rely on anything installed by hand.
# This reuses the project's git-ignored .venv/ (created by scripts/secantus-venv.sh,
# which also holds SecantusDB) and installs the pinned schemathesis into it, once.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=4.32.5 # raise deliberately: the checks' names and the CLI's options change between releases
log=$root/target/schemathesis-pip.log
mkdir -p "$root/target"

python=$("$root/scripts/secantus-venv.sh")
venv=$(dirname "$(dirname "$python")")
if ! "$python" -c "import importlib.metadata as m, sys
sys.exit(m.version('schemathesis') != '$version')" 2>/dev/null || [[ ! -x $venv/bin/schemathesis ]]; then
  echo "ensure-schemathesis: installing schemathesis==$version into .venv/..." >&2
  "$python" -m pip install -q --disable-pip-version-check "schemathesis==$version" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; echo "ensure-schemathesis: pip install schemathesis failed" >&2; exit 1; }
fi
echo "$venv/bin/schemathesis"
