#!/usr/bin/env bash
# celery-venv.sh — prints the path of a Python that has Celery, for `make bench`'s
# comparison with Celery (tools/celery_chain.py).
#
# Why: the comparison must be run by `make bench` itself, never quoted, and nothing may be
# installed by hand: this keeps the pinned Celery in .tools/celery-venv (git-ignored).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/venv.sh" .tools/celery-venv celery 5.7.0 # the Celery issue 16 names: raise deliberately
