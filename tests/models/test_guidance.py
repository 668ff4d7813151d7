"""Classifier-free guidance on the exact digits model: scale 1 is the conditional model, scale 0 the
unconditional one, and a guided evaluation counts as one NFE but two network evaluations."""
from __future__ import annotations

import json

import pytest
import torch

from bench.errors import UserError
from bench.grid import parse_grid
from bench.guidance import Guided
from bench.launch import run_local
from bench.models import make_model
from bench.counting import NetworkCounter
from bench.seeding import labels_for


@pytest.fixture(scope="module")
def states():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 1, 8, 8, generator=gen, dtype=torch.float64) * 3
    t = torch.rand(30, generator=gen, dtype=torch.float64) * 5 + 0.1
    return x, t, labels_for(range(30), 10)


def test_scale_one_is_conditional_and_zero_unconditional(states):
    x, t, cond = states
    plain = make_model("digits")
    conditional, unconditional = plain(x, t, cond), plain(x, t, None)
    for model in (make_model({"name": "digits", "guidance": 1.0}), Guided(plain, 1.0)):
        assert torch.allclose(model(x, t, cond), conditional, rtol=0, atol=1e-12)
    for model in (make_model({"name": "digits", "guidance": 0}), Guided(plain, 0.0)):
        assert torch.allclose(model(x, t, cond), unconditional, rtol=0, atol=1e-12)
    guided = make_model({"name": "digits", "guidance": 3.0})(x, t, cond)
    assert torch.allclose(guided, unconditional + 3 * (conditional - unconditional), rtol=0, atol=1e-12)


def test_guided_evaluations_are_counted_twice(states):
    x, t, cond = states
    for model in (make_model({"name": "digits", "guidance": 2.0}), Guided(make_model("digits"), 2.0)):
        counting = NetworkCounter(model)
        counting(x, t, cond)
        assert (counting.calls, counting.network_evals, counting.rows) == (1, 2, 60)
    plain = NetworkCounter(make_model("digits"))
    plain(x, t, cond)
    assert (plain.calls, plain.network_evals, plain.rows) == (1, 1, 30)


def test_guidance_ids_and_errors():
    assert make_model("digits").model_id() == "digits(time=ve)"  # unchanged: old caches stay valid
    assert make_model({"name": "digits", "guidance": 2}).model_id() == "digits(guidance=2.0,time=ve)"
    with pytest.raises(UserError, match="guidance"):
        make_model({"name": "digits", "guidance": -1})
    with pytest.raises(UserError, match="guidance"):
        make_model({"name": "digits", "guidance": "strong"})
    with pytest.raises(UserError, match="class-conditional"):
        Guided(make_model({"name": "toy2d", "time": "flow"}), 2.0)


def test_guided_cell_row_reports_paper_nfe_and_network_evaluations(tmp_path):
    grid = parse_grid({
        "name": "guided", "models": [{"name": "digits", "guidance": 2.0}], "solvers": ["euler", "heun"],
        "nfe": [4], "methods": ["edm"], "metrics": ["mse"],
        "teacher": {"solver": "euler", "steps": 10, "method": "edm", "dtype": "float64"},
        "samples": {"train": 10, "eval": 40, "batch": 20},
    })
    run_local(grid, tmp_path, quiet=True)
    rows = [json.loads(p.read_text()) for p in (tmp_path / "guided" / "rows").glob("*.json")]
    assert len(rows) == 2
    for row in rows:
        assert row["nfe_measured"] == row["nfe_expected"] == row["nfe"] == 4
        assert row["network_evals_measured"] == row["network_evals_expected"] == 8


def test_class_conditional_priors_are_class_balanced():
    counts = torch.bincount(labels_for(range(5000), 10), minlength=10)
    assert counts.tolist() == [500] * 10
    # not a multiple of the class count: shares differ by at most one, whatever the batch split
    counts = torch.bincount(labels_for(range(1005), 1000), minlength=1000)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 1005
    assert labels_for(range(10), 0) is None
