"""Each GPU study (a study that names checkpoints) end to end on tiny stand-ins of the same adapter:
it loads, lists what it needs in one message (exit 2 from `bench run --study`), then runs with 8
samples on stand-in networks (`edm`: `tests.models.test_edm`'s fake EDM tree; `diffusers-ldm`: a tiny
UNet2DModel + VQModel + DDPMScheduler pipeline folder built with diffusers' own classes;
`compvis-ldm`: `tests.models.test_compvis_ldm`'s fake latent-diffusion tree; the FID through `tests.metrics.test_fid`'s
stand-in feature extractor, with references built from random images), reports with the published
rows beside the measured ones, and `check` calls every value "not comparable: stand-in model". A study
whose model adapter the harness lacks says so in one line and lists every value as "not run"."""
from __future__ import annotations

import pickle
import shutil
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from bench.__main__ import main
from bench.launch import run_local
from bench.metrics import fid as fidmod
from bench.metrics import fid_references
from bench.registry import MODELS
from bench.report_files import print_and_write_report
from bench.studies import STUDIES_DIR, check, format_check, load_study, missing, with_stand_in

from ..metrics.test_fid import FakeExtractor
from ..models.test_compvis_ldm import config as ldm_config
from ..models.test_compvis_ldm import forget_ldm, write_checkpoint
from ..models.test_edm import _fake_tree, _forget_tree

GPU_STUDIES = [p for p in sorted(STUDIES_DIR.glob("*.yaml")) if load_study(p).checkpoints]


def _adapters(path) -> set[str]:
    return {m.get("name") for m in load_study(path).grid_raw["models"]}


RUNNABLE = [p for p in GPU_STUDIES if all(name in MODELS for name in _adapters(p))]

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


