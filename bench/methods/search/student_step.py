"""One student step from a node of a timestep grid to many candidate nodes, with the solvers' own `step`.

OSS and GITS both ask: from a state at node i, where does one step of the student solver land at each
later node j of `js`? Both answer it with `Solver.step` of `bench.solvers` (the step API), on J
candidate copies of the B samples, stacked candidate-major (row j * B + b is candidate j of sample b)
and each with its own discretization row, so the same code serves every solver:

* `CandidateDenoise`: the denoiser of such a step. An evaluation at the step's starting state (the
  same state and time for every candidate: the first evaluation of Euler, Heun, DPM-Solver-2, iPNDM
  and DPM-Solver++) is made once on the B samples and shared by the J candidates; any other one
  (Heun's corrector, DPM-Solver-2's midpoint, UniPC's corrector, all at the candidate's own time) is
  made for all J * B rows. It counts the rows the network evaluated.
* `StudentSteps`: OSS's `advance` and `cost` for `oss_dp`. The DP state of a node is, per sample, the
  solver's `State` there (the sample and, for a multistep solver, its history of denoiser outputs)
  and the node path that reached it; a step resumes that state at node i as step k of a K-step run
  whose discretization row is [the path's times, t_j, padding]. The padding (the nodes after j) is
  never stepped to: it is there so that solvers whose step depends on the step count
  (`lower_order_final`, UniPC's last step without corrector) see the run's K steps.
* `one_step_jumps`: GITS's jump from the teacher's state at node i to every later node, one step of a
  solver (Euler by default, as the reference) starting from the teacher's prediction at x_i.
"""
from __future__ import annotations

import torch

from bench.counting import evals_per_call
from bench.discretization import Discretization
from bench.solvers.base import AnalyticFirstStep, Denoise, Evaluation, State, predict


def candidate_rows(value: torch.Tensor, candidates: int) -> torch.Tensor:
    """[B, ...] -> [J * B, ...]: J candidate-major copies of B rows (row j * B + b is value[b])."""
    return value.unsqueeze(0).expand((candidates,) + tuple(value.shape)).reshape(
        (candidates * value.shape[0],) + tuple(value.shape[1:]))


class _Given:
    """A stand-in network that returns a given data prediction (GITS: the teacher's, at x_i)."""

    def __init__(self, schedule, x0: torch.Tensor):
        self.schedule, self.x0 = schedule, x0

    def __call__(self, x, t, cond=None):
        return self.x0


class CandidateDenoise(Denoise):
    """`Denoise` for a step of J candidates of B samples that all start from `start` (rows candidate-major).

    The first evaluation at `start` may be AFS's analytic one (`analytic_first`) or a given prediction
    (`given_x0` [B, ...]); neither costs a network row."""

    def __init__(self, model, cond, start: torch.Tensor, samples: int, candidates: int,
                 analytic_first: bool = False, given_x0: torch.Tensor | None = None, disc=None):
        super().__init__(model, None if cond is None else candidate_rows(cond, candidates), analytic_first, disc)
        self.start, self.samples, self.candidates = start, samples, candidates
        self.cond_samples = cond
        self.given_x0 = given_x0
        self.rows = 0  # network rows evaluated (bench.counting: x evals_per_call)
        self.evals_per_call = evals_per_call(model)

    def __call__(self, x, t, t_eval=None, scale=None):
        B, J = self.samples, self.candidates
        if x is self.start:  # the step's own starting state: identical for every candidate
            first = not self.evaluations
            if first and self.analytic_first:
                model = AnalyticFirstStep(self.schedule)
            elif first and self.given_x0 is not None:
                model = _Given(self.schedule, self.given_x0)
            else:
                model = self.model
                self.rows += B * self.evals_per_call
            head = lambda v: v if v is None or v.shape[0] == 1 else v[:B]  # noqa: E731  (one row broadcasts)
            x0, eps = predict(model, x[:B], head(t), head(t_eval), head(scale), self.cond_samples)
            x0, eps = candidate_rows(x0, J), candidate_rows(eps, J)
        else:
            x0, eps = predict(self.model, x, t, t_eval, scale, self.cond)
            self.rows += J * B * self.evals_per_call
        self.evaluations.append(Evaluation(x, t, x0, eps))
        return x0, eps


