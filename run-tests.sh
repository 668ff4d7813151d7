#!/usr/bin/env bash
# Set everything up and run the whole test suite, as CI does: the fast tests, then the slow ones.
# (`.venv/bin/python -m pytest` alone runs the fast suite; `-m slow` the slow one.)
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/python -m pytest
.venv/bin/python -m pytest -m slow
