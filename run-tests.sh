#!/usr/bin/env bash
# Set everything up and run the whole test suite, as CI does: the fast tests, then the slow ones
# (full grids, submitit-local jobs, and a real one-node Slurm cluster on this machine).
# `.venv/bin/python -m pytest` alone runs the fast suite; `-m slow` the slow one.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/python -m pytest

# The Slurm tests need root (apt-get install slurm-wlm munge). In CI a cluster that does not come
# up is a failure; elsewhere its tests skip.
if bash scripts/slurm-cluster.sh up; then
  trap 'bash scripts/slurm-cluster.sh down >/dev/null 2>&1 || true' EXIT
  export BENCH_SLURM=1
elif [ "${CI:-}" = "true" ]; then
  echo "run-tests: the Slurm cluster did not start" >&2
  exit 1
fi
.venv/bin/python -m pytest -m slow
