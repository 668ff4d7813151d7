"""The `edm` adapter on a fake EDM source tree: a tiny `training/networks.py` with an EDMPrecond-like
net, pickled as {'ema': net} the way EDM's training saves it, loaded from a copy of the tree at another
path, then a full harness cell (heuristics + LD3, two solvers). No real EDM code or weights needed."""
from __future__ import annotations

import json
import pickle
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench.errors import UserError
from bench.grid import parse_grid
from bench.launch import run_local
from bench.models import make_model

NETWORKS = textwrap.dedent('''
    import torch

    class EDMPrecond(torch.nn.Module):
        """EDM's preconditioning around one conv layer, with a class embedding when label_dim > 0."""

        def __init__(self, img_resolution=8, img_channels=3, label_dim=0, sigma_min=0, sigma_max=float('inf'),
                     sigma_data=0.5):
            super().__init__()
            self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
            self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data
            self.conv = torch.nn.Conv2d(img_channels, img_channels, 3, padding=1)
            self.emb = torch.nn.Linear(max(label_dim, 1), img_channels)

        def forward(self, x, sigma, class_labels=None, force_fp32=False):
            x = x.to(torch.float32)
            sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
            if self.label_dim:
                class_labels = (torch.zeros([1, self.label_dim], device=x.device) if class_labels is None
                                else class_labels.to(torch.float32).reshape(-1, self.label_dim))
            sd = self.sigma_data
            c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
            c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
            c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
            f = self.conv(c_in * x) * torch.tanh(sigma.log() / 4)
            if self.label_dim:
                f = f + self.emb(class_labels)[:, :, None, None]
            return c_skip * x + c_out * torch.tanh(f)
''')


def _fake_tree(root: Path) -> Path:
    (root / "training").mkdir(parents=True)
    (root / "training" / "__init__.py").write_text("")
    (root / "training" / "networks.py").write_text(NETWORKS)
    return root


def _forget_tree(path: Path):
    for name in [n for n in sys.modules if n == "training" or n.startswith("training.")]:
        del sys.modules[name]
    while str(path) in sys.path:
        sys.path.remove(str(path))


@pytest.fixture
def edm_pickle(tmp_path):
    """make(label_dim) -> (pickle path, source path of a second copy of the tree)."""

    def make(label_dim: int, name: str = "net.pkl"):
        tree = _fake_tree(tmp_path / f"build-{name}")
        sys.path.insert(0, str(tree))
        try:
            from training.networks import EDMPrecond

            torch.manual_seed(0)
            net = EDMPrecond(img_resolution=8, img_channels=3, label_dim=label_dim)
            path = tmp_path / name
            with open(path, "wb") as f:
                pickle.dump({"ema": net, "augment_pipe": None}, f)
        finally:
            _forget_tree(tree)
        source = tmp_path / f"src-{name}"
        shutil.copytree(tree, source)
        shutil.rmtree(tree)  # the adapter must load from the copy
        return str(path), str(source)

    yield make
    for p in list(sys.path):
        if p.startswith(str(tmp_path)):
            _forget_tree(Path(p))


def test_edm_loads_lazily_and_reports_its_shape_classes_and_schedule(edm_pickle):
    path, source = edm_pickle(10)
    model = make_model({"name": "edm", "pickle": path, "source": source})
    assert not model._loaded  # constructing (grid validation) reads nothing
    assert model.required_paths() == {"pickle": path, "source": source}
    assert model.reference_dataset == "net"  # the file's stem; EDM's own names give e.g. cifar10-32x32
    named = make_model({"name": "edm", "pickle": "checkpoints/edm/edm-cifar10-32x32-cond-vp.pkl", "source": source})
    assert named.reference_dataset == "cifar10-32x32"
    assert model.data_shape == (3, 8, 8) and model.num_classes == 10
    assert (model.schedule.t_min, model.schedule.t_max) == (0.002, 80.0)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    t = torch.full((4,), 1.5, dtype=torch.float64)
    out = model(x, t, torch.tensor([0, 3, -1, 9]))
    assert out.shape == x.shape and out.dtype == torch.float64
    # label -1 is EDM's unconditional call (zero one-hot): the same as calling the net with no labels
    net_uncond = model.net(x[2:3], t[2:3], None).double()
    assert torch.allclose(out[2:3], net_uncond)
    one_hot = torch.zeros(1, 10)
    one_hot[0, 3] = 1
    assert torch.allclose(out[1:2], model.net(x[1:2], t[1:2], one_hot).double())


def test_edm_user_errors(edm_pickle, tmp_path):
    with pytest.raises(UserError, match="pickle"):
        make_model({"name": "edm", "source": str(tmp_path)})
    with pytest.raises(UserError, match="sigma_min"):
        make_model({"name": "edm", "pickle": "x.pkl", "source": str(tmp_path), "sigma_min": -1})
    missing = make_model({"name": "edm", "pickle": str(tmp_path / "none.pkl"), "source": str(tmp_path)})
    with pytest.raises(UserError, match="pickle: no file"):
        missing.data_shape
    path, _ = edm_pickle(0, "uncond.pkl")
    wrong_source = make_model({"name": "edm", "pickle": path, "source": str(tmp_path / "empty")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="source"):
        wrong_source.data_shape
    _, source = edm_pickle(0, "uncond2.pkl")
    guided_uncond = make_model({"name": "edm", "pickle": path, "source": source, "guidance": 2.0})
    with pytest.raises(UserError, match="guidance"):
        guided_uncond.num_classes


def test_edm_cell_through_the_harness(edm_pickle, tmp_path):
    path, source = edm_pickle(10)
    model = {"name": "edm", "pickle": path, "source": source}
    ld3 = {"name": "ld3", "train": 4, "val": 4, "batch": 2, "rounds1": 1, "rounds2": 1, "loss": "l2"}
    grid = parse_grid({
        "name": "edm", "models": [model, {**model, "guidance": 1.5}], "solvers": ["euler", "dpmpp-2m"],
        "nfe": [3], "methods": ["edm", ld3], "metrics": ["mse"],
        "teacher": {"solver": "euler", "steps": 8, "method": "edm", "dtype": "float64"},
        "samples": {"train": 4, "eval": 20, "batch": 20},
    })
    run_local(grid, tmp_path / "results", quiet=True)
    rows = [json.loads(p.read_text()) for p in (tmp_path / "results" / "edm" / "rows").glob("*.json")]
    assert len(rows) == 8
    for row in rows:
        guided = row["model"].get("guidance") is not None
        assert row["nfe_measured"] == row["nfe_expected"] == 3
        assert row["network_evals_measured"] == row["network_evals_expected"] == (6 if guided else 3)
        assert row["metrics"]["mse"] >= 0 and row["metrics"]["mse"] < float("inf")
    fitted = [r for r in rows if r["method"]["name"] == "ld3"]
    assert all(r["fit"]["fit_nfe"] > 0 for r in fitted)
