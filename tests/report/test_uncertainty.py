"""Per-sample scores, intervals, paired tests and the best set (bench.scores, bench.stats, report)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import report, stats
from bench.grid import parse_grid
from bench.launch import run_local
from bench.registry import METHODS
from bench.report_format import short_label
from bench.report_files import print_and_write_report
from bench.rows import read_row, write_row
from bench.schedules import VE
from bench.scores import read_scores, row_scores, write_scores
from bench.store import CorruptArtifact, ResultsRoot

REPO = Path(__file__).resolve().parents[2]


def _edm_sigmas(steps: int) -> list[float]:
    return [float(v) for v in METHODS.create("edm").bind(VE(), steps).timesteps()]


def _grid(name="unc", eval_n=256):
    return {
        "name": name, "models": ["digits"], "solvers": ["euler"], "nfe": [4],
        "methods": ["uniform", "edm", {"name": "manual", "sigmas": _edm_sigmas(4)}],
        "metrics": ["mse", "psnr"], "teacher": {"solver": "euler", "steps": 20, "method": "edm", "dtype": "float64"},
        "samples": {"train": 8, "eval": eval_n, "batch": 256},
    }


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    grid = parse_grid(_grid())
    run_local(grid, root=root, quiet=True)
    return grid, root


def _rows(root, name="unc"):
    return {r["method_label"]: r for r in (read_row(p) for p in (Path(root) / name / "rows").glob("*.json"))}


def test_rows_keep_per_sample_scores_whose_mean_is_the_row_metric(done):
    grid, root = done
    for row in _rows(root).values():
        scores = row_scores(root, row)
        assert set(scores) == {"mse", "psnr"} and len(scores["mse"]) == 256
        # the row's mean is computed as before (torch's float64 mean); numpy's pairwise sum agrees to round-off
        assert scores["mse"].mean() == pytest.approx(row["metrics"]["mse"], rel=1e-13)


def test_identical_samples_are_tied_with_difference_zero_and_p_one(done):
    grid, root = done
    rows = _rows(root)
    manual = next(k for k in rows if k.startswith("manual"))
    a, b = row_scores(root, rows["edm"]), row_scores(root, rows[manual])
    assert np.array_equal(a["mse"], b["mse"])  # the same sigmas sample the same points
    summary = report.long_table(grid, root)
    manual = short_label(manual)  # the report labels a long manual list by its length and hash
    line = summary[(summary["method"] == manual) & (summary["metric"] == "mse")].iloc[0]
    assert line["delta_vs_best_heuristic"] == 0.0 and line["p_vs_best_heuristic"] == 1.0
    best = summary[(summary["metric"] == "mse") & (summary["is_best"] == True)]["method"].iloc[0]  # noqa: E712
    assert best in ("edm", manual)
    assert line["in_best_set"] and (line["tied_with_best"] or line["is_best"])
    other = summary[(summary["method"] == "uniform") & (summary["metric"] == "mse")].iloc[0]
    assert other["p_vs_best_heuristic"] < 0.05 and not other["in_best_set"]


def test_an_interval_recomputed_with_plain_numpy_resampling_agrees(done):
    grid, root = done
    row = _rows(root)["uniform"]
    x = row_scores(root, row)["mse"]
    summary = report.long_table(grid, root, n_resamples=4000)
    line = summary[(summary["method"] == "uniform") & (summary["metric"] == "mse")].iloc[0]
    rng = np.random.default_rng(123)
    means = x[rng.integers(0, len(x), (4000, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    # Monte-Carlo error of a 2.5% quantile of 4000 resamples, in units of the bootstrap spread:
    # sqrt(q (1 - q) / B) / density ~ 0.06 sd for q = 0.025; 5 such errors, times the spread
    tol = 5 * 0.06 * means.std()
    assert abs(line["ci_low"] - low) < tol and abs(line["ci_high"] - high) < tol
    assert line["ci_low"] < row["metrics"]["mse"] < line["ci_high"]


def test_holm_matches_the_step_down_rule():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert np.allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(stats.holm([np.nan, 0.2])[0]) and stats.holm([np.nan, 0.2])[1] == 0.2


def test_report_is_deterministic_and_no_plots_writes_long_files(done, capsys):
    grid, root = done
    print_and_write_report(root, grid, "text", plots=False)
    first = capsys.readouterr().out
    out = ResultsRoot(root).report_dir("unc")
    files = {p: p.read_bytes() for p in (out / "results_long.csv", out / "tables.md")}
    assert (out / "results_long.parquet").is_file() and not (out / "plots").exists()
    print_and_write_report(root, grid, "text", plots=False)
    assert capsys.readouterr().out == first and all(p.read_bytes() == b for p, b in files.items())
    assert "±" in first and "Legend:" in first and "best set {" in first
    long = pd.read_csv(out / "results_long.csv")
    for column in ("n", "std", "ci_low", "ci_high", "delta_vs_best_heuristic", "delta_vs_best_heuristic_low",
                   "delta_vs_best_heuristic_high", "p_vs_best_heuristic", "tied_with_best",
                   "win_rate_vs_best_heuristic"):
        assert column in long.columns
    mse = long[long["metric"] == "mse"]
    assert (mse["n"] == 256).all() and (mse["ci_low"] < mse["value"]).all()


def _copy_root(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["missing", "corrupt", "other cell"])
def test_a_missing_or_corrupt_scores_file_is_never_reported_and_is_recomputed(done, tmp_path, damage, capsys):
    grid, src = done
    root = _copy_root(src, tmp_path / "root")
    results = ResultsRoot(root)
    cells = sorted(c.hash for c in grid.cells)
    path = results.scores_path("unc", cells[0])
    before = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(before[:100])
    else:  # another cell's file renamed under this one's name: fails the row's checksum
        path.write_bytes(results.scores_path("unc", cells[1]).read_bytes())
    long = report.long_table(grid, root)
    assert cells[0] not in set(long["cell"])  # left out, not reported with a wrong interval
    assert "skipping the row" in capsys.readouterr().err
    run_local(grid, root=root, quiet=True)  # quarantines the row and recomputes it
    assert path.read_bytes() and read_row(results.row_path("unc", cells[0]))
    assert any((Path(root) / "quarantine").rglob(f"{cells[0]}.json*"))
    assert cells[0] in set(report.long_table(grid, root)["cell"])


def test_a_scores_file_carries_its_cell():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.npz"
        sha = write_scores(path, "aaaa", {"mse": np.arange(3.0)})
        assert read_scores(path, "aaaa", sha)["mse"].tolist() == [0.0, 1.0, 2.0]
        with pytest.raises(CorruptArtifact, match="belongs to key"):
            read_scores(path, "bbbb", sha)


def test_rows_written_before_scores_report_without_intervals(done, tmp_path, capsys):
    grid, src = done
    root = _copy_root(src, tmp_path / "root")
    for path in (Path(root) / "unc" / "rows").glob("*.json"):
        row = json.loads(path.read_text())
        row.pop("scores_sha256")
        row.pop("checksum")
        write_row(path, row)
    long = report.long_table(grid, root)
    mse = long[long["metric"] == "mse"]
    assert mse["ci_low"].isna().all() and (mse["interval"] == stats.NO_SCORES).all()
    print_and_write_report(root, grid, "text", write_files=False)
    out = capsys.readouterr().out
    assert "±" not in out.split("Legend")[0] and "written before per-sample scores were kept" in out


def test_gc_knows_the_scores_files(done, tmp_path):
    from bench.gc import collect, remove

    grid, src = done
    root = _copy_root(src, tmp_path / "root")
    stray = ResultsRoot(root).scores_path("unc", "0" * 16)
    stray.write_bytes(b"x")
    smaller = parse_grid({**_grid(), "methods": ["uniform", "edm"]})
    garbage = collect(smaller, root)
    assert stray in garbage.scores and len(garbage.rows) == 1
    dropped = garbage.rows[0].stem
    remove(garbage, root)
    assert not stray.exists() and not ResultsRoot(root).scores_path("unc", dropped).exists()


@pytest.mark.parametrize("args, field", [(["--ci-level", "1.5"], "--ci-level"), (["--bootstrap", "0"], "--bootstrap")])
def test_bad_interval_settings_are_one_line_errors(done, args, field):
    grid, root = done
    proc = subprocess.run([sys.executable, "-m", "bench", "report", "--results", str(root), "--no-plots", *args],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and field in proc.stderr


def test_several_seeds_use_the_t_interval_of_seed_means():
    entries = [stats.Entry("a", {0: 1.0, 1: 2.0, 2: 3.0}, {0: None, 1: None, 2: None}, True, False),
               stats.Entry("b", {0: 1.5, 1: 2.5, 2: 3.5}, {0: None, 1: None, 2: None}, True, False)]
    out = stats.column_stats(entries, False, 0.95, 100, ("k",))
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(S)
    assert out["a"]["ci_low"] == pytest.approx(2.0 - half) and out["a"]["ci_high"] == pytest.approx(2.0 + half)
    assert out["b"]["delta_vs_best"] == pytest.approx(0.5) and out["b"]["p_vs_best"] == 0.0  # constant shift


def test_power_estimate_follows_the_normal_formula():
    d = np.array([0.1, -0.05, 0.2, 0.0, 0.15, -0.1])
    z = 1.959963984540054 + 0.8416212335729143
    assert stats.priors_needed(d, 0.95) == np.ceil((z * d.std(ddof=1) / d.mean()) ** 2)
    assert stats.priors_needed(np.zeros(5), 0.95) is None


def test_paired_p_is_scipys_one_sample_t_test():
    from scipy.stats import ttest_1samp

    d = np.random.default_rng(0).normal(0.1, 1.0, 500)
    assert stats.paired_p(d) == pytest.approx(ttest_1samp(d, 0.0).pvalue, rel=1e-10)
    assert stats.paired_p(np.zeros(10)) == 1.0


def test_kid_subsets_give_an_interval_labelled_by_their_unit_and_no_win_rate():
    from bench import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 50), rng.normal(1.2, 0.1, 50)
    entries = [stats.Entry("edm", {0: float(a.mean())}, {0: a}, paper_baseline=True, per_instance=False,
                           unit=stats.UNITS["kid"]),
               stats.Entry("indis", {0: float(b.mean())}, {0: b}, paper_baseline=False, per_instance=True,
                           unit=stats.UNITS["kid"])]
    labels, vectors = stats.column_vectors(entries, higher=False)
    low, high = stats.paired_bootstrap(vectors, 0.95, 500, stats.column_seed("g", "m", "s", 3))
    ci = {label: (lo, hi) for label, lo, hi in zip(labels, low, high)}
    out = stats.column_stats(entries, False, 0.95, 500, ("g", "m", "s", 3, "kid"), ci)
    assert out["edm"]["interval"] == "percentile bootstrap over 50 KID subsets"
    assert out["edm"]["ci_low"] < a.mean() < out["edm"]["ci_high"]
    assert np.isnan(out["indis"]["win_rate_vs_best_heuristic"])  # subsets are not priors
    assert out["indis"]["p_vs_best_heuristic"] < 0.05
