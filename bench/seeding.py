"""Deterministic seeding, after EDM's `generate.py`: every sample has its own integer seed.

The initial noise of sample i is drawn from a CPU generator seeded with that sample's seed alone, so
it does not depend on the batch size, the device, or which other samples are drawn with it. Seeds
are plain integers, disjoint between the splits ("eval" for scoring, "train" and "val" for fitting)
and between replication seeds of the grid; cache keys hold these plain values, never tensors.
"""
from __future__ import annotations

import hashlib
import json

import torch

SPLIT_OFFSETS = {"eval": 0, "train": 4_000_000, "val": 8_000_000}
SEED_STRIDE = 10_000_000
MAX_SPLIT_SIZE = 4_000_000


def sample_seeds(split: str, seed: int, n: int) -> list[int]:
    """The per-sample seeds of the first n priors of `split` for replication seed `seed`."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_OFFSETS)}")
    if not 0 <= n <= MAX_SPLIT_SIZE:
        raise ValueError(f"a split holds at most {MAX_SPLIT_SIZE} samples, asked for {n}")
    base = seed * SEED_STRIDE + SPLIT_OFFSETS[split]
    return list(range(base, base + n))


def noise_from_seeds(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """Unit-variance Gaussian noise [len(seeds), *shape], float32, on the CPU."""
    out = torch.empty((len(seeds),) + tuple(shape), dtype=torch.float32)
    generator = torch.Generator()
    for i, s in enumerate(seeds):
        generator.manual_seed(s)
        out[i] = torch.randn(shape, generator=generator)
    return out


def labels_for(split_index: range | list[int], num_classes: int) -> torch.Tensor | None:
    """Class labels that cycle through the classes, so every class gets an equal share."""
    if not num_classes:
        return None
    return torch.as_tensor([i % num_classes for i in split_index], dtype=torch.long)


def stable_hash(value, length: int = 16) -> str:
    """A short hash of a JSON-serialisable value made of plain values (never tensors)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def generator_for(*parts) -> torch.Generator:
    """A CPU generator seeded from plain values (e.g. the cell's hash and a purpose string)."""
    return torch.Generator().manual_seed(int(stable_hash(list(parts), 15), 16))