def test_a_study_whose_adapter_is_missing_names_it_and_lists_every_value_as_not_run(tmp_path, capsys):
    assert RUNNABLE == GPU_STUDIES  # every shipped study has its adapter
    raw = yaml.safe_load((STUDIES_DIR / "ld3-table22.yaml").read_text())
    grid = yaml.safe_load((STUDIES_DIR.parent / "grids" / "ld3-table22.yaml").read_text())
    grid["models"][0]["name"] = "no-such-adapter"
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**raw, "grid": "grid.yaml"}))
    study = load_study(path)
    needs = missing(study, tmp_path / "r")
    assert needs[0].startswith("model 'imagenet256': this harness has no model adapter 'no-such-adapter'")
    assert "https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt" in needs[0]
    assert main(["run", "--study", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "no model adapter 'no-such-adapter'" in capsys.readouterr().err
    results = check(study, tmp_path / "r")
    assert results and all(r.status == "not run" for r in results)
    assert main(["check", "--study", str(path), "--results", str(tmp_path / "r")]) == 0
    assert f"{len(results)} not run" in capsys.readouterr().out


def _edm_stand_ins(study, tmp_path) -> dict:
    """{model label: spec} of tiny EDMPrecond pickles, named as the paper's files (so the adapter derives
    the same FID reference name), with a copy of the fake EDM tree as their source."""
    tree = _fake_tree(tmp_path / "tree")
    sys.path.insert(0, str(tree))
    models = {}
    try:
        from training.networks import EDMPrecond

        for i, spec in enumerate(study.grid_raw["models"]):
            conditional = "-cond-" in spec["pickle"]
            torch.manual_seed(i)
            net = EDMPrecond(img_resolution=8, img_channels=3, label_dim=10 if conditional else 0)
            file = tmp_path / spec["pickle"].rsplit("/", 1)[-1]
            with open(file, "wb") as f:
                pickle.dump({"ema": net}, f)
            models[spec["label"]] = {"name": "edm", "pickle": str(file), "source": str(tmp_path / "src")}
    finally:
        _forget_tree(tree)
    shutil.copytree(tree, tmp_path / "src")
    return models


def _ldm_stand_ins(study, tmp_path) -> dict:
    """{model label: spec} of tiny diffusers LDM pipeline folders (the layout `diffusers-ldm` reads for
    CompVis' LSUN-Bedroom LDM: unet/ UNet2DModel on 3-channel latents, vqvae/ VQModel, scheduler/ with
    the checkpoint's scaled-linear betas 0.0015..0.0195): 4x4x3 latents decoded to 8x8 images."""
    diffusers = pytest.importorskip("diffusers")
    models = {}
    for i, spec in enumerate(study.grid_raw["models"]):
        folder = tmp_path / f"ldm-{i}"
        torch.manual_seed(i)
        diffusers.UNet2DModel(
            sample_size=4, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
            norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        ).save_pretrained(folder / "unet")
        diffusers.VQModel(
            in_channels=3, out_channels=3, latent_channels=3, vq_embed_dim=3, num_vq_embeddings=16, layers_per_block=1,
            block_out_channels=(8, 16), norm_num_groups=4, sample_size=8,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        ).save_pretrained(folder / "vqvae")
        diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195,
                                clip_sample=False).save_pretrained(folder / "scheduler")
        models[spec["label"]] = {"name": "diffusers-ldm", "path": str(folder)}
    return models


def _compvis_stand_ins(study, tmp_path) -> dict:
    """{model label: spec} of tiny CompVis-style class-conditional LDMs (`tests.models.test_compvis_ldm`'s fake
    latent-diffusion tree: 10 classes and the null class, 4x4x3 latents, 8x8 images), keeping the grid's
    guidance."""
    models = {}
    for i, spec in enumerate(study.grid_raw["models"]):
        built = write_checkpoint(tmp_path / f"ldm-{i}", ldm_config(), seed=i)
        models[spec["label"]] = {**built, **({"guidance": spec["guidance"]} if "guidance" in spec else {})}
    return models


STAND_INS = {"edm": _edm_stand_ins, "diffusers-ldm": _ldm_stand_ins, "compvis-ldm": _compvis_stand_ins}


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
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.stem)
def test_gpu_study_runs_on_stand_ins(path, tmp_path, monkeypatch, capsys):
    study = load_study(path)
    (adapter,) = _adapters(path)
    assert adapter in STAND_INS, f"no stand-in for the {adapter} adapter"
    extractor = FakeExtractor()
    monkeypatch.setattr(fidmod, "get_extractor", lambda path=None, device="cpu", batch_size=50: extractor)
    root = tmp_path / "results"
    monkeypatch.setenv("BENCH_RESULTS", str(root))
    models = STAND_INS[adapter](study, tmp_path)
    try:
        stand_in = with_stand_in(study, models, samples={"train": 8, "eval": 8, "batch": 8}, methods=CHEAP,
                                 teacher={**study.grid_raw["teacher"], "steps": 6})
        subset = STAND_IN_SUBSET.get(study.name, {})
        if subset:
            stand_in = replace(stand_in, grid_raw={**stand_in.grid_raw, **subset}, _grid=None)
        rng = np.random.default_rng(0)
        for ref in study.fid_reference:
            images = rng.integers(0, 256, size=(16, 3, 8, 8), dtype=np.uint8)
            fid_references.build_reference(extractor, images, ref.name, (8, 8), root / "cache" / "fid-refs", source="test")
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
        assert all(np.isfinite(r.measured) for r in ran)  # each cell scored (FID of the decoded samples for LDMs)
        rest = len(results) - len(ran)
        assert all(r.status == "not run" for r in results if r not in ran) and bool(rest) == bool(subset)
        assert format_check(stand_in, results).splitlines()[0].endswith(
            (f"{rest} not run, " if rest else "") + f"{len(ran)} not comparable")
    finally:
        for p in list(sys.path):
            if p.startswith(str(tmp_path)):
                _forget_tree(type(tmp_path)(p))
        _forget_tree(tmp_path / "src")
        forget_ldm()
