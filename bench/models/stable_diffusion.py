"""`stable-diffusion`: text-to-image latent diffusion (Rombach et al. 2022) saved by diffusers as a
`StableDiffusionPipeline` folder: `UNet2DConditionModel` (unet/), `AutoencoderKL` (vae/),
`CLIPTextModel` (text_encoder/) + `CLIPTokenizer` (tokenizer/), and the training scheduler (scheduler/).

Everything about time, prediction types and decoding is `diffusers-ldm`'s (the parent class): SD 1.x
is eps-prediction with scaled-linear betas (`VPScaledLinear`), SD 2.x-v is v-prediction.

Conditions are prompt indices. Parameter `prompts`: a text file, one prompt per line (blank lines
skipped); `num_classes` is the number of prompts, so the harness's labels cycle through them; the
label -1 is the unconditional (empty) prompt, as `StableDiffusionPipeline` uses for classifier-free
guidance. Without `prompts` the model is unconditional (every row gets the empty prompt). The
prompts and the empty prompt are encoded once when the networks load, as the pipeline's
`encode_prompt` does (tokens padded to the tokenizer's model_max_length, the text encoder's last
hidden state), and the text encoder is dropped afterwards.

Parameter `guidance` (null or a scale >= 0): classifier-free guidance through `bench.guidance`
(x0_u + scale (x0_c - x0_u), two network evaluations per call); the papers use 7.5 for SD 1.5.
"""
from __future__ import annotations

import torch
from pydantic import Field

from ..errors import UserError
from ..guidance import GuidanceParam, GuidanceParams, check_scale
from ..registry import MODELS
from ._hf import PromptConditioned, component_dir, load_frozen, load_tokenizer, subfolder
from ._lazy import batch_labels, batch_time
from .diffusers_ldm import DiffusersLDM

ENCODE_BATCH = 32


@MODELS.register("stable-diffusion")
class StableDiffusion(GuidanceParam, PromptConditioned, DiffusersLDM):
    """Stable Diffusion (diffusers folder) with prompt-index conditions and optional guidance."""

    class Params(GuidanceParams):
        path: str | None = Field(None, description="a StableDiffusionPipeline folder (required)")
        prompts: str | None = Field(None, description="a text file with one prompt per line (the classes)")

    unet_class = "UNet2DConditionModel"
    what = "a StableDiffusionPipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)"

    def __init__(self, **params):
        super().__init__(**params)
        self.init_prompts()
        check_scale(self.name, self.params.guidance)

    def required_paths(self) -> dict[str, str]:
        return {**super().required_paths(), **self.prompt_paths()}

    def build(self, device) -> dict[str, torch.nn.Module]:
        self.check_guidance()
        if self.unet_config.get("addition_embed_type"):  # SDXL-style extra conditioning (pooled text, sizes)
            raise UserError(f"model {self.name!r}: {self.path} holds a UNet with addition_embed_type "
                            f"{self.unet_config['addition_embed_type']!r} (SDXL); only SD 1.x / 2.x are supported")
        modules = super().build(device)
        import transformers

        tokenizer_dir = subfolder(self.name, "path", self.path, "tokenizer", "CLIP tokenizer")
        encoder_dir = component_dir(self.name, "path", self.path, ("text_encoder",), "text encoder")
        tokenizer = load_tokenizer(self.name, "path", transformers.CLIPTokenizer, tokenizer_dir)
        encoder = load_frozen(self.name, "path", transformers.CLIPTextModel, encoder_dir).to(device)
        # Row 0 is the empty prompt (label -1), row i + 1 prompt i.
        texts = [""] + self.prompts
        with torch.no_grad():
            table = torch.cat([encode(tokenizer, encoder, texts[i : i + ENCODE_BATCH], device)
                               for i in range(0, len(texts), ENCODE_BATCH)])
        self.register_buffer("prompt_embeds", table, persistent=False)
        return modules

    def network(self, x: torch.Tensor, timestep: torch.Tensor, cond) -> torch.Tensor:
        labels = batch_labels(cond, x, self.num_classes, self.name)
        context = self.prompt_embeds[labels + 1].to(x.dtype)
        return self.unet(x, timestep, encoder_hidden_states=context).sample

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        self.load(x.device)
        return self.guide(self.denoise, x, batch_time(t, x), cond)


def encode(tokenizer, encoder, texts: list[str], device) -> torch.Tensor:
    """The text encoder's last hidden states [len(texts), L, D] for max-length-padded tokens."""
    tokens = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    # As the pipeline: the mask only for encoders configured to use one (SD 1.x / 2.x are not).
    mask = tokens.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
    return encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


__all__ = ["StableDiffusion", "encode"]
