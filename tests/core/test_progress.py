"""Progress without a terminal: plain lines with done/total and an ETA (CI, nohup, Slurm logs)."""
from __future__ import annotations

import io

from bench.grid import parse_grid
from bench.launch import run_local
from bench.progress import Progress


def test_a_sweep_logged_to_a_file_prints_progress_lines(tiny_grid, tmp_path, capsys):
    run_local(parse_grid(tiny_grid), tmp_path, quiet=False)
    err = capsys.readouterr().err
    assert "tiny: 4 cells, 0 done, 4 to run" in err
    assert "tiny cells: 4/4 done" in err and "elapsed" in err


def test_progress_lines_come_every_twentieth_and_at_the_end_with_an_eta():
    out = io.StringIO()
    progress = Progress(100, "g cells", stream=out)
    for _ in range(100):
        progress.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 and lines[0].startswith("g cells: 5/100 done") and "ETA" in lines[0]
    assert lines[-1].startswith("g cells: 100/100 done") and "ETA" not in lines[-1]


def test_quiet_prints_nothing():
    out = io.StringIO()
    progress = Progress(3, "g", quiet=True, stream=out)
    progress.update(3)
    assert out.getvalue() == ""
