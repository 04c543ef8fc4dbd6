#!/usr/bin/env bash
# secantus-venv.sh — prints the path of a Python that can run SecantusDB, the
# MongoDB-compatible server used where no `mongod` is installed.
#
# Why: `make test` and `make run` both need it, and neither may rely on anything
# installed by hand: this creates .venv/ at the project root (git-ignored) and
# installs the pinned secantusdb into it, once.
set -euo pipefail
# the only release on PyPI (a beta): raise deliberately
exec "$(dirname "${BASH_SOURCE[0]}")/venv.sh" .venv secantusdb 0.7.0b3
