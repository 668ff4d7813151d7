"""Shared fixtures: small grids written to temporary folders, and a fast results root."""
from __future__ import annotations

import pytest
import torch
import yaml

# Small tensors dominate the tests: one thread avoids the cost of waking a pool for each tiny op
# (and stalls when other processes share the cores). Set once here for the whole suite; a test that
# changes it restores it.
torch.set_num_threads(1)


@pytest.fixture
def write_grid(tmp_path):
    """Write a grid dict to a YAML file and return its path."""

    def write(grid: dict, name: str = "g") -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(grid))
        return str(path)

    return write


@pytest.fixture
def tiny_grid():
    """A toy2d grid with a handful of cells that runs in seconds."""
    return {
        "name": "tiny",
        "models": [{"name": "toy2d", "time": "flow"}],
        "solvers": ["euler"],
        "nfe": [3, 4],
        "methods": ["uniform", "edm"],
        "metrics": ["mse", "psnr"],
        "teacher": {"solver": "euler", "steps": 20, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 64, "eval": 128, "batch": 64},
    }
