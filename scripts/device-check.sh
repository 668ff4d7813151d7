#!/usr/bin/env bash
# The prepared check for a machine with one GPU (at most ~8 minutes; every step has its own timeout):
#   1. the machine: GPU, driver, torch and CUDA versions;
#   2. the tests that need a device: `pytest -m gpu` (tests/core/test_device.py);
#   3. `bench run` of grids/smoke.yaml with --device cuda, and its report;
#   4. `bench run` of grids/net-smoke.yaml (the trained digits-net, fp32 and bf16) with --device cuda,
#      and its report;
#   5. benchmarks/bench_overhead.py: harness/bare sampling-time ratio, images/s and peak memory of an
#      SD-1.5-sized random UNet and of digits-net at batch 16 and 64 in fp32 and bf16.
# Everything it prints goes to one file, $OUT/device-check.txt ($OUT: the device tool's output folder;
# else results/device-check/), bench_overhead's figures also to bench_overhead.json beside it. A failing step
# is recorded (rc=...) and the next one still runs; the script exits non-zero if any step failed.
#
#     bash scripts/device-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DIR=${OUT:-results/device-check}
mkdir -p "$DIR"
FIG="$DIR/device-check.txt"
RES=$(mktemp -d)
FAILED=0
: > "$FIG"

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name" | tee -a "$FIG"
    timeout "$limit" "$@" 2>&1 | tee -a "$FIG"
    rc=${PIPESTATUS[0]}
    echo "-- $name: rc=$rc, $((SECONDS - start))s" | tee -a "$FIG"
    [ "$rc" -eq 0 ] || FAILED=1
}

step machine 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(), \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no device\")'"
step "pytest -m gpu" 90 "$PY" -m pytest -q -m gpu tests/core/test_device.py
step "run smoke.yaml" 60 "$PY" -m bench run --grid grids/smoke.yaml --device cuda --results "$RES" --quiet
step "report smoke.yaml" 30 "$PY" -m bench report --grid grids/smoke.yaml --results "$RES" --no-plots
step "run net-smoke.yaml" 120 "$PY" -m bench run --grid grids/net-smoke.yaml --device cuda --results "$RES" --quiet
step "report net-smoke.yaml" 30 "$PY" -m bench report --grid grids/net-smoke.yaml --results "$RES" --no-plots
step bench_overhead 180 "$PY" benchmarks/bench_overhead.py --device cuda --out "$DIR/bench_overhead.json"
echo "figures: $FIG" | tee -a "$FIG"
exit "$FAILED"
