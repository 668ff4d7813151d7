"""`compvis-ldm` on a tiny stand-in of CompVis' latent-diffusion code: a fake `ldm` source tree with
the entry points the adapter uses (`ldm.util.instantiate_from_config`, `LatentDiffusion.apply_model`,
`get_learned_conditioning`, `decode_first_stage`, `cond_stage_key`, `ClassEmbedder`), shaped as the
real ones in github.com/CompVis/latent-diffusion (the real UNet replaced by a small network that uses
the timestep and the class context), a config laid out as configs/latent-diffusion/cin256-v2.yaml and
a Lightning-style checkpoint ({"state_dict": ...})."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bench.errors import UserError
from bench.models import make_model

UTIL = '''
import importlib


def get_obj_from_str(string):
    module, cls = string.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def instantiate_from_config(config):
    if not "target" in config:
        if config in ("__is_first_stage__", "__is_unconditional__"):
            return None
        raise KeyError("Expected key `target` to instantiate.")
    return get_obj_from_str(config["target"])(**config.get("params", dict()))
'''

ENCODERS = '''
import torch.nn as nn


class ClassEmbedder(nn.Module):
    def __init__(self, embed_dim, n_classes=1000, key="class"):
        super().__init__()
        self.key = key
        self.embedding = nn.Embedding(n_classes, embed_dim)

    def forward(self, batch, key=None):
        if key is None:
            key = self.key
        c = batch[key][:, None]
        return self.embedding(c)
'''

DDPM = '''
import math

import torch
import torch.nn as nn

from ldm.util import instantiate_from_config


class TinyUNet(nn.Module):
    """Stands in for openaimodel.UNetModel: uses x, the timestep t and the cross-attention context."""

    def __init__(self, in_channels, out_channels, context_dim=None, **ignored):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(2, out_channels)
        self.ctx = nn.Linear(context_dim, out_channels) if context_dim else None
        self.seen_t = None

    def forward(self, x, timesteps, context=None):
        self.seen_t = timesteps.detach().clone()
        emb = torch.stack([torch.sin(timesteps / 100.0), torch.cos(timesteps / 300.0)], 1)
        h = self.conv(x) + self.time(emb)[:, :, None, None]
        if self.ctx is not None:
            h = h + self.ctx(context.mean(1))[:, :, None, None]
        return torch.tanh(h)


class TinyVQ(nn.Module):
    """Stands in for autoencoder.VQModelInterface: decode() upsamples by 2 ** (len(ch_mult) - 1)."""

    def __init__(self, embed_dim, ddconfig, **ignored):
        super().__init__()
        self.factor = 2 ** (len(ddconfig["ch_mult"]) - 1)
        self.post = nn.Conv2d(embed_dim, ddconfig["out_ch"], 1)

    def decode(self, z):
        return torch.tanh(self.post(nn.functional.interpolate(z, scale_factor=self.factor)))


class DiffusionWrapper(nn.Module):
    def __init__(self, diff_model_config, conditioning_key):
        super().__init__()
        self.diffusion_model = instantiate_from_config(diff_model_config)
        self.conditioning_key = conditioning_key

    def forward(self, x, t, c_concat=None, c_crossattn=None):
        if self.conditioning_key is None:
            return self.diffusion_model(x, t)
        return self.diffusion_model(x, t, context=torch.cat(c_crossattn, 1))


class LatentDiffusion(nn.Module):
    def __init__(self, first_stage_config, cond_stage_config, unet_config, cond_stage_key="image",
                 conditioning_key=None, scale_factor=1.0, timesteps=1000, linear_start=1e-4, linear_end=2e-2,
                 image_size=256, channels=3, parameterization="eps", **ignored):
        super().__init__()
        if cond_stage_config == "__is_unconditional__":
            conditioning_key = None
        self.model = DiffusionWrapper(unet_config, conditioning_key)
        self.first_stage_model = instantiate_from_config(first_stage_config)
        self.cond_stage_model = instantiate_from_config(cond_stage_config)
        self.cond_stage_key = cond_stage_key
        self.scale_factor = scale_factor
        self.parameterization = parameterization

    def get_learned_conditioning(self, c):
        return self.cond_stage_model(c)

    def apply_model(self, x_noisy, t, cond, return_ids=False):
        if not isinstance(cond, dict):
            if not isinstance(cond, list):
                cond = [cond]
            key = "c_concat" if self.model.conditioning_key == "concat" else "c_crossattn"
            cond = {key: cond}
        return self.model(x_noisy, t, **cond)

    @torch.no_grad()
    def decode_first_stage(self, z, predict_cids=False, force_not_quantize=False):
        return self.first_stage_model.decode(1.0 / self.scale_factor * z)
'''

FILES = {"ldm/__init__.py": "", "ldm/util.py": UTIL, "ldm/models/__init__.py": "",
         "ldm/models/diffusion/__init__.py": "", "ldm/models/diffusion/ddpm.py": DDPM,
         "ldm/modules/__init__.py": "", "ldm/modules/encoders/__init__.py": "",
         "ldm/modules/encoders/modules.py": ENCODERS}


def config(n_classes=11, conditional=True, parameterization="eps") -> dict:
    """A tiny cin256-v2-shaped config: 4x4x3 latents, an f2 first stage (8x8 images), n_classes - 1
    classes plus the null class."""
    params = {
        "linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000, "image_size": 4, "channels": 3,
        "cond_stage_key": "class_label", "conditioning_key": "crossattn", "scale_factor": 0.5,
        "parameterization": parameterization,
        "unet_config": {"target": "ldm.models.diffusion.ddpm.TinyUNet",
                        "params": {"in_channels": 3, "out_channels": 3, "context_dim": 8 if conditional else None}},
        "first_stage_config": {"target": "ldm.models.diffusion.ddpm.TinyVQ",
                               "params": {"embed_dim": 3, "ckpt_path": "no/such/file.ckpt",
                                          "ddconfig": {"out_ch": 3, "resolution": 8, "ch_mult": [1, 2]}}},
        "cond_stage_config": ({"target": "ldm.modules.encoders.modules.ClassEmbedder",
                               "params": {"n_classes": n_classes, "embed_dim": 8, "key": "class_label"}}
                              if conditional else "__is_unconditional__"),
    }
    return {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": params}}


def fake_ldm_tree(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def forget_ldm(path: Path | None = None) -> None:
    for name in [n for n in sys.modules if n == "ldm" or n.startswith("ldm.")]:
        del sys.modules[name]
    while path is not None and str(path) in sys.path:
        sys.path.remove(str(path))


def write_checkpoint(folder: Path, cfg: dict, seed: int = 0) -> dict:
    """The fake tree under folder/src, cfg as folder/config.yaml and a checkpoint of a model built from it
    as folder/model.ckpt; returns the `compvis-ldm` spec."""
    tree = fake_ldm_tree(folder / "src")
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    sys.path.insert(0, str(tree))
    try:
        from ldm.util import instantiate_from_config

        torch.manual_seed(seed)
        model = instantiate_from_config(cfg["model"])
        torch.save({"state_dict": model.state_dict(), "global_step": 1}, folder / "model.ckpt")
    finally:
        forget_ldm(tree)
    return {"name": "compvis-ldm", "ckpt": str(folder / "model.ckpt"), "config": str(folder / "config.yaml"),
            "source": str(tree)}


@pytest.fixture
def ldm_spec(tmp_path):
    spec = write_checkpoint(tmp_path, config())
    yield spec
    forget_ldm(Path(spec["source"]))


def test_schedule_shapes_and_classes_come_from_the_config_without_loading(ldm_spec):
    model = make_model(ldm_spec)
    assert (model.data_shape, model.image_shape, model.num_classes) == ((3, 4, 4), (3, 8, 8), 10)
    assert "ldm" not in sys.modules  # nothing imported or loaded yet
    # LDM's "linear" betas: linspace(sqrt(linear_start), sqrt(linear_end), N)^2 (make_beta_schedule)
    n = 1000
    abar, prod = [], 1.0
    for i in range(n):
        beta = (math.sqrt(0.0015) + i * (math.sqrt(0.0195) - math.sqrt(0.0015)) / (n - 1)) ** 2
        prod *= 1 - beta
        abar.append(prod)
    t = torch.tensor([1 / n, 0.5, 1.0], dtype=torch.float64)  # steps 0, 499, 999
    expect = torch.tensor([abar[0], abar[499], abar[999]], dtype=torch.float64).sqrt()
    torch.testing.assert_close(model.schedule.alpha(t), expect, rtol=1e-12, atol=0)


def test_denoiser_reads_eps_at_the_fractional_step_with_the_null_class_for_minus_one(ldm_spec):
    model = make_model(ldm_spec)
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    labels = torch.tensor([2, -1, 9])
    x0 = model(x, t, labels)
    ldm = model.ldm
    assert torch.allclose(ldm.model.diffusion_model.seen_t.double(), t * 1000 - 1)
    context = ldm.cond_stage_model({"class_label": torch.tensor([2, 10, 9])})  # -1 -> class 10, the null class
    eps = ldm.apply_model(x.float(), (t * 1000 - 1).float(), context).double()
    alpha, sigma = model.schedule.alpha(t)[:, None, None, None], model.schedule.sigma(t)[:, None, None, None]
    torch.testing.assert_close(x0, (x - sigma * eps) / alpha)
    assert x0.dtype == torch.float64
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        model(x, t, torch.tensor([0, 10, 1]))


def test_guidance_mixes_conditional_and_null_class_predictions(ldm_spec):
    plain, guided = make_model(ldm_spec), make_model({**ldm_spec, "guidance": 2.0})
    x, t, c = torch.randn(2, 3, 4, 4), torch.tensor([0.7, 0.3]), torch.tensor([1, 4])
    cond, uncond = plain(x, t, c), plain(x, t, torch.full_like(c, -1))
    torch.testing.assert_close(guided(x, t, c), uncond + 2.0 * (cond - uncond), rtol=1e-5, atol=1e-6)
    assert guided.evals_per_call == 2


def test_decode_is_the_models_decode_first_stage_with_gradients(ldm_spec):
    model = make_model(ldm_spec)
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    images = model.decode(z)
    assert images.shape == (2, 3, 8, 8) and images.dtype == torch.float64
    torch.testing.assert_close(images.detach(), model.ldm.decode_first_stage(z.detach().float()).double())
    images.square().sum().backward()  # decode_first_stage itself runs under no_grad
    assert z.grad is not None and bool(z.grad.abs().sum() > 0)


def test_unconditional_and_x0_configs(tmp_path):
    spec = write_checkpoint(tmp_path, config(conditional=False, parameterization="x0"))
    try:
        model = make_model(spec)
        assert model.num_classes == 0
        x, t = torch.randn(2, 3, 4, 4), torch.tensor([0.5, 0.5])
        out = model(x, t)
        torch.testing.assert_close(out, model.ldm.apply_model(x, t * 1000 - 1, None))  # "x0": the output itself
        with pytest.raises(UserError, match="guidance needs a class-conditional model"):
            make_model({**spec, "guidance": 2.0}).load()
    finally:
        forget_ldm(Path(spec["source"]))


def test_bad_configs_and_checkpoints_are_one_line_user_errors(tmp_path, ldm_spec):
    text = config()
    text["model"]["params"]["cond_stage_config"] = {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(text))
    with pytest.raises(UserError, match="conditioning 'ldm.modules.encoders.modules.FrozenCLIPEmbedder' is not supported"):
        make_model({**ldm_spec, "config": str(tmp_path / "text.yaml")}).num_classes
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({"model": {"target": "ldm.models.diffusion.ddpm.DDPM"}}))
    with pytest.raises(UserError, match="does not describe a ldm.models.diffusion.ddpm.LatentDiffusion"):
        make_model({**ldm_spec, "config": str(tmp_path / "other.yaml")}).data_shape
    # a checkpoint without the class embedder's weights
    state = torch.load(ldm_spec["ckpt"], weights_only=False)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("cond_stage_model.")}
    torch.save(state, tmp_path / "partial.ckpt")
    with pytest.raises(UserError, match="lacks 1 weights .*cond_stage_model.embedding.weight") as err:
        make_model({**ldm_spec, "ckpt": str(tmp_path / "partial.ckpt")}).load()
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="source: nothing at"):
        make_model({**ldm_spec, "source": str(tmp_path / "none")}).load()
    with pytest.raises(UserError, match="ckpt must be the path"):
        make_model({"name": "compvis-ldm", "config": "c.yaml", "source": "s"})
    assert set(make_model(ldm_spec).required_paths()) == {"ckpt", "config", "source"}
