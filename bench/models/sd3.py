"""`sd3`: a rectified-flow transformer (Stable Diffusion 3, Esser et al. 2024, "Scaling Rectified Flow
Transformers for High-Resolution Image Synthesis") saved by diffusers as a `StableDiffusion3Pipeline`
folder: `SD3Transformer2DModel` (transformer/), `AutoencoderKL` (vae/), the CLIP text encoders and
tokenizers (text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/), optionally T5 (text_encoder_3/,
tokenizer_3/; without it the pipeline uses zeros for the T5 tokens), and a
`FlowMatchEulerDiscreteScheduler` config (scheduler/).

Time. `FlowOT` in the unshifted time t with the scheduler config's resolution shift
(`bench.models._diffusers_time`: `shift`, or the dynamic shift of the latent's patch count); t range
[1/N, 1 - 1/N] by default (parameters `t_min`, `t_max`; t = 1 has alpha = 0 and an infinite log-SNR,
which the log-SNR solvers cannot start from). The transformer gets timestep = sigma(t) N, as the
pipeline passes it, and predicts the velocity eps - x0; x0_hat = x - sigma v (`_predictions`).

Latents and decoding as `diffusers-ldm`: `data_shape` is the latent shape (the transformer's
in_channels, sample_size); `decode(z)` = vae.decode(z / scaling_factor + shift_factor).sample.

Conditions are prompt indices, exactly as in `stable-diffusion` (parameter `prompts`: a text file, one
prompt per line; -1 = the empty prompt; no file = unconditional). Prompts are encoded once at load by
the pipeline's own `encode_prompt` (CLIP-L + CLIP-G (+ T5) sequence embeddings and pooled
embeddings); the text encoders are dropped afterwards. `guidance`: classifier-free guidance scale
through `bench.guidance` (SD3's default is 7.0).
"""
from __future__ import annotations

import inspect
from functools import cached_property

import torch
from pydantic import Field

from ..errors import UserError
from ..guidance import GuidanceParam, GuidanceParams, check_scale
from ..registry import MODELS
from ._diffusers_time import flow_schedule, flow_timestep
from ._hf import CONFIG, LatentImages, PromptConditioned, component_dir, freeze, local, offline_imports, path_param, read_json, \
    scheduler_config
from ._lazy import LazyDenoiser, batch_labels, batch_time
from ._predictions import x0_from_output
from .diffusers_unet import image_shape

ENCODE_BATCH = 16


def _check_time(model: str, field: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UserError(f"model {model!r}: {field} must be a number in (0, 1) or null (default), got {value!r}")
    return float(value)


def absent_components(pipeline_class, root) -> dict[str, None]:
    """{name: None} for the pipeline's optional components without a folder (T5, image encoder, ...), so
    that from_pretrained builds the pipeline without them instead of refusing."""
    names = set(inspect.signature(pipeline_class.__init__).parameters) - {"self"}
    return {name: None for name in sorted(names & set(pipeline_class._optional_components + ["text_encoder_3",
                                                                                               "tokenizer_3"]))
            if not (root / name).is_dir()}


@MODELS.register("sd3")
class SD3(GuidanceParam, PromptConditioned, LatentImages, LazyDenoiser):
    """A diffusers SD3 pipeline folder as a flow-matching data-prediction denoiser over latents."""

    class Params(GuidanceParams):
        path: str | None = Field(None, description="a StableDiffusion3Pipeline folder (required)")
        prompts: str | None = Field(None, description="a text file with one prompt per line (the classes)")
        t_min: float | None = Field(None, gt=0, lt=1, description="lowest time (default: the scheduler's)")
        t_max: float | None = Field(None, gt=0, lt=1, description="highest time (default: the scheduler's)")

    data_range = 2.0
    what = "a StableDiffusion3Pipeline folder (transformer/, vae/, text encoders, scheduler/)"

    def __init__(self, **params):
        super().__init__(**params)
        self.path = path_param(self.name, "path", self.params.path, self.what)
        self.init_prompts()
        check_scale(self.name, self.params.guidance)
        self.t_min = _check_time(self.name, "t_min", self.params.t_min)
        self.t_max = _check_time(self.name, "t_max", self.params.t_max)
        if self.t_min is not None and self.t_max is not None and not self.t_min < self.t_max:
            raise UserError(f"model {self.name!r}: t_min must be below t_max, got {self.t_min} and {self.t_max}")

    def required_paths(self) -> dict[str, str]:
        return {"path": self.path, **self.prompt_paths()}

    # ------------------------------------------------------------------ configs (read without loading)
    @cached_property
    def transformer_config(self) -> dict:
        folder = component_dir(self.name, "path", self.path, ("transformer",), "transformer")
        return read_json(self.name, "path", folder / CONFIG)

    @cached_property
    def vae_config(self) -> dict:
        return read_json(self.name, "path", component_dir(self.name, "path", self.path, ("vae",), "VAE") / CONFIG)

    @cached_property
    def scheduler_config(self) -> dict:
        return scheduler_config(self.name, "path", self.path)

    @cached_property
    def data_shape(self) -> tuple[int, int, int]:
        return image_shape(self.transformer_config, self.name)

    @cached_property
    def schedule(self):
        patch = int(self.transformer_config.get("patch_size", 2))
        _, h, w = self.data_shape
        return flow_schedule(self.scheduler_config, (h // patch) * (w // patch), self.t_min, self.t_max)

    # ------------------------------------------------------------------ networks
    def build(self, device) -> dict[str, torch.nn.Module]:
        self.check_guidance()
        self.schedule  # noqa: B018 -- read the configs (clear errors) before loading weights
        self.vae_config  # noqa: B018
        diffusers = offline_imports()
        try:
            pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(
                str(local(self.path)), local_files_only=True, **absent_components(diffusers.StableDiffusion3Pipeline,
                                                                                    local(self.path)))
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"model {self.name!r}: cannot load a StableDiffusion3Pipeline from {self.path} "
                            f"(from path): {first}") from None
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                freeze(component)
        pipe.to(device)
        texts = [""] + self.prompts  # row 0: the empty prompt (label -1)
        embeds, pooled = [], []
        with torch.no_grad():
            for i in range(0, len(texts), ENCODE_BATCH):
                e, _, p, _ = pipe.encode_prompt(prompt=texts[i : i + ENCODE_BATCH], prompt_2=None, prompt_3=None,
                                                device=device, num_images_per_prompt=1,
                                                do_classifier_free_guidance=False)
                embeds.append(e)
                pooled.append(p)
        self.register_buffer("prompt_embeds", torch.cat(embeds), persistent=False)
        self.register_buffer("pooled_embeds", torch.cat(pooled), persistent=False)
        return {"transformer": pipe.transformer, "vae": pipe.vae}

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        dtype = self.transformer.dtype
        labels = batch_labels(cond, x, self.num_classes, self.name) + 1
        timestep = flow_timestep(self.schedule, t, int(self.scheduler_config.get("num_train_timesteps", 1000)))
        velocity = self.transformer(hidden_states=x.to(dtype), timestep=timestep.to(dtype),
                                    encoder_hidden_states=self.prompt_embeds[labels].to(dtype),
                                    pooled_projections=self.pooled_embeds[labels].to(dtype)).sample
        return x0_from_output("velocity", velocity, x, self.schedule.alpha(t), self.schedule.sigma(t))

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        self.load(x.device)
        return self.guide(self.denoise, x, batch_time(t, x), cond)


__all__ = ["SD3"]
