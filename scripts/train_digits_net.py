"""Train the `digits-net` denoiser from scratch and write its weights file.

    .venv/bin/python scripts/train_digits_net.py [--out results/weights/digits_net.pt] [--steps N]
    .venv/bin/python scripts/train_digits_net.py --overwrite-shipped      # replace the package's file

By default it writes `results/weights/digits_net.pt` under the current folder (results/ is the
harness's output root, ignored by git); use it with `digits-net`'s `weights: PATH`. The weights the
package ships (`bench/models/weights/digits_net.pt`) are replaced only with `--overwrite-shipped`.

The recipe (fixed seed, deterministic, one thread) is `bench.models._digits_net_train`'s; every default
is documented there. The file holds the EMA weights (float32) with the network config and the
training settings; the script prints its SHA-256, which goes into `WEIGHTS_SHA256` in
`bench/models/digits_net.py` when the shipped file is replaced.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.models._digits_net_train import TRAIN_CONFIG, train  # noqa: E402
from bench.store import atomic_write_torch  # noqa: E402


SHIPPED = ROOT / "bench" / "models" / "weights" / "digits_net.pt"
DEFAULT_OUT = Path("results") / "weights" / "digits_net.pt"


def output_path(args) -> Path:
    """Where to write: --out (never the shipped file unless --overwrite-shipped), else DEFAULT_OUT."""
    if args.overwrite_shipped:
        return SHIPPED
    out = Path(args.out) if args.out else DEFAULT_OUT
    if out.expanduser().resolve() == SHIPPED.resolve():
        raise SystemExit(f"--out {out} is the weights file the package ships; pass --overwrite-shipped to replace it")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help=f"weights file to write (default: {DEFAULT_OUT}, under the current folder)")
    where.add_argument("--overwrite-shipped", action="store_true", help=f"replace the package's weights, {SHIPPED}")
    parser.add_argument("--steps", type=int, default=TRAIN_CONFIG["steps"], help="training steps")
    args = parser.parse_args(argv)
    out = output_path(args)
    start = time.perf_counter()
    ema, net_config, history = train({"steps": args.steps}, log=lambda msg: print(msg, flush=True))
    train_config = {**TRAIN_CONFIG, "steps": args.steps}
    atomic_write_torch(out, {"config": net_config, "train": train_config, "torch": str(torch.__version__),
                             "state_dict": {k: v.contiguous() for k, v in ema.state_dict().items()}})
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    params = sum(p.numel() for p in ema.parameters())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {params} parameters) in "
          f"{time.perf_counter() - start:.0f}s; loss {history[0][1]:.4f} -> {history[-1][1]:.4f}")
    print(f"sha256 {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
