"""Peak memory of an LD3 fit on a small UNet at NFE 4 and 10, with gradient checkpointing on and off.

What it measures. A tiny UNet denoiser (defined here: two resolutions, skip connections, GroupNorm +
SiLU, EDM's VE preconditioning; ~0.3M parameters) on 3x32x32 images; an LD3 fit (`bench.methods.ld3`,
iPNDM, batch 8, two iterations, l2 loss) whose teacher targets are random (memory does not depend on
them). Each configuration runs in a fresh subprocess, and its cost is the growth of the process's
peak resident set (`resource.getrusage(...).ru_maxrss`) during the fit, over the resident set just
before it (model, data and torch already loaded, one warm-up evaluation done). On CUDA
(`--device cuda`) it reports `torch.cuda.max_memory_allocated` instead.

The bar it prints: with checkpointing on, the peak grows by less than 20% from NFE 4 to NFE 10.

    python benchmarks/bench_checkpoint_memory.py [--batch 8] [--channels 64] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch
from torch import nn

from bench import api
from bench.schedules import VE
from bench.solvers import make_solver
from bench.teacher import TeacherSet


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(8 if cin % 8 == 0 else 1, cin), nn.SiLU(),
                                 nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.net(x)


class TinyUNet(nn.Module):
    """A two-level UNet on [B, 3, 32, 32] with the noise level as an extra input channel."""

    schedule = VE()
    data_shape = (3, 32, 32)
    num_classes = 0

    def __init__(self, channels: int = 64):
        super().__init__()
        c = channels
        self.inp = nn.Conv2d(4, c, 3, padding=1)
        self.down1, self.down2 = Block(c, c), Block(c, 2 * c)
        self.mid = Block(2 * c, 2 * c)
        self.up2, self.up1 = Block(4 * c, c), Block(2 * c, c)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x, t, cond=None):
        s = t.reshape(-1, 1, 1, 1).to(x.dtype)
        c_in, sd2 = 1 / (s * s + 0.25).sqrt(), 0.25
        h = self.inp(torch.cat([x * c_in, (s.log() / 4).expand(-1, 1, *x.shape[2:])], dim=1))
        d1 = self.down1(h)
        d2 = self.down2(nn.functional.avg_pool2d(d1, 2))
        m = self.mid(d2)
        u2 = self.up2(torch.cat([m, d2], dim=1))
        u1 = self.up1(torch.cat([nn.functional.interpolate(u2, scale_factor=2.0), d1], dim=1))
        return sd2 / (s * s + sd2) * x + s * 0.5 * c_in * self.out(u1)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(nfe: int, checkpointing: bool, batch: int, channels: int, device: str) -> dict:
    torch.manual_seed(0)
    device = torch.device(device)
    net = TinyUNet(channels).to(device).eval().requires_grad_(False)
    solver = make_solver("ipndm")
    gen = torch.Generator().manual_seed(1)
    sets = {split: TeacherSet(list(range(batch)), (80 * torch.randn(batch, 3, 32, 32, generator=gen)).to(device),
                              None, torch.randn(batch, 3, 32, 32, generator=gen).to(device))
            for split in ("train", "val")}
    with torch.no_grad():
        net(sets["val"].x_T, torch.full((batch,), 80.0, device=device))
    method = api.bind({"name": "ld3", "grad_checkpointing": checkpointing, "train": batch, "val": batch, "batch": batch,
                       "rounds1": 1, "rounds2": 1, "loss": "l2", "init": "edm"}, net, solver, nfe)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = rss_mb()
    api.fit(method, teacher=lambda split, n: sets[split], device=device)
    after = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb())
    return {"nfe": nfe, "checkpointing": checkpointing, "fit_peak_mb": after - before,
            "kind": "cuda-allocated" if device.type == "cuda" else "rss"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nfe", type=int, nargs=2, default=[4, 10])
    parser.add_argument("--one", nargs=2, metavar=("NFE", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1] == "1", args.batch, args.channels, args.device)))
        return
    results = {}
    for ckpt in (False, True):
        for nfe in args.nfe:
            cmd = [sys.executable, __file__, "--one", str(nfe), str(int(ckpt)), "--batch", str(args.batch),
                   "--channels", str(args.channels), "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            results[(ckpt, nfe)] = json.loads(out)["fit_peak_mb"]
    lo, hi = args.nfe
    print(f"peak memory of an LD3 fit (growth over the resident set before the fit, MiB), "
          f"batch {args.batch}, UNet width {args.channels}, {args.device}:")
    print(f"{'checkpointing':>14} {'NFE ' + str(lo):>10} {'NFE ' + str(hi):>10} {'growth':>8}")
    for ckpt in (False, True):
        a, b = results[(ckpt, lo)], results[(ckpt, hi)]
        print(f"{'on' if ckpt else 'off':>14} {a:10.1f} {b:10.1f} {100 * (b / a - 1):7.1f}%")
    growth = results[(True, hi)] / results[(True, lo)] - 1
    print(f"bar (checkpointing on grows < 20% from NFE {lo} to {hi}): "
          f"{'PASS' if growth < 0.2 else 'FAIL'} ({100 * growth:.1f}%)")


if __name__ == "__main__":
    main()
