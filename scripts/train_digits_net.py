"""Train the `digits-net` denoiser from scratch and write its weights file.

    .venv/bin/python scripts/train_digits_net.py [--out bench/models/weights/digits_net.pt] [--steps N]

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "models" / "weights" / "digits_net.pt"))
    parser.add_argument("--steps", type=int, default=TRAIN_CONFIG["steps"], help="training steps")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ema, net_config, history = train({"steps": args.steps}, log=lambda msg: print(msg, flush=True))
    train_config = {**TRAIN_CONFIG, "steps": args.steps}
    out = Path(args.out)
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
