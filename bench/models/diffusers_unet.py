"""`diffusers-unet`: a pixel-space DDPM UNet saved by Hugging Face diffusers (`UNet2DModel`).

Follows diffusers' DDPM pipeline (`DDPMPipeline`: `UNet2DModel` + a DDPM-family scheduler) for the
network and its training schedule, and DPM-Solver (Lu et al. 2022) for turning the discrete-time
model into a continuous-time one.

Parameter `path`: a pipeline folder (`unet/` and `scheduler/`, as `DDPMPipeline.save_pretrained`
writes it) or a UNet folder (`config.json` + weights) with `scheduler_config.json` beside them or in
a `scheduler/` subfolder. Loaded with `from_pretrained(..., local_files_only=True)`, the hub offline
(`bench.models._hf`), on first use (`bench.models._lazy`).

Time. The scheduler config's betas (`linear`, `scaled_linear`, `squaredcos_cap_v2` or `trained_betas`,
`num_train_timesteps` N) give a `DiscreteVP` schedule with t in [1/N, 1]; the network is called at
the fractional step n = t N - 1 (`bench.models._diffusers_time`). The output is read by the config's
`prediction_type` ("epsilon", "v_prediction" or "sample") and converted to x0_hat
(`bench.models._predictions`); a UNet with learned variances (out_channels = 2 x in_channels) keeps
its first half. The network runs in its own dtype (float32), the conversion in the dtype of x.

Data: `data_shape` = (in_channels, sample_size, sample_size) of the UNet config, values in [-1, 1]
(diffusers' convention). A class-conditional UNet (`num_class_embeds`) takes cond = class labels.
"""
from __future__ import annotations

from functools import cached_property

import torch
from pydantic import Field

from ..errors import UserError
from ..params import Params
from ..registry import MODELS
from ._diffusers_time import vp_schedule, vp_timestep
from ._hf import CONFIG, component_dir, load_frozen, offline_imports, path_param, read_json, scheduler_config
from ._lazy import LazyDenoiser
from ._predictions import x0_from_output

VP_PREDICTIONS = ("epsilon", "v_prediction", "sample")


def image_shape(config: dict, model: str) -> tuple[int, int, int]:
    """(in_channels, H, W) from a diffusers model config's in_channels and sample_size."""
    size = config.get("sample_size")
    if isinstance(size, int):
        size = (size, size)
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and isinstance(config.get("in_channels"), int)):
        raise UserError(f"model {model!r}: the network config has no usable in_channels / sample_size "
                        f"({config.get('in_channels')!r}, {config.get('sample_size')!r})")
    return (config["in_channels"], int(size[0]), int(size[1]))


@MODELS.register("diffusers-unet")
class DiffusersUNet(LazyDenoiser):
    """A diffusers pixel UNet with its DDPM schedule, as a data-prediction denoiser."""

    class Params(Params):
        path: str | None = Field(None, description="a diffusers folder with unet/ and scheduler/ (required)")

    data_range = 2.0
    unet_class = "UNet2DModel"
    unet_root_ok = True  # a bare UNet folder is accepted, not only a pipeline folder
    what = "a diffusers folder with unet/ and scheduler/ (save_pretrained)"

    def __init__(self, **params):
        super().__init__(**params)
        self.path = path_param(self.name, "path", self.params.path, self.what)

    def required_paths(self) -> dict[str, str]:
        return {"path": self.path}

    # ------------------------------------------------------------------ configs (read without loading)
    @cached_property
    def unet_dir(self):
        return component_dir(self.name, "path", self.path, ("unet",), "UNet", root_ok=self.unet_root_ok)

    @cached_property
    def unet_config(self) -> dict:
        return read_json(self.name, "path", self.unet_dir / CONFIG)

    @cached_property
    def scheduler_config(self) -> dict:
        return scheduler_config(self.name, "path", self.path, self.unet_dir)

    @cached_property
    def schedule(self):
        return vp_schedule(self.scheduler_config, self.name)

    @cached_property
    def prediction_type(self) -> str:
        kind = self.scheduler_config.get("prediction_type", "epsilon")
        if kind not in VP_PREDICTIONS:
            raise UserError(f"model {self.name!r}: scheduler prediction_type {kind!r} is not supported; "
                            f"supported: {', '.join(VP_PREDICTIONS)}")
        return kind

    @cached_property
    def data_shape(self) -> tuple[int, int, int]:
        return image_shape(self.unet_config, self.name)

    @cached_property
    def num_classes(self) -> int:
        return int(self.unet_config.get("num_class_embeds") or 0)

    # ------------------------------------------------------------------ networks
    def build(self, device) -> dict[str, torch.nn.Module]:
        diffusers = offline_imports()
        self.prediction_type  # noqa: B018 -- refuse an unsupported config before loading weights
        return {"unet": load_frozen(self.name, "path", getattr(diffusers, self.unet_class), self.unet_dir)}

    def network(self, x: torch.Tensor, timestep: torch.Tensor, cond) -> torch.Tensor:
        labels = None
        if self.num_classes:
            if cond is None or bool((torch.as_tensor(cond) < 0).any()):
                raise ValueError(f"{self.name}: this class-conditional UNet needs labels 0..{self.num_classes - 1}")
            labels = torch.as_tensor(cond, device=x.device).long()
        return self.unet(x, timestep, class_labels=labels).sample

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        dtype = self.unet.dtype
        out = self.network(x.to(dtype), vp_timestep(self.schedule, t).to(dtype), cond)
        out = out[:, : x.shape[1]]  # learned-variance UNets append their variance channels
        return x0_from_output(self.prediction_type, out, x, self.schedule.alpha(t), self.schedule.sigma(t))


__all__ = ["DiffusersUNet", "image_shape"]