class StudentSteps:
    """OSS's student step for any solver: `init_state`, `advance` and `cost` for `oss_dp` (see the
    module docstring). `teacher` [T + 1, B, ...] holds the teacher's states at the grid's nodes; the
    cost of a candidate is the mean over dimensions of its squared distance to the teacher there (the
    reference's `((z_j - traj_tea[j]) ** 2).mean()`). `rows` counts the network rows spent.

    As in the paper only the best state per (k, j) survives; for a multistep solver the future also
    depends on the history, and the kept state carries the history of its own path only."""

    def __init__(self, solver, model, t_nodes: torch.Tensor, steps: int, x_T: torch.Tensor,
                 teacher: torch.Tensor, cond=None):
        self.solver, self.model, self.steps = solver, model, steps
        self.t_nodes = t_nodes.to(device=x_T.device, dtype=x_T.dtype)
        self.x_T, self.teacher, self.cond = x_T, teacher, cond
        self.rows = 0

    def init_state(self) -> dict:
        B = self.x_T.shape[0]
        start = Discretization(self.t_nodes[[0, -1]][None])
        return self._pack(torch.zeros(B, 1, dtype=torch.long), self.solver.init_state(self.x_T, start))

    @staticmethod
    def _pack(path: torch.Tensor, state: State) -> dict:
        return {"path": path, "x": state.x, **{f"history{m}": h for m, h in enumerate(state.history)}}

    @staticmethod
    def _unpack(node: dict, rows) -> State:
        history = tuple(rows(node[f"history{m}"]) for m in range(len(node) - 2))
        return State(rows(node["x"]), history)

    def advance(self, node: dict, k: int, i: int, js: torch.Tensor) -> dict:
        """Step k from the state `node` at node i (entries [B, ...]) to every node of `js`: [J, B, ...]."""
        B, J, K = self.x_T.shape[0], js.numel(), self.steps
        T = self.t_nodes.numel() - 1
        padding = (js.view(J, 1, 1) + torch.arange(1, K - k).view(1, 1, -1)).clamp(max=T)
        nodes = torch.cat([node["path"].unsqueeze(0).expand(J, B, k + 1), js.view(J, 1, 1).expand(J, B, 1),
                           padding.expand(J, B, K - k - 1)], dim=2)
        disc = Discretization(self.t_nodes[nodes.reshape(J * B, K + 1)])
        state = self._unpack(node, lambda v: candidate_rows(v, J))
        denoise = CandidateDenoise(self.model, self.cond, state.x, B, J,
                                   analytic_first=bool(self.solver.params.afs) and k == 0, disc=disc)
        new = self.solver.advance(state, k, disc, denoise)
        self.rows += denoise.rows
        by_candidate = lambda v: v.reshape((J, B) + tuple(v.shape[1:]))  # noqa: E731
        return self._pack(nodes[:, :, : k + 2], State(by_candidate(new.x), tuple(map(by_candidate, new.history))))

    def cost(self, candidates: dict, k: int, js: torch.Tensor) -> torch.Tensor:
        return (candidates["x"] - self.teacher[js]).flatten(2).square().mean(-1)


def one_step_jumps(solver, model, x_i, x0_i, t_i, t_js, cond=None):
    """GITS's jump: one step of `solver` from the state x_i [B, ...] at t_i to each time of t_js [J],
    its first evaluation given (x0_i, the teacher's prediction at x_i) and any further evaluation of
    the step (Heun's corrector, DPM-Solver-2's midpoint) made by the network.
    Returns (states [J, B, ...], rows evaluated). The step is `Solver.step` itself: no `final_step`
    convention applies, and `solver` must not use AFS (the caller gives AFS's prediction as x0_i)."""
    B, J = x_i.shape[0], t_js.numel()
    t = torch.stack([t_i.expand(J), t_js], dim=1).to(x_i.dtype)  # [J, 2]
    disc = Discretization(t.repeat_interleave(B, dim=0))
    start = candidate_rows(x_i, J)
    denoise = CandidateDenoise(model, cond, start, B, J, given_x0=x0_i, disc=disc)
    out = solver.step(solver.init_state(start, disc), 0, disc, denoise).x
    return out.reshape((J, B) + tuple(x_i.shape[1:])), denoise.rows


__all__ = ["CandidateDenoise", "StudentSteps", "candidate_rows", "one_step_jumps"]
