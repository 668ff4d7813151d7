"""The `manual` method: lists in the grid or in JSON/CSV/text files, AYS's log-linear interpolation,
endpoint rules, and a digits grid at its own NFE and two interpolated ones."""
import json

import numpy as np
import pytest
import torch

from bench.__main__ import main
from bench.errors import UserError
from bench.grid import parse_grid
from bench.launch import run_local
from bench.registry import METHODS
from bench.schedules import VE, VPScaledLinear
from bench.baselines.manual import loglinear_interp

LIST = [80.0, 12.0, 3.0, 0.9, 0.28, 0.07, 0.002]


def _same(t, values):
    return t.tolist() == pytest.approx(values, rel=1e-12) and t[0] == values[0] and t[-1] == values[-1]


def _t(steps, schedule=VE(), **params):
    return METHODS.create("manual", **params).bind(schedule, steps).timesteps()


def test_a_sigma_list_runs_as_given_at_its_own_steps():
    assert _same(_t(6, sigmas=LIST), LIST)  # VE: t = sigma, ends exact
    s = VPScaledLinear()
    t = _t(6, s, sigmas=[float(s.sigma_ve(torch.tensor(v, dtype=torch.float64))) for v in (1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.001)])
    assert torch.allclose(t, torch.tensor([1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.001], dtype=torch.float64), rtol=1e-9)
    assert _same(_t(3, t=[80.0, 5.0, 0.5, 0.002]), [80.0, 5.0, 0.5, 0.002])


def test_loglinear_interpolation_is_ays_rule():
    """AYS's `loglinear_interp` (NVIDIA's how-to page): log sigma linear in the normalised index."""
    out = _t(9, sigmas=LIST, interpolate=True).numpy()
    xs, new = np.linspace(0, 1, 7), np.linspace(0, 1, 10)
    expected = np.exp(np.interp(new, xs, np.log(LIST[::-1])))[::-1]
    assert np.allclose(out, expected, rtol=1e-12) and out[0] == 80.0 and out[-1] == 0.002
    assert np.allclose(loglinear_interp(LIST, 7), LIST, rtol=1e-12)  # same length: unchanged (up to log/exp)
    assert len(_t(3, sigmas=LIST, interpolate=True)) == 4


def test_errors_are_one_line_user_errors():
    with pytest.raises(UserError, match="interpolate: true"):
        _t(4, sigmas=LIST)
    with pytest.raises(UserError, match="ends: model"):
        _t(6, sigmas=[70.0] + LIST[1:])
    with pytest.raises(UserError, match="strictly decreasing"):
        METHODS.create("manual", sigmas=[80.0, 90.0, 0.002])
    with pytest.raises(UserError, match="exactly one of"):
        METHODS.create("manual", sigmas=LIST, t=LIST)
    with pytest.raises(UserError, match="exactly one of"):
        METHODS.create("manual")
    with pytest.raises(UserError, match="no file"):
        METHODS.create("manual", path="/nonexistent/list.json")
    # the documented rule replaces the ends, keeps the interior
    assert _same(_t(6, sigmas=[70.0] + LIST[1:-1] + [0.01], ends="model"), LIST)
    # within rtol the ends are the model's exactly; k-diffusion's trailing 0 is dropped
    assert _same(_t(6, sigmas=[80.00001] + LIST[1:] + [0.0]), LIST)


def test_files_json_csv_text_and_the_ays_lists(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"mine": {"sigmas": LIST}, "other": [1.0, 0.5]}))
    (tmp_path / "b.csv").write_text("i,sigma\n" + "\n".join(f"{i},{v}" for i, v in enumerate(LIST)) + "\n")
    (tmp_path / "c.txt").write_text(" ".join(map(str, LIST)))
    assert _same(_t(6, path=str(tmp_path / "a.json"), entry="mine"), LIST)
    assert _same(_t(6, path=str(tmp_path / "b.csv")), LIST)
    assert _same(_t(6, path=str(tmp_path / "c.txt"), kind="sigmas"), LIST)
    with pytest.raises(UserError, match="entry"):
        METHODS.create("manual", path=str(tmp_path / "a.json"))
    with pytest.raises(UserError, match="kind"):
        METHODS.create("manual", path=str(tmp_path / "c.txt"))
    # the shipped AYS lists are Stable Diffusion's sigmas: they land on its training steps 999 .. 0
    s = VPScaledLinear()
    t = _t(10, s, path="schedules/ays.json", entry="SD1")
    steps = (t * 1000 - 1).numpy()
    assert np.allclose(steps, steps.round(), atol=1e-3) and steps[0] == 999 and steps[-1] == 0
    assert len(_t(5, s, path="schedules/ays.json", entry="SDXL", interpolate=True)) == 6


