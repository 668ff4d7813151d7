#!/usr/bin/env bash
# Set everything up and run the whole test suite, as CI does: the fast tests, then the slow ones
# (full grids, submitit-local jobs, and a real one-node Slurm cluster on this machine).
# `.venv/bin/python -m pytest` alone runs the fast suite; `-m slow` the slow one.
#
#   ./run-tests.sh [--no-slurm]        (or BENCH_SKIP_SLURM=1 ./run-tests.sh)
#
# The Slurm stage, run as root, changes the machine: scripts/slurm-cluster.sh apt-installs
# slurm-wlm and munge when they are missing, writes a slurm.conf (linked as /etc/slurm/slurm.conf
# when there is none) and starts munged, slurmctld and slurmd, which it stops again on exit.
# --no-slurm or BENCH_SKIP_SLURM=1 skips that stage; the Slurm tests then skip, saying why.
# CI (.ci/run) keeps it on.
set -euo pipefail
cd "$(dirname "$0")"
for arg in "$@"; do
  case "$arg" in
    --no-slurm) export BENCH_SKIP_SLURM=1 ;;
    *) echo "run-tests: unknown option $arg (known: --no-slurm)" >&2; exit 2 ;;
  esac
done
./setup.sh
.venv/bin/python -m pytest

# The Slurm tests need root (apt-get install slurm-wlm munge). In CI a cluster that does not come
# up is a failure; elsewhere its tests skip.
if [ "${BENCH_SKIP_SLURM:-}" = "1" ]; then
  echo "run-tests: Slurm stage skipped (BENCH_SKIP_SLURM=1 / --no-slurm): nothing installed or started" >&2
elif bash scripts/slurm-cluster.sh up; then
  trap 'bash scripts/slurm-cluster.sh down >/dev/null 2>&1 || true' EXIT
  export BENCH_SLURM=1
elif [ "${CI:-}" = "true" ]; then
  echo "run-tests: the Slurm cluster did not start" >&2
  exit 1
fi
.venv/bin/python -m pytest -m slow
