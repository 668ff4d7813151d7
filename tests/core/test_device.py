"""Tests that need an accelerator (marker `gpu`; skipped without CUDA). `scripts/device-check.sh`
runs them with `pytest -m gpu`: digits-net on the device agrees with the CPU in fp32, runs under
bf16 / fp16 autocast, and a small grid cell runs end to end with `device="cuda"`."""
import pytest
import torch

from bench.grid import parse_grid
from bench.models import make_model
from bench.runner import run_cell
from bench.store import read_json

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def inputs(device, dtype=torch.float32, n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype) * 5
    return x.to(device), torch.full((n,), 5.0, dtype=dtype, device=device), (torch.arange(n) % 10).to(device)


def test_digits_net_on_cuda_matches_the_cpu():
    cpu = make_model("digits-net")
    gpu = make_model("digits-net").to("cuda")
    for dtype in (torch.float32, torch.float64):
        x, t, y = inputs("cpu", dtype)
        ref = cpu(x, t, y)
        out = gpu(x.cuda(), t.cuda(), y.cuda())
        assert out.device.type == "cuda" and out.dtype == dtype
        # TF32 convolutions (if enabled) round the inputs to 10 mantissa bits
        assert torch.allclose(out.cpu(), ref, atol=2e-2), (out.cpu() - ref).abs().max()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_digits_net_autocast_on_cuda(dtype):
    ref = make_model("digits-net").to("cuda")
    low = make_model({"name": "digits-net", "dtype": dtype}).to("cuda")
    x, t, y = inputs("cuda")
    a, b = ref(x, t, y), low(x, t, y)
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert 0 < (a - b).abs().max().item() < 0.1


def test_a_digits_net_cell_runs_on_cuda(tmp_path):
    grid = parse_grid({
        "name": "gpu-cell", "models": [{"name": "digits-net", "dtype": "bf16"}], "solvers": ["ipndm"],
        "nfe": [4], "methods": ["edm", "ld3"], "metrics": ["mse", "fd-digits"],
        "teacher": {"solver": "ipndm", "steps": 50, "method": "edm", "dtype": "float64"},
        "samples": {"train": 128, "eval": 256, "batch": 256},
    })
    for cell in grid.cells:
        row = read_json(run_cell(cell, root=tmp_path, device="cuda"))
        assert row["metrics"]["mse"] < 1.0, row
        assert row["model"]["dtype"] == "bf16"
