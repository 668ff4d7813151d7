"""`compvis-ldm`: a latent diffusion checkpoint of CompVis' own code (Rombach, Blattmann, Lorenz, Esser,
Ommer 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"; github.com/CompVis/
latent-diffusion), loaded with that code as its README and `scripts/latent_imagenet_diffusion.ipynb`
do, e.g. the class-conditional ImageNet model `cin256-v2` (LD3's Table 22) or the LSUN-Bedroom LDM.
This is the route the LD3 and GITS code bases take for these models; diffusers has no pipeline for
the class-conditional one (its UNet is conditioned by cross-attention on a learned class embedding).

Parameters (nothing is downloaded; `required_paths` names all three for the pre-run check):
  * `ckpt`: the checkpoint (`model.ckpt`, a Lightning file whose "state_dict" holds the UNet, the
    first stage autoencoder and the class embedder);
  * `config`: its config YAML (e.g. latent-diffusion's configs/latent-diffusion/cin256-v2.yaml);
  * `source`: a local latent-diffusion source tree (the folder holding `ldm/`). It goes on `sys.path`
    (at the front) and its `ldm.util.instantiate_from_config(config.model)` builds the model, so the
    tree's own requirements (pytorch-lightning, omegaconf, einops, taming-transformers for the VQ
    first stage) must be importable. Python caches modules by name: every `compvis-ldm` model of one
    process uses the first tree it loaded.
  * `guidance`: classifier-free guidance scale (`bench.guidance`; LDM's `unconditional_guidance_scale`
    has the same convention, eps_u + s (eps_c - eps_u)); LD3 uses 2.0 for cin256-v2.

Loading is lazy (`bench.models._lazy`): the config is read for the schedule, shape and classes; the
network is built and the state dict loaded (`strict=False`, as the notebook does, but a missing UNet,
first-stage or conditioning weight is a `UserError`) on first use. A `ckpt_path` in the config is
dropped so that building loads no other file.

Time. The config's `linear_start`, `linear_end`, `timesteps` N and `beta_schedule` ("linear", LDM's
default: betas = linspace(sqrt(linear_start), sqrt(linear_end), N)^2, `ldm.modules.diffusionmodules.
util.make_beta_schedule`, which is diffusers' "scaled_linear" -> `VPScaledLinear`) give the discrete
VP schedule in DPM-Solver's continuous time t in [1/N, 1]; the network gets the fractional step
n = t N - 1 (`bench.models._diffusers_time.vp_timestep`), as DPM-Solver's discrete model wrapper.
The output is read by the config's `parameterization` ("eps", LDM's default, or "x0").

Data: `data_shape` = (channels, image_size, image_size) of the config (the latent); `decode(z)` =
`first_stage_model.decode(z / scale_factor)`, images in [-1, 1]: what the model's own
`decode_first_stage(z)` computes for these models (the VQ interface quantizes first), but with
gradients (decode_first_stage runs under no_grad, and an LPIPS loss of a learned method on a latent
model backpropagates through the decoder, `bench.methods._learned.loss_for_model`); `image_shape` =
(out_ch, resolution, resolution) of the first stage's ddconfig.

Conditions. A model whose `cond_stage_config` is `ldm.modules.encoders.modules.ClassEmbedder` with
n_classes = K + 1 is class-conditional with K classes; class K is its "unconditional" class (cin256-v2:
1001 embeddings, class 1000 is what the notebook passes as the unconditional condition), which the
harness's label -1 maps to. The condition is `model.get_learned_conditioning({cond_stage_key: labels})`.
A config with `cond_stage_config: __is_unconditional__` is unconditional. Other conditionings (text,
layouts) are refused with a `UserError`.
"""
from __future__ import annotations

import copy
import os
import sys
from functools import cached_property

import torch
from pydantic import Field

