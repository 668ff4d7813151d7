"""ODE solvers for diffusion sampling; one module per solver, each registered in `SOLVERS`.

euler (DDIM), heun (EDM), dpm2 (DPM-Solver-2), dpmpp-2m / dpmpp-3m (DPM-Solver++ multistep),
unipc-bh1 / unipc-bh2 (UniPC), ipndm (fixed coefficients), ipndm-v (step-size-dependent
coefficients). Each writes one `step`; `base.Solver.sample` is the one sampling loop, and `base`
documents the conventions every solver shares (`afs`, `final_step`, `lower_order_final`).
"""

from .base import Solver, State, make_solver, predict

__all__ = ["Solver", "State", "make_solver", "predict"]
