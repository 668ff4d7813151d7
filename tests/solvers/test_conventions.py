"""The declared conventions of `bench/solvers/base.py`: `final_step` and `lower_order_final`.

* `final_step: zero` is the step to sigma = 0 of k-diffusion's samplers: Heun becomes EDM's sampler
  (Euler last step, 2N - 1 NFE) and DPM-Solver++(2M) with `lower_order_final: k-diffusion`
  becomes k-diffusion's `sample_dpmpp_2m` on the sigmas t_0 .. t_{N-1}, 0 (both written out here
  from their published update rules); `denoise` adds diff-sampler's `denoise_to_zero` evaluation.
* `lower_order_final`: the per-step orders of each named rule, and the samples they imply.
"""
from __future__ import annotations

import pytest
import torch

from bench.discretization import Discretization
from bench.errors import UserError
from bench.schedules import VE
from bench.solvers import make_solver
from bench.solvers.base import lowered_order
from bench.solvers.dpmpp import REFERENCE_RULES as DPMPP_RULES
from bench.solvers.unipc import REFERENCE_RULES as UNIPC_RULES

from .test_solvers import Counting, Mixture, edm_grid, prior

F64 = torch.float64


@pytest.fixture
def case():
    model = Mixture(VE())
    return model, prior(model, n=4), edm_grid(model.schedule, 5)


def test_final_step_zero_heun_is_edm(case):
    model, x_T, t = case
    counting = Counting(model)
    out = make_solver({"name": "heun", "final_step": "zero"}).sample(counting, x_T, Discretization(t[None]))
    assert counting.calls == 2 * 5 - 1
    sigmas = torch.cat([t[:-1], t.new_zeros(1)])
    x = x_T
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):  # EDM Algorithm 1 without churn
        d = (x - model(x, s[None])) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            x_next = x + (s_next - s) * (d + (x_next - model(x_next, s_next[None])) / s_next) / 2
        x = x_next
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_final_step_zero_dpmpp_2m_is_k_diffusion(case):
    model, x_T, t = case
    spec = {"name": "dpmpp-2m", "final_step": "zero", "lower_order_final": "k-diffusion"}
    out = make_solver(spec).sample(model, x_T, Discretization(t[None]))
    sigmas = torch.cat([t[:-1], t.new_zeros(1)])
    x, old = x_T, None
    for i in range(len(sigmas) - 1):  # sample_dpmpp_2m's update
        denoised = model(x, sigmas[i][None])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam, lam_next = -sigmas[i].log(), -sigmas[i + 1].log()
            h = lam_next - lam
            if old is None:
                x = sigmas[i + 1] / sigmas[i] * x - torch.expm1(-h) * denoised
            else:
                r = (lam - (-sigmas[i - 1].log())) / h
                x = sigmas[i + 1] / sigmas[i] * x - torch.expm1(-h) * ((1 + 1 / (2 * r)) * denoised - old / (2 * r))
        old = denoised
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["euler", "ipndm", "dpmpp-3m", "unipc-bh2"])
def test_final_step_denoise_and_zero(case, name):
    model, x_T, t = case
    disc = Discretization(t[None])
    traj = make_solver(name).trajectory(model, x_T, disc)
    denoised = make_solver({"name": name, "final_step": "denoise"}).trajectory(model, x_T, disc)
    assert len(denoised) == len(traj) + 1
    torch.testing.assert_close(denoised[-1], model(traj[-1], t[-1:]), rtol=0, atol=0)
    zero = make_solver({"name": name, "final_step": "zero"}).trajectory(model, x_T, disc)
    if name != "unipc-bh2":  # UniPC's zero step takes its last corrector evaluation (at the predicted point)
        torch.testing.assert_close(zero[-1], model(zero[-2], t[-2:-1]), rtol=1e-12, atol=1e-12)


# per-step orders of a 3rd-order multistep solver under each rule, for N = 2, 5, 12, 16
ORDERS = {
    "dpm-solver": {2: [1, 1], 5: [1, 2, 3, 2, 1], 12: [1, 2] + [3] * 10, 16: [1, 2] + [3] * 14},
    "diffusers": {2: [1, 1], 5: [1, 2, 3, 2, 1], 12: [1, 2] + [3] * 8 + [2, 1], 16: [1, 2] + [3] * 14},
    "k-diffusion": {2: [1, 2], 5: [1, 2, 3, 3, 3], 12: [1, 2] + [3] * 10, 16: [1, 2] + [3] * 14},
    "diff-sampler": {2: [1, 2], 5: [1, 2, 3, 2, 1], 12: [1, 2] + [3] * 8 + [2, 1], 16: [1, 2] + [3] * 12 + [2, 1]},
}


@pytest.mark.parametrize("rule", list(ORDERS))
def test_lower_order_final_rules(rule):
    for steps, expected in ORDERS[rule].items():
        assert [lowered_order(3, n, steps, DPMPP_RULES[rule]) for n in range(steps)] == expected, steps
    if rule in UNIPC_RULES:
        assert UNIPC_RULES[rule] == DPMPP_RULES[rule] or rule == "diffusers"


def test_lower_order_final_values_and_samples(case):
    model, x_T, _ = case
    for steps in (5, 12):
        disc = Discretization(edm_grid(model.schedule, steps)[None])
        run = lambda **p: make_solver({"name": "dpmpp-3m", **p}).sample(model, x_T, disc)  # noqa: E731
        default = run()
        assert torch.equal(default, run(lower_order_final="dpm-solver"))
        assert torch.equal(run(lower_order_final=False), run(lower_order_final="k-diffusion"))
        assert torch.equal(run(lower_order_final="diffusers"), run(lower_order_final_below=15))
        assert torch.equal(default, run(lower_order_final="diffusers")) == (steps < 10)
        assert torch.equal(run(lower_order_final="diff-sampler"), run(lower_order_final_below=None))
    assert make_solver({"name": "unipc-bh1", "lower_order_final": "uni-pc"}).order == 2
    assert make_solver({"name": "unipc-bh1", "lower_order_final": False}).order == 4


@pytest.mark.parametrize("spec,message", [
    ({"name": "euler", "final_step": "sigma0"}, "final_step must be one of t_min, denoise, zero"),
    ({"name": "unipc-bh1", "lower_order_final": "k-diffusion"}, "lower_order_final must be one of"),
    ({"name": "dpmpp-2m", "lower_order_final_below": 0}, "lower_order_final_below must be >= 1"),
    ({"name": "ipndm-v", "variant": "paper"}, "variant must be one of diff-sampler, exact"),
])
def test_bad_conventions_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        make_solver(spec)
