"""A fitted schedule network (INDIS, GOD, the oracle's shared start) as one self-contained TorchScript
module, traced with `torch.jit.trace`.

f(x_T [B, *data_shape], labels [B] int64, -1 = no label) -> (t [B', N+1], t_eval [B', N],
scale [B', N]), float64, B' = B (INDIS) or 1 (GOD: one schedule, broadcast). It runs phi and the
method's own `OutputMap` (the map its `discretize` uses), so it returns that schedule exactly (in
float64); without shifts, t_eval = t[:, :-1] and scale = 1 (what a solver does when they are absent).
The schedule's constants (t range, lambda map) are baked in; load with `torch.jit.load(path)`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .prior_net import OutputMap


class ExportedSchedule(nn.Module):
    """(x_T, labels) -> (t, t_eval, scale): phi on x_T / prior_std, then the output map."""

    def __init__(self, phi: nn.Module, output_map: OutputMap, prior_std: float):
        super().__init__()
        self.phi, self.output_map, self.prior_std = phi, output_map, float(prior_std)

    def forward(self, x_T: torch.Tensor, labels: torch.Tensor):
        t, t_eval, scale = self.output_map(self.phi(x_T / self.prior_std, labels))
        if t_eval is None:
            return t, t[:, :-1], torch.ones_like(t[:, :-1])
        return t, t_eval, scale


def export_schedule_net(phi: nn.Module, output_map: OutputMap, prior_std: float) -> torch.jit.ScriptModule:
    """Trace a copy of `phi` (on the CPU, in eval mode) with its output map (module docstring)."""
    phi = copy.deepcopy(phi).cpu().eval()
    # GOD's O ignores its input: any example shape traces it
    example = torch.zeros((2,) + (tuple(getattr(phi, "data_shape", ())) or (1,)), dtype=torch.float64)
    labels = torch.tensor([0, -1], dtype=torch.long)
    with torch.no_grad():
        return torch.jit.trace(ExportedSchedule(phi, output_map, prior_std), (example, labels), check_trace=False)


__all__ = ["ExportedSchedule", "export_schedule_net"]
