"""Each GPU study (a study that names checkpoints) end to end on tiny stand-ins of the same adapter:
it loads, lists what it needs in one message (exit 2 from `bench run --study`), then runs with 8
samples on stand-in networks (`tests.test_edm`'s fake EDM tree; the FID through `tests.test_fid`'s
stand-in feature extractor, with references built from random images), reports with the published
rows beside the measured ones, and `check` calls every value "not comparable: stand-in model"."""
from __future__ import annotations

import pickle
import shutil
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.__main__ import main
from bench.launch import run_local
from bench.metrics import fid as fidmod
from bench.report_files import print_and_write_report
from bench.studies import STUDIES_DIR, check, format_check, load_study, missing, with_stand_in

from .test_edm import _fake_tree, _forget_tree
from .test_fid import FakeExtractor

GPU_STUDIES = [p for p in sorted(STUDIES_DIR.glob("*.yaml")) if load_study(p).checkpoints]

# the learned and searched methods at the smallest settings that still fit (labels are kept)
CHEAP = {
    "ld3": {"train": 4, "val": 4, "batch": 2, "rounds1": 1, "rounds2": 1, "loss": "l2"},
    "indis": {"train": 4, "val": 4, "batch": 2, "iterations": 2, "val_every": 1, "loss": "l2"},
    "god": {"train": 4, "val": 4, "batch": 2, "iterations": 2, "val_every": 1, "loss": "l2"},
    "gits": {"warmup": 4},
    "ays": {"samples": 4, "max_sweeps": 1},
    "oss": {"teacher_steps": 24, "search_batch": 4},
}

# grid axes narrowed for the stand-in run of a study with many cells: LD3 Tables 18-20 (441 cells, 63
# fits of each learned / searched method) runs its first and last NFE column, every network, solver and
# method (126 cells)
STAND_IN_SUBSET = {"ld3-tables18-20": {"nfe": [4, 10]}}


def test_gpu_studies_exist():
    assert GPU_STUDIES, "no study names a checkpoint"


@pytest.mark.parametrize("path", GPU_STUDIES, ids=lambda p: p.stem)
def test_gpu_study_lists_what_it_needs_in_one_message(path, tmp_path, capsys):
    study = load_study(path)
    needs = missing(study, tmp_path / "r")
    assert any("from https://" in line for line in needs)
    assert sum(line.startswith("FID reference") for line in needs) == len(study.fid_reference)
    code = main(["run", "--study", str(path), "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and f"needs {len(needs)} file(s)" in err
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("path", GPU_STUDIES, ids=lambda p: p.stem)
def test_gpu_study_runs_on_stand_ins(path, tmp_path, monkeypatch, capsys):
    study = load_study(path)
    assert {m.get("name") for m in study.grid_raw["models"]} == {"edm"}, "stand-ins exist for the edm adapter only"
    extractor = FakeExtractor()
    monkeypatch.setattr(fidmod, "get_extractor", lambda path=None, device="cpu", batch_size=50: extractor)
    root = tmp_path / "results"
    monkeypatch.setenv("BENCH_RESULTS", str(root))
    tree = _fake_tree(tmp_path / "tree")
    sys.path.insert(0, str(tree))
    models = {}
    try:
        from training.networks import EDMPrecond

        for i, spec in enumerate(study.grid_raw["models"]):
            conditional = "-cond-" in spec["pickle"]
            torch.manual_seed(i)
            net = EDMPrecond(img_resolution=8, img_channels=3, label_dim=10 if conditional else 0)
            # the paper's file name, so the adapter derives the same FID reference name
            file = tmp_path / spec["pickle"].rsplit("/", 1)[-1]
            with open(file, "wb") as f:
                pickle.dump({"ema": net}, f)
            models[spec["label"]] = {"name": "edm", "pickle": str(file), "source": str(tmp_path / "src")}
    finally:
        _forget_tree(tree)
    shutil.copytree(tree, tmp_path / "src")
    try:
        stand_in = with_stand_in(study, models, samples={"train": 8, "eval": 8, "batch": 8}, methods=CHEAP,
                                 teacher={**study.grid_raw["teacher"], "steps": 6})
        subset = STAND_IN_SUBSET.get(study.name, {})
        if subset:
            stand_in = replace(stand_in, grid_raw={**stand_in.grid_raw, **subset}, _grid=None)
        rng = np.random.default_rng(0)
        for ref in study.fid_reference:
            images = rng.integers(0, 256, size=(16, 3, 8, 8), dtype=np.uint8)
            fidmod.build_reference(extractor, images, ref.name, (8, 8), root / "cache" / "fid-refs", source="test")
        assert missing(stand_in, root) == []
        grid = stand_in.grid
        run_local(grid, root, quiet=True)
        assert len(list((root / grid.name / "rows").glob("*.json"))) == len(grid.cells)
        print_and_write_report(root, grid, "text", 4, write_files=True, studies=[stand_in])
        out = capsys.readouterr().out
        for v in stand_in.values[:3]:
            assert f"{v.method}: published ({v.paper}, {v.table})" in out
        long = (root / grid.name / "report" / "results_long.csv").read_text()
        assert ",published," in long and ",measured," in long
        results = check(stand_in, root)
        ran = [r for r in results if r.value.nfe in stand_in.grid_raw["nfe"]]
        assert ran and all((r.status, r.why) == ("not comparable", "stand-in model") for r in ran)
        rest = len(results) - len(ran)
        assert all(r.status == "not run" for r in results if r not in ran) and bool(rest) == bool(subset)
        assert format_check(stand_in, results).splitlines()[0].endswith(
            (f"{rest} not run, " if rest else "") + f"{len(ran)} not comparable")
    finally:
        for p in list(sys.path):
            if p.startswith(str(tmp_path)):
                _forget_tree(type(tmp_path)(p))
        _forget_tree(tmp_path / "src")
