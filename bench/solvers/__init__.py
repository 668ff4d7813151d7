"""ODE solvers for diffusion sampling; one module per solver, each registered in `SOLVERS`.

euler (DDIM), heun (EDM), dpm2 (DPM-Solver-2), dpmpp-2m / dpmpp-3m (DPM-Solver++ multistep),
unipc-bh1 / unipc-bh2 (UniPC), ipndm (fixed coefficients), ipndm-v (variable-step coefficients).
Every solver takes `afs` (analytical first step); see `base` for the shared conventions.
"""

from .base import Solver, make_solver, predict

__all__ = ["Solver", "make_solver", "predict"]
