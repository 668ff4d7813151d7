"""`bench report`'s files: the long CSV reads back with plain pandas, tables carry bold best values
and arrows, plots come as PNG and PDF with one style per method, schedules and sample panels."""
from __future__ import annotations

import pandas as pd

from bench.figures import method_styles
from bench.grid import parse_grid
from bench.launch import run_local
from bench.report_files import print_and_write_report


def test_report_writes_long_csv_tables_plots_schedules_and_panels(tmp_path, capsys):
    grid = parse_grid({
        "name": "paper", "models": ["digits"], "solvers": ["euler"], "nfe": [3, 4],
        "methods": ["uniform", {"name": "edm", "label": "EDM"}], "seeds": [0, 1], "metrics": ["mse", "psnr"],
        "teacher": {"solver": "euler", "steps": 8, "method": "edm"},
        "samples": {"train": 8, "eval": 16, "batch": 16},
    })
    run_local(grid, tmp_path, quiet=True)
    written = print_and_write_report(tmp_path, grid, "markdown")
    printed = capsys.readouterr().out
    out = tmp_path / "paper" / "report"
    long = pd.read_csv(out / "results_long.csv")
    assert len(long) == 2 * 2 * 2 * 2  # methods x NFEs x seeds x metrics
    assert set(long["method"]) == {"uniform", "EDM"} and "method_spec" in long.columns
    assert pd.read_parquet(out / "results_long.parquet").shape == long.shape
    assert "mse ↓" in printed and "psnr ↑" in printed and "**" in printed and " ± " in printed
    assert "textbf" in (out / "tables.tex").read_text()
    names = {p.name for p in written["paper"]}
    assert {"digits_euler_mse.png", "digits_euler_mse.pdf", "samples_digits_euler.png"} <= names
    assert {"schedule_digits_euler_nfe3.png", "schedule_digits_euler_nfe4.pdf"} <= names


def test_every_method_gets_its_own_style_and_heuristics_are_dashed():
    methods = [f"m{i}" for i in range(30)]
    styles = method_styles(methods, heuristics={"m0", "m1"})
    pairs = {(s["color"], s["marker"]) for m, s in styles.items() if m in methods}
    assert len(pairs) == 30
    assert styles["m0"]["linestyle"] == "--" and styles["m5"]["linestyle"] == "-"


def test_schedule_plot_rebuilds_a_model_from_a_rows_resolved_spec():
    """A row's model spec is the resolved one (version, file hashes, digits-net's weights_sha256 added
    by `resolve`); the schedule plot builds the model from its declared parameters only."""
    import numpy as np

    from bench.figures import _sigma_of

    spec = {"dtype": "fp32", "files": {}, "guidance": None, "name": "digits-net", "time": "ve", "version": 1,
            "weights": None, "weights_sha256": "d51b50c7826d"}
    assert np.array_equal(_sigma_of(spec, np.array([80.0, 1.5, 0.002])), np.array([80.0, 1.5, 0.002]))
