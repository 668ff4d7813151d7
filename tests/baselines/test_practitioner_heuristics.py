"""Practitioners' heuristics beside the papers' four: `beta` (Lee et al. 2024, as ComfyUI), `kl-optimal`
(AYS appendix, as ComfyUI), diffusers' `linspace`/`leading`/`trailing` spacings, the flow time shift
of SD3/FLUX on the shipped models; and the explicit `paper_baseline` set behind "best heuristic"."""
import math

import numpy as np
import pytest
import scipy.stats
import torch

from bench.errors import UserError
from bench.models import make_model
from bench.registry import METHODS
from bench.schedules import VE, FlowOT, VPScaledLinear
from bench.solvers import make_solver
from bench.methods._learned.init import init_heuristics

PAPERS = {"uniform", "logsnr", "polynomial", "edm"}


def _t(name, schedule, steps, **params):
    return METHODS.create(name, **params).bind(schedule, steps).timesteps()


def test_paper_baselines_are_exactly_the_four_closed_forms():
    flagged = {name for name, cls in METHODS.items() if getattr(cls, "paper_baseline", False)}
    assert flagged == PAPERS
    for name in ("beta", "kl-optimal", "linspace", "leading", "trailing", "manual"):
        cls = METHODS.get(name)
        assert cls.heuristic and not cls.paper_baseline
    assert set(init_heuristics()) == PAPERS  # the learned methods' `init: auto` candidates are unchanged


@pytest.mark.parametrize("schedule", [VE(), FlowOT(), VPScaledLinear()])
@pytest.mark.parametrize("name", ["beta", "kl-optimal"])
def test_ends_are_exact_and_steps_decrease(name, schedule):
    for steps in (1, 3, 10):
        t = _t(name, schedule, steps)
        assert t.shape == (steps + 1,) and t[0] == schedule.t_max and t[-1] == schedule.t_min
        assert bool((t[1:] < t[:-1]).all())


def test_beta_is_comfyuis_beta_scheduler_before_rounding():
    """ComfyUI: ts = rint(Beta.ppf(1 - linspace(0, 1, N, endpoint=False)) * (K - 1)) on a K-step table;
    on Stable Diffusion's table (t = (n + 1)/K) ours is the same quantile, unrounded."""
    s = VPScaledLinear()
    for steps in (4, 8, 12):
        steps_ours = (_t("beta", s, steps) * 1000 - 1).numpy()
        q = 1 - np.linspace(0, 1, steps, endpoint=False)
        comfy = np.rint(scipy.stats.beta.ppf(q, 0.6, 0.6) * 999)
        assert np.array_equal(np.rint(steps_ours[:-1]), comfy) and steps_ours[-1] == pytest.approx(0, abs=1e-9)
    # U-shaped: the first and last gaps are smaller than the middle one (alpha = beta = 0.6 < 1)
    t = _t("beta", VE(), 6)
    gaps = (t[:-1] - t[1:]).numpy()
    assert gaps[0] < gaps[3] and gaps[-1] < gaps[3]
    with pytest.raises(UserError, match="alpha must be > 0"):
        METHODS.create("beta", alpha=0)


def test_kl_optimal_is_uniform_in_arctan_sigma():
    """ComfyUI's kl_optimal_scheduler(n = N + 1, sigma_min, sigma_max) without its trailing 0."""
    for schedule in (VE(), VPScaledLinear()):
        steps = 5
        t = _t("kl-optimal", schedule, steps)
        sigma = schedule.sigma_ve(t).numpy()
        lo, hi = sigma[-1], sigma[0]
        adj = np.arange(steps + 1) / steps
        expected = np.tan(adj * math.atan(lo) + (1 - adj) * math.atan(hi))
        assert np.allclose(sigma, expected, rtol=1e-10)


@pytest.mark.parametrize("spacing,offset", [("linspace", 0), ("leading", 0), ("leading", 1), ("trailing", 0)])
@pytest.mark.parametrize("steps", [3, 4, 7, 10])
def test_ddpm_spacings_match_diffusers_multistep_timesteps(spacing, offset, steps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                  timestep_spacing=spacing, steps_offset=offset)
    sched.set_timesteps(steps)
    params = {"steps_offset": offset} if spacing == "leading" else {}
    s = VPScaledLinear()
    t = _t(spacing, s, steps, **params)
    indices = t * 1000 - 1
    assert torch.allclose(indices[:-1], sched.timesteps.double(), atol=1e-9)
    assert t[-1] == s.t_min  # the last step lands at training step 0 (final_sigmas_type="sigma_min")
    if spacing == "trailing":
        assert t[0] == s.t_max
    if spacing == "leading":
        assert t[0] < s.t_max  # diffusers' leading does not start at the last training step


def test_ddpm_spacings_need_a_discrete_model():
    with pytest.raises(UserError, match="discrete-time VP"):
        _t("trailing", VE(), 4)
    with pytest.raises(UserError, match="steps_offset"):
        METHODS.create("leading", steps_offset=-1)


def test_flow_shift_moves_the_time_axis_only():
    plain = make_model({"name": "toy2d", "time": "flow"})
    shifted = make_model({"name": "toy2d", "time": {"name": "flow", "shift": 3.0}})
    s1, s3 = plain.schedule, shifted.schedule
    assert s3.shift == 3.0 and s1 == FlowOT(0.002, 80 / 81)
    ends = lambda s: s.sigma_ve(torch.tensor([s.t_max, s.t_min], dtype=torch.float64))  # noqa: E731
    assert torch.allclose(ends(s1), ends(s3), rtol=1e-12)  # the same VE noise range
    assert plain.schedule.prior_std() == pytest.approx(shifted.schedule.prior_std(), rel=1e-12)
    # `uniform` in the shifted time is SD3's shifted schedule: OT time = 3u / (1 + 2u)
    u = _t("uniform", s3, 4)
    assert torch.allclose(s3.sigma(u), 3 * u / (1 + 2 * u), rtol=1e-12)
    # the same ODE: a fine Euler solve from the same prior ends at (nearly) the same point
    x_T = plain.prior(torch.randn(64, 2, generator=torch.Generator().manual_seed(0))).double()
    solver = make_solver("euler")
    with torch.no_grad():
        a = solver.sample(plain, x_T, METHODS.create("edm").bind(s1, 400).discretize(x_T))
        b = solver.sample(shifted, x_T, METHODS.create("edm").bind(s3, 400).discretize(x_T))
    assert (a - b).abs().max() < 1e-3
    digits = make_model({"name": "digits", "time": {"name": "flow", "shift": 2.0}})
    assert digits.schedule.shift == 2.0
    with pytest.raises(UserError, match="shift"):
        make_model({"name": "digits", "time": {"name": "flow", "shift": 0}})
