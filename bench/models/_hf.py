"""Offline loading of Hugging Face `diffusers` / `transformers` folders for the diffusers adapters.

Everything is read from local folders written by `save_pretrained` (a model folder or a pipeline
folder with one subfolder per component, as diffusers' `DiffusionPipeline.save_pretrained` lays it
out). Nothing is downloaded: the hub's offline switches (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) are
forced on before diffusers / transformers are imported, and every `from_pretrained` gets
`local_files_only=True`. diffusers is imported lazily (it takes seconds), so registering the
adapters costs nothing.

A problem with a folder is a `UserError` naming the model parameter and the expected layout.
"""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import torch

from ..errors import UserError

CONFIG = "config.json"


def offline_imports():
    """Import diffusers with the hub forced offline; returns the module."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import diffusers
        import transformers
    except ImportError as err:
        raise UserError(f"the diffusers adapters need `diffusers`, `transformers` and `safetensors` "
                        f"(pip install -e .; {err})") from None
    # Loading bars for every checkpoint shard would interleave with the harness's own progress.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    return diffusers


def path_param(model: str, field: str, value, what: str, required: bool = True) -> str | None:
    """Validate a path parameter's value (not the file): a non-empty string, or None when optional."""
    if value is None and not required:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise UserError(f"model {model!r}: {field} must be the path of {what}, got {value!r}; "
                        f"set `{field}: <path>` in the grid's model entry")
    return str(value)


def local(path: str) -> Path:
    return Path(path).expanduser()


def component_dir(model: str, field: str, root: str, names: tuple[str, ...], what: str,
                  root_ok: bool = False) -> Path:
    """The folder of a pipeline component: the first of root/<name> holding a config.json, else
    (root_ok) root itself when it holds a config.json; else a UserError describing the layout."""
    base = local(root)
    if not base.is_dir():
        raise UserError(f"model {model!r}: {field} = {root} is not a folder; point it to a diffusers folder "
                        f"written by save_pretrained")
    for name in names:
        if (base / name / CONFIG).is_file():
            return base / name
    if root_ok and (base / CONFIG).is_file():
        return base
    where = " or ".join(f"{root}/{n}/{CONFIG}" for n in names) + (f" or {root}/{CONFIG}" if root_ok else "")
    raise UserError(f"model {model!r}: {field} = {root} has no {what} ({where} is missing); "
                    f"save the component there with save_pretrained")


def subfolder(model: str, field: str, root: str, name: str, what: str) -> Path:
    """root/<name>, which must be a folder (for components without a config.json, e.g. tokenizers)."""
    folder = local(root) / name
    if not folder.is_dir():
        raise UserError(f"model {model!r}: {field} = {root} has no {what} ({folder} is missing); "
                        f"save it there with save_pretrained")
    return folder


def read_json(model: str, field: str, path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"model {model!r}: cannot read {path} (from {field}): {err}") from None


def scheduler_config(model: str, field: str, root: str, component: Path | None = None) -> dict:
    """The scheduler config of a pipeline folder (root/scheduler/) or a model folder
    (<component>/scheduler_config.json, root/scheduler_config.json)."""
    base = local(root)
    candidates = [base / "scheduler" / "scheduler_config.json", base / "scheduler_config.json"]
    if component is not None:
        candidates.insert(1, component / "scheduler_config.json")
    for path in candidates:
        if path.is_file():
            return read_json(model, field, path)
    raise UserError(f"model {model!r}: {field} = {root} has no scheduler config "
                    f"({root}/scheduler/scheduler_config.json is missing); save the training scheduler there "
                    f"with scheduler.save_pretrained")


def read_prompts(model: str, field: str, path: str) -> list[str]:
    """Prompts from a text file, one per line; blank lines are skipped."""
    file = local(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"model {model!r}: {field} = {path} cannot be read ({err.strerror}); "
                        f"give a text file with one prompt per line") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UserError(f"model {model!r}: {field} = {path} holds no prompt; write one prompt per line")
    return prompts


class LatentImages:
    """Mixin of the latent adapters (`diffusers-ldm`, `sd3`): decode latents with the autoencoder
    (`self.vae`, its config `self.vae_config`) as diffusers' pipelines do,
    vae.decode(z / scaling_factor + shift_factor), and the decoded image shape."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(out_channels, H, W): each of the autoencoder's len(block_out_channels) levels but the
        last upsamples by 2."""
        factor = 2 ** (len(self.vae_config.get("block_out_channels") or [0]) - 1)
        _, h, w = self.data_shape
        return int(self.vae_config.get("out_channels", 3)), h * factor, w * factor

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> images [B, C', H, W] in [-1, 1], in x's dtype."""
        self.load(x.device)
        scale = float(self.vae_config.get("scaling_factor") or 1.0)
        shift = float(self.vae_config.get("shift_factor") or 0.0)
        return self.vae.decode((x / scale + shift).to(self.vae.dtype)).sample.to(x.dtype)


class PromptConditioned:
    """Mixin of the text-conditioned adapters (`stable-diffusion`, `sd3`): a `prompts` text file
    parameter (optional), the prompts as the classes (condition = prompt index, -1 = the empty
    prompt), and the file in `required_paths`. Call `init_prompts()` in `__init__`."""

    def init_prompts(self) -> None:
        self.prompts_path = path_param(self.name, "prompts", self.params.prompts,
                                       "a text file with one prompt per line", required=False)

    def prompt_paths(self) -> dict[str, str]:
        return {} if self.prompts_path is None else {"prompts": self.prompts_path}

    @cached_property
    def prompts(self) -> list[str]:
        return [] if self.prompts_path is None else read_prompts(self.name, "prompts", self.prompts_path)

    @cached_property
    def num_classes(self) -> int:
        return len(self.prompts)


def load_frozen(model: str, field: str, cls, folder: Path, **kwargs) -> torch.nn.Module:
    """cls.from_pretrained(folder) from local files only, in eval mode with frozen parameters."""
    try:
        module = cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, EnvironmentError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model {model!r}: cannot load {cls.__name__} from {folder} (from {field}): {first}") from None
    return freeze(module)


def load_tokenizer(model: str, field: str, cls, folder: Path):
    """A tokenizer from local files only."""
    try:
        return cls.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model {model!r}: cannot load {cls.__name__} from {folder} (from {field}): {first}") from None


def freeze(module):
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


__all__ = ["component_dir", "freeze", "load_frozen", "load_tokenizer", "local", "subfolder", "offline_imports", "path_param", "read_json",
           "read_prompts", "scheduler_config"]
