"""Harness overhead: sampling through the runner against a bare loop of the same denoiser calls, with
throughput and peak memory; on a GPU, or on the CPU (`--small` for the SD-1.5-sized network).

Three models:
  * `sd15`: a random-weight `diffusers.UNet2DConditionModel` built from Stable Diffusion 1.5's UNet
    config (block_out_channels (320, 640, 1280, 1280), 2 layers per block, cross-attention dim 768,
    8 attention heads, 4-channel 64x64 latents; nothing is downloaded), eps-prediction in SD's
    scaled-linear VP time (`vp-scaled-linear`), conditioned on one fixed random 77 x 768 text
    embedding. With `--small` the same block types at widths (16, 32), 1 layer per block,
    cross-attention dim 16, 8x8 latents.
  * `digits-net`: the shipped trained digits U-Net (`bench.models.digits_net`), class-conditional.
  * `toy2d`: the exact 2D tree mixture in flow-matching time (an exact model: no network to stub out,
    so its `added` columns are empty and the ratio is the whole figure; `--toy-batch` priors).
For each network, dtype (fp32; bf16 = the network under `torch.autocast`, as the `dtype` model
parameter of digits-net does) and batch (16, 64), it times
  * harness: `bench.runner.sample` -- what `run_cell` times: the method builds the `Discretization`,
    the Euler (DDIM) solver integrates through `predict`, a `NetworkCounter` counts evaluations,
    and the model adapter checks and converts its inputs;
  * bare: a plain loop of the same network calls (the same times, the same autocast) and the same
    DDIM update written out, with no harness object in between;
over `--nfe` steps (10; the `edm` schedule for digits-net, `uniform` for sd15), after one warm-up
pass each, in `--repeats` rounds of four passes, harness, bare, bare, harness (bare, harness,
harness, bare in every other round), so that both paths meet the machine alike. It prints the ratio
harness / bare of the fastest pass of each path, in wall time (`ratio`; the target is at most 1.05)
and in the CPU time of the process (`cpu ratio`, `time.process_time`): the minimum, as `timeit`
advises, since noise only ever adds time, and over many passes it settles where the mean of a few
does not (the passes of a shared virtual machine scatter by several percent). On a CPU shared with
other jobs the wall time also measures the scheduler, the CPU time only the work, so `cpu ratio` is
the overhead figure there; on a GPU, whose work is not CPU time, the wall ratio is the one that
counts. On a shared virtual machine even the minima move by several percent from run to run, more
than the harness adds; so the script also
measures that addition alone: with the network of both paths replaced by a stub that returns its
input, it times `STUB_PASSES` interleaved pass pairs and takes the median of harness minus bare
(`added ms` per pass: the solver's arithmetic, the adapter's checks, the counting wrapper), and
prints 1 + that / the bare pass with the network (`added ratio`). It leaves out only what the added
work costs the network indirectly (caches). Also printed: the median wall time of a pass, images/s
of the harness path at that time,
and the peak memory: `torch.cuda.max_memory_allocated` on a GPU, the process's peak resident memory
(`ru_maxrss`, a high-water mark over the whole run, not per configuration) on the CPU.

    python benchmarks/bench_overhead.py [--device cuda] [--small] [--models toy2d digits-net sd15] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `bench`, not an installed one

import torch  # noqa: E402

from bench.models import Denoiser, make_model  # noqa: E402
from bench.models._predictions import x0_from_output  # noqa: E402
from bench.registry import METHODS  # noqa: E402
from bench.counting import NetworkCounter  # noqa: E402
from bench.runner import sample  # noqa: E402
from bench.schedules import VPScaledLinear  # noqa: E402
from bench.seeding import noise_from_seeds, sample_seeds  # noqa: E402
from bench.solvers import make_solver  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16}
STUB_PASSES = 200  # passes per path with the stub network (cheap: the solver and adapter only)
SD15 = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
SD15_SMALL = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, cross_attention_dim=16,
    block_out_channels=(16, 32), attention_head_dim=4, norm_num_groups=8,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)


class ConfigUNet(Denoiser):
    """A random-weight UNet2DConditionModel as an unconditional eps-prediction denoiser (SD's VP time)."""

    name = "sd15-random"

    def __init__(self, config: dict, autocast_dtype=None, seed: int = 0):
        super().__init__()
        from diffusers import UNet2DConditionModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.unet = UNet2DConditionModel(**config).eval().requires_grad_(False)
            context = torch.randn(1, 77, config["cross_attention_dim"])
        self.register_buffer("context", context, persistent=False)
        self.schedule = VPScaledLinear()
        self.data_shape = (config["in_channels"], config["sample_size"], config["sample_size"])
        self.autocast_dtype = autocast_dtype

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = self.schedule.step_index(t)
        ctx = self.context.expand(x.shape[0], -1, -1)
        cast = torch.autocast(x.device.type, self.autocast_dtype) if self.autocast_dtype else nullcontext()
        with cast:
            return self.unet(x.to(torch.float32), step, encoder_hidden_states=ctx).sample.to(x.dtype)

    def forward(self, x, t, cond=None):
        return x0_from_output("epsilon", self.eps(x, t), x, self.schedule.alpha(t), self.schedule.sigma(t))


def bare_sd(model: ConfigUNet, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """DDIM with the network called directly: x <- alpha' x0 + sigma' eps."""
    sched = model.schedule
    alphas, sigmas = sched.alpha(t).tolist(), sched.sigma(t).tolist()
    for i in range(t.numel() - 1):
        eps = model.eps(x, t[i].expand(x.shape[0]))
        x0 = (x - sigmas[i] * eps) / alphas[i]
        x = alphas[i + 1] * x0 + sigmas[i + 1] * eps
    return x


def bare_exact(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Euler/DDIM for an exact model called directly: x <- alpha' (x/alpha + (s'/alpha' - s/alpha) eps)."""
    sched = model.schedule
    for i in range(t.numel() - 1):
        a, s = sched.alpha(t[i]), sched.sigma(t[i])
        an, sn = sched.alpha(t[i + 1]), sched.sigma(t[i + 1])
        x0 = model(x, t[i].expand(x.shape[0]))
        eps = (x - a * x0) / s
        x = an * (x / a + (sn / an - s / a) * eps)
    return x


def bare_digits(model, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Euler in VE time with the preconditioned network called directly: x <- x0 + (s'/s) (x - x0)."""
    sigmas = t.tolist()
    for i in range(t.numel() - 1):
        x0 = model.net(x, t[i].expand(x.shape[0]), labels, autocast_dtype=model.autocast_dtype)
        x = x0 + (sigmas[i + 1] / sigmas[i]) * (x - x0)
    return x


class StubNetwork(torch.nn.Module):
    """Stands in for a network in both paths: returns its input (as `.sample` for the UNet), so a pass
    costs only what surrounds the network calls."""

    def __init__(self, wrap_sample: bool):
        super().__init__()
        self.wrap_sample = wrap_sample

    def forward(self, x, *args, **kwargs):
        if self.wrap_sample:
            return SimpleNamespace(sample=x)
        return x


@contextmanager
def stub_network(model):
    """The model with its network (`net` of digits-net, `unet` of the sd15 stand-in) replaced by a stub;
    an exact model (no network) is left as it is and the caller measures nothing."""
    attribute = "unet" if hasattr(model, "unet") else "net"
    if not hasattr(model, attribute):
        yield False
        return
    network = getattr(model, attribute)
    setattr(model, attribute, StubNetwork(wrap_sample=attribute == "unet"))
    try:
        yield True
    finally:
        setattr(model, attribute, network)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, model, x_T, cond, method, bare, repeats: int, device) -> dict:
    solver = make_solver("euler")
    t = method.discretize(x_T[:1]).t[0].to(device=device, dtype=x_T.dtype)

    def run_harness():
        return sample(NetworkCounter(model), solver, method, x_T, cond, x_T.shape[0])[0]

    def run_bare():
        with torch.no_grad():
            return bare(model, x_T, t) if cond is None else bare(model, x_T, t, cond)

    def timed(fn) -> tuple[float, float]:
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        return time.perf_counter() - start, time.process_time() - start_cpu

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out_h, out_b = run_harness(), run_bare()  # warm-up (kernels, autocast caches, allocator)
    times = {run_harness: [], run_bare: []}  # (wall, cpu) of every pass
    for i in range(repeats):
        # A B B A (B A A B in every other round): both paths see the machine alike
        order = (run_harness, run_bare, run_bare, run_harness) if i % 2 == 0 else \
            (run_bare, run_harness, run_harness, run_bare)
        for fn in order:
            times[fn].append(timed(fn))
    diff = float((out_h.float() - out_b.float()).abs().max())
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    harness, bare_ = times[run_harness], times[run_bare]
    fastest = lambda runs, k: min(r[k] for r in runs)  # noqa: E731
    h = statistics.median(r[0] for r in harness)
    with stub_network(model) as stubbed:  # what the harness adds around the same network calls, pass by pass
        added = []
        for i in range(STUB_PASSES if stubbed else 0):
            first, second = (run_harness, run_bare) if i % 2 == 0 else (run_bare, run_harness)
            a, b = timed(first)[0], timed(second)[0]
            added.append(a - b if first is run_harness else b - a)
    added_s = max(0.0, statistics.median(added)) if added else float("nan")
    return {"model": name, "batch": int(x_T.shape[0]), "harness_s": h,
            "bare_s": statistics.median(r[0] for r in bare_),
            "ratio": fastest(harness, 0) / fastest(bare_, 0),
            "cpu_ratio": fastest(harness, 1) / fastest(bare_, 1),
            "added_s": added_s, "added_ratio": 1 + added_s / fastest(bare_, 0),
            "images_per_s": x_T.shape[0] / h, "peak_mem_mb": peak / 2**20,
            "peak_mem_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS",
            "max_abs_diff": diff}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="a small sd15-like config (for the CPU)")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds of two passes per path "
                        "(default 5, --small 24)")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--models", nargs="+", default=["toy2d", "digits-net", "sd15"],
                        choices=["toy2d", "digits-net", "sd15"])
    parser.add_argument("--toy-batch", type=int, default=10000, help="priors per pass of the toy2d model")
    parser.add_argument("--out", default=None, help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (24 if args.small else 5)
    header = (f"bench_overhead: device {device}"
              f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, nfe {args.nfe}, "
              f"{repeats} rounds (A B B A), {'small' if args.small else 'full'} sd15 config")
    print(header, flush=True)
    print(f"{'model':<11} {'dtype':<5} {'batch':>5} {'harness s':>10} {'bare s':>9} {'ratio':>6} {'cpu ratio':>9} "
          f"{'added ms':>8} {'added ratio':>11} {'images/s':>9} {'peak MB':>9}  max|h-b|", flush=True)
    rows = []
    for name in args.models:
        for dtype in (args.dtypes if name != "toy2d" else ["fp32"]):
            if name == "toy2d":
                model = make_model({"name": "toy2d", "time": "flow"}).to(device).eval()
                method = METHODS.create("uniform").bind(model.schedule, args.nfe, make_solver("euler"))
                bare = bare_exact
            elif name == "digits-net":
                model = make_model({"name": "digits-net", "dtype": dtype}).to(device).eval()
                method = METHODS.create("edm").bind(model.schedule, args.nfe, make_solver("euler"))
                bare = bare_digits
            else:
                model = ConfigUNet(SD15_SMALL if args.small else SD15, DTYPES[dtype]).to(device)
                method = METHODS.create("uniform").bind(model.schedule, args.nfe, make_solver("euler"))
                bare = bare_sd
            for batch in (args.batches if name != "toy2d" else [args.toy_batch]):
                noise = noise_from_seeds(sample_seeds("eval", 0, batch), model.data_shape)
                x_T = model.prior(noise).to(device)
                cond = (torch.arange(batch, device=device) % model.num_classes) if model.num_classes else None
                row = {**measure(name, model, x_T, cond, method, bare, repeats, device), "dtype": dtype}
                rows.append(row)
                print(f"{name:<11} {dtype:<5} {batch:>5} {row['harness_s']:>10.4f} {row['bare_s']:>9.4f} "
                      f"{row['ratio']:>6.3f} {row['cpu_ratio']:>9.3f} {row['added_s'] * 1e3:>8.3f} "
                      f"{row['added_ratio']:>11.4f} {row['images_per_s']:>9.1f} {row['peak_mem_mb']:>9.1f}  "
                      f"{row['max_abs_diff']:.1e}", flush=True)
            del model
    if args.out:
        Path(args.out).write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