def test_manual_is_not_a_paper_baseline():
    cls = METHODS.get("manual")
    assert cls.heuristic and not cls.paper_baseline and not cls.needs_fit


def test_show_schedule_prints_a_manual_list(capsys):
    assert main(["show-schedule", "--model", "digits", "--method", "manual", "--param", f"sigmas={LIST}",
                 "--param", "interpolate=true", "--nfe", "6", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("t: the model's time (ve schedule")
    assert out[1] == "nfe=6 steps=6: t " + " ".join(f"{v:.6g}" for v in LIST)
    assert out[2].split() == ["sigma"] + [f"{v:.6g}" for v in LIST]  # VE: sigma = t
    assert out[3].startswith("nfe=4 steps=4: t 80 ") and out[3].endswith(" 0.002")
    assert main(["show-schedule", "--model", "digits", "--method", "manual", "--param", f"sigmas={LIST}",
                 "--nfe", "4"]) == 2  # one-line error, no trace


def test_a_digits_grid_runs_the_list_at_its_nfe_and_two_interpolated_ones(tmp_path):
    raw = {
        "name": "man", "models": ["digits"], "solvers": ["euler"], "nfe": [4, 6, 8],
        "methods": ["edm", {"name": "manual", "sigmas": LIST, "interpolate": True}],
        "metrics": ["mse"], "teacher": {"solver": "euler", "steps": 20, "method": "edm", "dtype": "float64"},
        "samples": {"train": 8, "eval": 64, "batch": 64},
    }
    run_local(parse_grid(raw), root=tmp_path, quiet=True)
    rows = [json.loads(p.read_text()) for p in (tmp_path / "man" / "rows").glob("*.json")]
    manual = {r["nfe"]: r for r in rows if r["method"]["name"] == "manual"}
    assert sorted(manual) == [4, 6, 8]
    assert manual[6]["schedule"]["t"][0] == pytest.approx(LIST, rel=1e-6)
    assert len(manual[8]["schedule"]["t"][0]) == 9 and manual[4]["metrics"]["mse"] > 0
    assert all(r["heuristic"] and not r["paper_baseline"] for r in manual.values())
    from bench import report

    tabs = report.tables(report.load_rows(tmp_path))
    table = tabs[("man", "digits", "euler", "mse")]
    assert (table.loc[report.BEST_HEURISTIC] == table.loc["edm"]).all()  # manual never sets the bar


def test_a_list_that_does_not_fit_a_cell_is_refused_before_anything_runs(tmp_path, capsys):
    """Wrong length (no interpolate) or wrong range: `bench run` stops with one line naming the
    entry, the cell and the fix, before the teacher or any cell runs (nothing written)."""
    import yaml

    good = {"name": "manual", "sigmas": LIST}
    cases = [
        ({"name": "manual", "sigmas": LIST}, [4, 6], "the list has 7 values (6 steps) but this cell runs 4 steps",
         "interpolate: true"),
        ({"name": "manual", "sigmas": [50.0, 3.0, 0.3, 0.002]}, [3], "runs from sigma 50 to 0.002", "ends: model"),
    ]
    for entry, nfe, why, fix in cases:
        raw = {"name": "bad", "models": ["digits"], "solvers": ["euler"], "nfe": nfe, "methods": ["edm", entry],
               "metrics": ["mse"], "teacher": {"solver": "euler", "steps": 20, "method": "edm"}}
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(raw))
        root = tmp_path / "res"
        assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bench: error: 1 cell(s) of this grid cannot run: method manual(")
        assert "\n" not in err and "Traceback" not in err and why in err and fix in err and f"nfe={nfe[0]}" in err
        assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))  # no teacher, no row
    from bench.preflight import method_problems

    assert method_problems(parse_grid({"models": ["digits"], "solvers": ["euler"], "nfe": [6], "methods": [good],
                                       "metrics": ["mse"]}).cells) == []
