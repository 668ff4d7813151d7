"""A test plugin shared by the launcher tests (submitit-local and Slurm): a 'learned' method whose
fit runs in resumable, checkpointed steps. Jobs import it by module name (`bench.launch.plugin_modules`)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from bench.discretization import HeuristicMethod
from bench.registry import METHODS


@METHODS.register("test-steps")
class StepsFit(HeuristicMethod):
    """Test plugin: a 'learned' polynomial schedule whose exponent is fitted in `steps` resumable
    steps of `step_seconds` each; every step is checkpointed through `FitContext.save_checkpoint`.
    The fitted exponent does not depend on where the fit was interrupted."""

    needs_fit = True
    heuristic = False
    defaults = {"steps": 4, "step_seconds": 0.0, "rho0": 1.0}

    def fit(self, ctx):
        state = ctx.load_checkpoint() or {"step": 0, "rho": float(self.params.rho0), "attempts": 0}
        state["attempts"] += 1
        state["resumed_from"] = state["step"]
        Path(ctx.artifact_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(ctx.artifact_dir) / "attempts.log", "a") as f:
            f.write(f"{os.getpid()} from {state['step']}\n")
        while state["step"] < self.params.steps:
            time.sleep(self.params.step_seconds)
            state["rho"] += 0.25
            state["step"] += 1
            ctx.save_checkpoint(state)
        self.state = state

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, state):
        self.state = dict(state)

    def timesteps(self):
        return METHODS.create("polynomial", rho=self.state["rho"]).bind(self.noise_schedule, self.steps).timesteps()
