"""Training of the `digits-net` denoiser (EDM's recipe, Karras et al. 2022, scaled down to a CPU).

Data: the 1797 scikit-learn 8x8 digits, scaled exactly as the `digits` model scales them
(`bench.models.digits.load_data`: x / 8 - 1, values in [-1, 1]) with their labels; sigma_data is the
standard deviation of these pixels (EDM's sigma_data is the data's std; 0.5 is its CIFAR-10 value).

Recipe (each default, and where it comes from):
  * loss: `edm_loss` (log-normal sigma, P_mean = -1.2, P_std = 1.2, EDM's weight; EDM Table 1).
  * label dropout `p_uncond` = 0.1: each label is replaced by "no label" (-1) with this probability so
    the same network is also the unconditional model classifier-free guidance needs (Ho & Salimans
    2022 train with p_uncond in {0.1, 0.2}).
  * optimiser: Adam (EDM: Adam, betas (0.9, 0.999), eps 1e-8), `lr` = 2e-3 (EDM uses 1e-3 at batch 512
    for CIFAR-10; a shorter run on a smaller net takes a larger step), linearly ramped up over the
    first `warmup` = 100 steps (EDM ramps its rate up over 10 Mimg, which is longer than this whole
    run), then cosine-decayed to 0 at the last step (so the last weights do not depend on where a
    constant-rate run happens to stop).
  * `batch` = 128, `steps` = 2000: about 140 epochs; sized so that one run fits a CPU
    session (scripts/train_digits_net.py prints its wall time). `threads` = 1: the network's ops are small (8x8 images), so a second OpenMP
    thread adds synchronisation rather than speed (and spins when the machine is busy); one thread
    also makes the float round-off, and so the weights, independent of the machine's core count.
  * network (`NET_CONFIG`): `bench.models._digits_unet`'s layout at `channels` = 16, `blocks` = 1,
    embedding width 64, GroupNorm with 4 groups (4 channels each), `dropout` = 0 (EDM uses 0.13 on
    CIFAR-10 to curb over-fitting in long runs; a run of ~100 epochs under-fits rather than over-fits).
  * EMA of the weights with EDM's schedule: half-life min(500 kimg, 0.05 x images seen so far)
    (`ema_halflife_kimg` = 500, `ema_rampup_ratio` = 0.05, EDM's training_loop.py), beta =
    0.5 ^ (batch / half-life) per step. The EMA weights are the ones shipped.
  * `seed` = 0: network initialisation, batch order, sigmas, noise and label dropout all come from
    generators seeded from it; `torch.use_deterministic_algorithms(True)` and a fixed thread count
    make a rerun on the same machine and torch build produce the same weights.
"""
from __future__ import annotations

import copy
import math
import time

import torch

from .digits import load_data
from ._digits_unet import DEFAULT_CONFIG, EDMDigitsNet, edm_loss

TRAIN_CONFIG = {"steps": 2000, "batch": 128, "lr": 2e-3, "warmup": 100, "p_uncond": 0.1,
                "ema_halflife_kimg": 500.0, "ema_rampup_ratio": 0.05, "seed": 0, "threads": 1}
NET_CONFIG = {**DEFAULT_CONFIG, "channels": 16, "blocks": 1, "emb": 64, "groups": 4, "dropout": 0.0}


def data_tensors() -> tuple[torch.Tensor, torch.Tensor, float]:
    """(images [1797, 1, 8, 8] float32 in [-1, 1], labels [1797], sigma_data = the pixels' std)."""
    images, labels = load_data()
    return images.to(torch.float32).reshape(-1, 1, 8, 8), labels, float(images.std())


def learning_rate(step: int, cfg: dict) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `steps`."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(train_config: dict | None = None, net_config: dict | None = None, log=None, log_every: int = 100):
    """Train from scratch; returns (ema network in eval mode, net config, [(step, mean loss of the last
    `log_every` steps)]). `log(msg)` receives progress lines."""
    cfg = {**TRAIN_CONFIG, **(train_config or {})}
    images, labels, sigma_data = data_tensors()
    net_cfg = {**NET_CONFIG, **(net_config or {}), "sigma_data": sigma_data}
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg["threads"])
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])  # initialisation and dropout masks
            net = EDMDigitsNet(net_cfg)
            ema = copy.deepcopy(net).eval().requires_grad_(False)
            opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8)
            order_gen = torch.Generator().manual_seed(cfg["seed"] + 1)
            noise_gen = torch.Generator().manual_seed(cfg["seed"] + 2)
            n, batch = images.shape[0], cfg["batch"]
            order, pos = torch.randperm(n, generator=order_gen), 0
            history, window, start = [], [], time.perf_counter()
            net.train()
            for step in range(cfg["steps"]):
                if pos + batch > n:
                    order, pos = torch.randperm(n, generator=order_gen), 0
                idx = order[pos : pos + batch]
                pos += batch
                y = labels[idx].clone()
                drop = torch.rand(batch, generator=noise_gen) < cfg["p_uncond"]
                y[drop] = -1
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, cfg)
                loss = edm_loss(net, images[idx], y, noise_gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seen = (step + 1) * batch
                halflife = min(cfg["ema_halflife_kimg"] * 1000, seen * cfg["ema_rampup_ratio"])
                beta = 0.5 ** (batch / max(halflife, 1e-8))
                with torch.no_grad():
                    for p_ema, p in zip(ema.parameters(), net.parameters()):
                        p_ema.lerp_(p.detach(), 1.0 - beta)
                window.append(loss.item())
                if (step + 1) % log_every == 0 or step + 1 == cfg["steps"]:
                    history.append((step + 1, sum(window) / len(window)))
                    window = []
                    if log is not None:
                        elapsed = time.perf_counter() - start
                        eta = elapsed / (step + 1) * (cfg["steps"] - step - 1)
                        log(f"step {step + 1}/{cfg['steps']}  loss {history[-1][1]:.4f}  "
                            f"{elapsed:.0f}s elapsed, ETA {eta:.0f}s")
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return ema, net_cfg, history


__all__ = ["NET_CONFIG", "TRAIN_CONFIG", "data_tensors", "learning_rate", "train"]
