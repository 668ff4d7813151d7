"""`bench.kdiffusion_wrapper.LearnedScheduleDenoiser`: a learned schedule's exported `t_eval` / `scale`
applied to a k-diffusion-convention denoiser, so that k-diffusion's Euler loop (`sample_euler` with
churn 0, written out below; crowsonkb/k-diffusion 686dbad) on the exported sigmas gives the harness's
Euler samples of the same discretization, for VE and flow-time models and every `final_step`.

Tolerance: both sides make the same N evaluations and N Euler updates in float64; they differ by the
order of their operations (the VE view y = x / alpha, the k-diffusion denoiser's t_of_sigma round
trip), a few ulps per operation, amplified by the denoiser's Lipschitz constant near t_min (toy2d's
mixture: about 1 / sigma_min^2 on its narrowest component); 1e-12 on samples of size ~1 leaves room
for that and is far below the effect of dropping t_eval / scale (checked: > 1e-3)."""
from __future__ import annotations

import pytest
import torch

from bench.discretization import Discretization
from bench.export import record
from bench.kdiffusion_wrapper import LearnedScheduleDenoiser
from bench.models import make_model
from bench.solvers import make_solver

F64 = torch.float64


def sample_euler(model, x, sigmas):
    """k-diffusion's `sample_euler` with s_churn = 0: one Euler step in sigma between consecutive values."""
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * x.new_ones([x.shape[0]]))
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


class KDiffusionDenoiser:
    """A harness model in k-diffusion's convention: D(y; sigma) on the VE state y = x / alpha(t)."""

    def __init__(self, model):
        self.model, self.schedule = model, model.schedule

    def __call__(self, y, sigma):
        t = self.schedule.t_of_sigma_ve(sigma)
        alpha = self.schedule.alpha(t).reshape(-1, *([1] * (y.ndim - 1)))
        return self.model(alpha * y, t)


def learned_disc(schedule, steps, seed=4):
    gen = torch.Generator().manual_seed(seed)
    u = torch.linspace(0, 1, steps + 1, dtype=F64)
    s_max, s_min = schedule.sigma_ve(torch.tensor(schedule.t_max, dtype=F64)), schedule.sigma_ve(
        torch.tensor(schedule.t_min, dtype=F64))
    sigma = (s_max ** (1 / 7) + u * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    t = schedule.t_of_sigma_ve(sigma)
    t[0], t[-1] = schedule.t_max, schedule.t_min
    t_eval = t[:-1] + 0.3 * torch.rand(steps, generator=gen, dtype=F64) * (t[1:] - t[:-1])  # LD3-like shifts
    scale = 1 + 0.05 * torch.randn(steps, generator=gen, dtype=F64)                          # GOD-like scales
    return Discretization(t[None], t_eval[None], scale[None])


@pytest.mark.parametrize("final_step", ["t_min", "zero", "denoise"])
@pytest.mark.parametrize("model_spec", [{"name": "toy2d"}, {"name": "toy2d", "time": "flow"}])
def test_k_diffusion_euler_through_the_wrapper_gives_the_cells_samples(model_spec, final_step):
    model = make_model(model_spec).double()
    schedule = model.schedule
    disc = learned_disc(schedule, 5)
    x_T = model.prior(torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=F64))
    with torch.no_grad():
        harness = make_solver({"name": "euler", "final_step": final_step}).sample(model, x_T, disc)
        rec = record(schedule, disc, final_step=final_step)
        assert "warning" in rec  # the plain forms lose t_eval / scale; the wrapper is what puts them back
        wrapped = LearnedScheduleDenoiser.from_record(KDiffusionDenoiser(model), rec)
        alpha_T = schedule.alpha(torch.tensor(schedule.t_max, dtype=F64))
        # t_min: the list ends at sigma_min, back from the VE view to the model's state there; zero and
        # denoise: it ends at sigma 0, where y is the data prediction itself
        alpha_end = schedule.alpha(torch.tensor(schedule.t_min, dtype=F64)) if final_step == "t_min" else 1.0
        y = sample_euler(wrapped, x_T / alpha_T, wrapped.sigmas) * alpha_end
        plain = sample_euler(KDiffusionDenoiser(model), x_T / alpha_T, wrapped.sigmas)
    err = float((y - harness).abs().max())
    print(f"{model_spec} {final_step}: max |k-diffusion loop via wrapper - harness| = {err:.2e}")
    assert err <= 1e-12, err
    plain = plain * alpha_end
    assert float((plain - harness).abs().max()) > 1e-3  # without the wrapper the samples differ


def test_a_sigma_inside_a_step_is_refused():
    model = make_model("toy2d").double()
    rec = record(model.schedule, learned_disc(model.schedule, 3))
    wrapped = LearnedScheduleDenoiser.from_record(KDiffusionDenoiser(model), rec)
    x = torch.zeros(2, 2, dtype=F64)
    wrapped(x, wrapped.sigmas[1].expand(2))
    with pytest.raises(ValueError, match="not a node"):
        wrapped(x, (wrapped.sigmas[1] * 0.9).expand(2))