from ..errors import UserError
from ..guidance import GuidanceParam, GuidanceParams
from ..registry import MODELS
from ..schedules import VPScaledLinear
from ._diffusers_time import vp_timestep
from ._lazy import LazyDenoiser, batch_labels, batch_time
from ._predictions import x0_from_output

LATENT_DIFFUSION = "ldm.models.diffusion.ddpm.LatentDiffusion"
CLASS_EMBEDDER = "ldm.modules.encoders.modules.ClassEmbedder"
UNCONDITIONAL = "__is_unconditional__"
PARAMETERIZATIONS = {"eps": "epsilon", "x0": "sample"}
WEIGHTS = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
SOURCE_HINT = "clone github.com/CompVis/latent-diffusion and point `source` at it (the folder holding ldm/)"


def _path(field: str, value, what: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise UserError(f"model 'compvis-ldm': {field} must be the path of {what}, got {value!r}")
    return os.fspath(value)


@MODELS.register("compvis-ldm")
class CompVisLDM(GuidanceParam, LazyDenoiser):
    """A CompVis latent-diffusion checkpoint (see the module docstring)."""

    class Params(GuidanceParams):
        ckpt: str | None = Field(None, description="the checkpoint, e.g. model.ckpt (required)")
        config: str | None = Field(None, description="its config YAML, e.g. cin256-v2.yaml (required)")
        source: str | None = Field(None, description="a local latent-diffusion source tree (required)")

    data_range = 2.0

    def __init__(self, **params):
        super().__init__(**params)
        self.ckpt = _path("ckpt", self.params.ckpt, "the checkpoint file (model.ckpt)")
        self.config_path = _path("config", self.params.config, "the checkpoint's config YAML")
        self.source = _path("source", self.params.source, "a latent-diffusion source tree")
        _ = self.guidance  # validates the scale

    def required_paths(self) -> dict[str, str]:
        return {"ckpt": self.ckpt, "config": self.config_path, "source": self.source}

    # ------------------------------------------------------------------ the config (read without loading)
    @cached_property
    def config(self) -> dict:
        """The config's `model` mapping (plain dicts and lists)."""
        import yaml

        try:
            with open(self.config_path) as f:
                raw = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as err:
            raise UserError(f"model 'compvis-ldm': cannot read config {self.config_path}: {err}") from None
        model = raw.get("model") if isinstance(raw, dict) else None
        if not isinstance(model, dict) or model.get("target") != LATENT_DIFFUSION:
            raise UserError(f"model 'compvis-ldm': config {self.config_path} does not describe a {LATENT_DIFFUSION} "
                            f"(model.target); give the checkpoint's latent-diffusion config")
        return model

    @property
    def _p(self) -> dict:
        return self.config.get("params") or {}

    @cached_property
    def schedule(self) -> VPScaledLinear:
        p = self._p
        kind = p.get("beta_schedule", "linear")
        if kind != "linear" or p.get("given_betas") is not None:
            raise UserError(f"model 'compvis-ldm': beta_schedule {kind!r} is not supported (LDM's 'linear' only)")
        return VPScaledLinear(float(p.get("linear_start", 1e-4)), float(p.get("linear_end", 2e-2)),
                              int(p.get("timesteps", 1000)))

    @cached_property
    def prediction_type(self) -> str:
        kind = self._p.get("parameterization", "eps")
        if kind not in PARAMETERIZATIONS:
            raise UserError(f"model 'compvis-ldm': parameterization {kind!r} is not supported; supported: eps, x0")
        return PARAMETERIZATIONS[kind]

    @cached_property
    def data_shape(self) -> tuple[int, int, int]:
        p = self._p
        return (int(p.get("channels", 3)), int(p["image_size"]), int(p["image_size"]))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        dd = ((self._p.get("first_stage_config") or {}).get("params") or {}).get("ddconfig") or {}
        if "resolution" not in dd:
            raise UserError(f"model 'compvis-ldm': config {self.config_path} has no first_stage_config.params."
                            "ddconfig.resolution")
        return (int(dd.get("out_ch", 3)), int(dd["resolution"]), int(dd["resolution"]))

    @cached_property
    def num_classes(self) -> int:
        cond = self._p.get("cond_stage_config", UNCONDITIONAL)
        if cond == UNCONDITIONAL:
            return 0
        if not isinstance(cond, dict) or cond.get("target") != CLASS_EMBEDDER:
            target = cond.get("target") if isinstance(cond, dict) else cond
            raise UserError(f"model 'compvis-ldm': conditioning {target!r} is not supported (class labels through "
                            f"{CLASS_EMBEDDER}, or {UNCONDITIONAL})")
        return int((cond.get("params") or {}).get("n_classes", 1000)) - 1

    # ------------------------------------------------------------------ loading
    def build(self, device) -> dict[str, torch.nn.Module]:
        self.check_guidance()
        for field, path, ok in (("ckpt", self.ckpt, os.path.isfile), ("source", self.source, os.path.isdir)):
            if not ok(path):
                raise UserError(f"model 'compvis-ldm': {field}: nothing at {path}"
                                + (f"; {SOURCE_HINT}" if field == "source" else ""))
        source = os.path.abspath(self.source)
        if source not in sys.path:
            sys.path.insert(0, source)
        config = copy.deepcopy(self.config)
        config.setdefault("params", {}).pop("ckpt_path", None)
        (config["params"].get("first_stage_config") or {}).get("params", {}).pop("ckpt_path", None)
        try:
            from ldm.util import instantiate_from_config
        except ImportError as err:
            raise UserError(f"model 'compvis-ldm': cannot import the latent-diffusion code from {source} ({err}); "
                            f"{SOURCE_HINT}, with its requirements installed") from None
        try:
            from omegaconf import OmegaConf  # the tree's own configs are OmegaConf objects
        except ImportError:
            OmegaConf = None
        model = instantiate_from_config(OmegaConf.create(config) if OmegaConf is not None else config)
        try:
            state = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as err:
            raise UserError(f"model 'compvis-ldm': cannot read ckpt {self.ckpt}: {err}") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        missing, _ = model.load_state_dict(state, strict=False)
        lost = [k for k in missing if k.startswith(WEIGHTS)]
        if lost:
            raise UserError(f"model 'compvis-ldm': {self.ckpt} lacks {len(lost)} weights of the model its config "
                            f"builds (e.g. {lost[0]}); are ckpt and config the same model's?")
        model.eval().requires_grad_(False)
        return {"ldm": model}

    # ------------------------------------------------------------------ the denoiser
    def _context(self, cond, x: torch.Tensor):
        if not self.num_classes:
            if cond is not None and bool((torch.as_tensor(cond) >= 0).any()):
                raise ValueError("compvis-ldm: this model is unconditional; cond must be None (or -1)")
            return None
        labels = batch_labels(cond, x, self.num_classes, "compvis-ldm")
        labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)  # -1: the null class
        return self.ldm.get_learned_conditioning({self.ldm.cond_stage_key: labels})

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        dtype = next(self.ldm.parameters()).dtype
        out = self.ldm.apply_model(x.to(dtype), vp_timestep(self.schedule, t).to(dtype), self._context(cond, x))
        return x0_from_output(self.prediction_type, out.to(x.dtype), x, self.schedule.alpha(t), self.schedule.sigma(t))

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        self.load(x.device)
        return self.guide(self.denoise, x, batch_time(t, x), cond)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> images [B, C', H, W] in [-1, 1]: decode_first_stage's arithmetic,
        differentiably (see the module docstring)."""
        self.load(x.device)
        dtype = next(self.ldm.parameters()).dtype
        return self.ldm.first_stage_model.decode(x.to(dtype) / float(self.ldm.scale_factor)).to(x.dtype)


__all__ = ["CompVisLDM"]
