"""Learned schedules: LD3 (+ ld3-hard), INDIS (+ god) and the oracle. Tiny budgets, the 2D toy, l2 only."""
from __future__ import annotations

import pytest
import torch

from bench.discretization import FitContext
from bench.errors import UserError
from bench.models import make_model
from bench.registry import METHODS
from bench.schedules import VE, FlowOT, make_schedule
from bench.solvers import make_solver
from bench.teacher import TeacherSet
from bench.methods._learned import losses as learned_losses
from bench.methods._learned.init import heuristic_timesteps
from bench.methods._learned.losses import l2_loss, loss_for_model, make_loss
from bench.methods._learned.time_map import TimeMap
from bench.methods.ld3 import project_to_ball
from tests.helpers import fitted_method


# ------------------------------------------------------------------------------------------------
# The cumulative-softmax map.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,space", [(FlowOT(), "t"), (VE(), "lambda"), (VE(), "t"),
                                            (make_schedule("vp-linear"), "auto")])
def test_softmax_map_is_monotone_with_exact_endpoints(schedule, space):
    tmap = TimeMap(schedule, space)
    logits = torch.randn(64, 7, generator=torch.Generator().manual_seed(0)) * 4
    t = tmap.times(logits)
    assert t.shape == (64, 8) and t.dtype == torch.float64
    assert bool((t[:, 1:] < t[:, :-1]).all())
    assert bool((t[:, 0] == schedule.t_max).all()) and bool((t[:, -1] == schedule.t_min).all())


def test_softmax_map_inverts_a_heuristic_and_is_differentiable():
    schedule = VE()
    tmap = TimeMap(schedule, "auto")
    assert tmap.space == "lambda" and TimeMap(FlowOT(), "auto").space == "t"
    t = torch.tensor([80.0, 10.0, 1.0, 0.1, 0.002], dtype=torch.float64)
    logits = tmap.logits_of(t).requires_grad_(True)
    back = tmap.times(logits)[0]
    torch.testing.assert_close(back, t, rtol=1e-12, atol=0)
    back[1:-1].sum().backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all()) and logits.grad.abs().sum() > 0


def test_eval_times_stay_inside_and_between_neighbours():
    tmap = TimeMap(FlowOT(), "t")
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(32, 5, generator=gen)
    u = tmap.progress(logits)
    t = tmap.time_at(u)
    # LD3: any xi_c, clamped to half the smaller neighbouring gap, zero at the first step.
    t_eval = tmap.ld3_eval_times(u, torch.randn(32, 5, generator=gen) * 10, 0.5)
    assert bool((t_eval[:, 0] == t[:, 0]).all())
    assert bool((t_eval[:, 1:] < t[:, :-2]).all()) and bool((t_eval[:, 1:] > t[:, 2:]).all())
    # INDIS: relative shifts of at most 5% of the step, never above t_max.
    dtau = 0.05 * torch.tanh(torch.randn(32, 5, generator=gen) * 5)
    t_eval = tmap.relative_eval_times(u, dtau)
    assert bool((t_eval <= FlowOT().t_max).all()) and bool((t_eval > FlowOT().t_min).all())
    gaps = t[:, :-1] - t[:, 1:]  # flow time is the map's coordinate here, so the shift is <= 5% of the step
    assert bool(((t_eval - t[:, :-1]).abs() <= 0.05 * (1 + 1e-6) * gaps).all())


# ------------------------------------------------------------------------------------------------
# LD3's soft teacher.
# ------------------------------------------------------------------------------------------------

def test_projection_keeps_latents_in_the_ball():
    gen = torch.Generator().manual_seed(2)
    center = torch.randn(16, 1, 4, 4, generator=gen)
    z = center + torch.randn(16, 1, 4, 4, generator=gen) * torch.linspace(0, 2, 16).reshape(16, 1, 1, 1)
    r = 0.3
    p = project_to_ball(z, center, r)
    dist = (p - center).reshape(16, -1).norm(dim=1)
    assert bool((dist <= r * (1 + 1e-6)).all())
    inside = (z - center).reshape(16, -1).norm(dim=1) <= r
    torch.testing.assert_close(p[inside], z[inside])  # points inside are left alone
    assert bool((project_to_ball(z, center, 0.0) == center).all())


# ------------------------------------------------------------------------------------------------
# Fitting on the toy with tiny budgets.
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy():
    model = make_model({"name": "toy2d", "time": "flow"})
    solver = make_solver("euler")
    steps = 3
    x0_solver = make_solver("euler")
    teacher_method = METHODS.create("uniform").bind(model.schedule, 40, x0_solver)
    cache = {}

    def teacher(split, n):
        if (split, n) not in cache:
            gen = torch.Generator().manual_seed({"train": 1, "val": 2, "eval": 3}[split])
            x_T = model.prior(torch.randn(n, 2, generator=gen))
            with torch.no_grad():
                x0 = x0_solver.sample(model, x_T.double(), teacher_method.discretize(x_T.double())).float()
            cache[(split, n)] = TeacherSet(list(range(n)), x_T, None, x0)
        return cache[(split, n)]

    def context(seed=0):
        return FitContext(model=model, schedule=model.schedule, solver=solver, nfe=steps, steps=steps,
                          teacher=teacher, generator=torch.Generator().manual_seed(seed), train_size=256)

    return model, solver, steps, teacher, context


def _fitted(name, toy, **params):
    model, solver, steps, teacher, _ = toy
    return fitted_method({"name": name, **params}, model, solver, teacher, steps=steps, nfe=steps, train_size=256)[0]


def _reloaded(name, toy, fitted, **params):
    model, solver, steps, _, _ = toy
    state = fitted.state_dict()
    fresh = METHODS.create(name, **params).bind(model.schedule, steps, solver, model=model)
    fresh.load_state_dict(state)
    return fresh


def _same(a, b):
    for name in ("t", "t_eval", "scale"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            assert torch.equal(va, vb), name


INDIS_TINY = {"iterations": 8, "val": 32, "val_every": 4, "batch": 16, "train": 64}


def test_indis_instance_off_gives_one_schedule_for_all(toy):
    model, *_ = toy
    method = _fitted("indis", toy, instance=False, **INDIS_TINY)
    x_T = model.prior(torch.randn(10, 2, generator=torch.Generator().manual_seed(5)))
    disc = method.discretize(x_T)
    assert disc.batch == 1 and disc.t_eval is not None and disc.scale is not None
    # `god` is the same thing under its own name.
    god = _fitted("god", toy, **INDIS_TINY)
    _same(god.discretize(x_T), disc)


def test_indis_instance_on_gives_per_sample_schedules_and_round_trips(toy):
    model, solver, *_ = toy
    method = _fitted("indis", toy, **INDIS_TINY)
    x_T = model.prior(torch.randn(10, 2, generator=torch.Generator().manual_seed(6)))
    disc = method.discretize(x_T)
    assert disc.t.shape == (10, 4) and disc.t_eval.shape == (10, 3) and disc.scale.shape == (10, 3)
    assert not torch.equal(disc.t[0], disc.t[1])
    assert bool(((disc.scale - 1).abs() <= 0.05).all())
    _same(_reloaded("indis", toy, method, **INDIS_TINY).discretize(x_T), disc)
    info = method.fit_info()
    assert info["phi_params"] == sum(p.numel() for p in method.phi.parameters()) > 0
    assert info["phi_seconds_per_sample"] > 0 and info["loss"] == "l2"
    out = solver.sample(model, x_T, disc)
    assert bool(torch.isfinite(out).all())


def test_indis_gradient_reaches_every_parameter():
    from bench.methods.indis import PriorNet

    for shape, classes, svd in [((2,), 0, True), ((1, 8, 8), 10, True), ((1, 8, 8), 10, False)]:
        torch.manual_seed(0)
        net = PriorNet(shape, classes, steps=4, n_out=3, hidden=8, class_dim=4, svd=svd,
                       init_logits=torch.zeros(4))
        x = torch.randn((5,) + shape)
        cond = torch.arange(5) % 10 if classes else None
        method = METHODS.create("indis").bind(VE(), 4)
        disc = method.disc_from_output(net(x, cond))
        (disc.t[:, 1:-1].sum() + disc.t_eval[:, 1:].sum() + disc.scale.sum()).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (shape, svd, name)


def test_indis_without_shifts_learns_timesteps_only(toy):
    model, *_ = toy
    method = _fitted("indis", toy, shifts=False, **INDIS_TINY)
    disc = method.discretize(model.prior(torch.randn(4, 2)))
    assert disc.t_eval is None and disc.scale is None and disc.t.shape == (4, 4)


def test_ld3_fits_improves_on_its_start_and_round_trips(toy):
    model, solver, steps, teacher, _ = toy
    # bound 20: r = 20 * 2 / 9 = 4.4 on the unit noise, large enough that the soft teacher moves priors
    params = {"train": 8, "val": 16, "rounds1": 1, "rounds2": 1, "batch": 4, "loss": "l2", "bound": 20.0}
    method = _fitted("ld3", toy, **params)
    info = method.fit_info()
    assert info["best_val_loss"] <= min(info["init_val_losses"].values()) + 1e-12
    assert info["radius"] == pytest.approx(20.0 * 2 / 9)
    assert info["max_prior_shift"] <= info["radius"] * (1 + 1e-5)
    x_T = model.prior(torch.randn(3, 2))
    disc = method.discretize(x_T)
    assert disc.batch == 1 and disc.t_eval is not None and disc.scale is None
    _same(_reloaded("ld3", toy, method, **params).discretize(x_T), disc)
    assert info["moved_priors"] > 0
    hard = _fitted("ld3-hard", toy, **{k: v for k, v in params.items() if k != "bound"})
    assert hard.fit_info()["radius"] == 0 and hard.fit_info()["moved_priors"] == 0


class Preempted(Exception):
    """Stands in for the job being killed right after a checkpoint."""


def _interrupted_then_resumed(name, toy, tmp_path, kill_after: int, **params):
    """Fit once with a checkpoint at every iteration, killed after `kill_after` checkpoints; then a
    fresh method in a fresh process-like context fits again from the same directory. Returns the
    resumed method and the number of optimiser steps the second attempt took."""
    model, solver, steps, _, context = toy
    first = METHODS.create(name, **params).bind(model.schedule, steps, solver, model=model)
    ctx = context()
    ctx.artifact_dir, ctx.checkpoint_seconds = tmp_path, 0.0
    saves = {"n": 0}
    save = ctx.save_checkpoint

    def save_then_die(state):
        save(state)
        saves["n"] += 1
        if saves["n"] == kill_after:
            raise Preempted

    ctx.save_checkpoint = save_then_die
    with pytest.raises(Preempted):
        first.fit(ctx)
    assert (tmp_path / "checkpoint.pt").is_file()

    second = METHODS.create(name, **params).bind(model.schedule, steps, solver, model=model)
    ctx2 = context(seed=123)  # a different generator: the checkpoint must restore the batch order itself
    ctx2.artifact_dir, ctx2.checkpoint_seconds = tmp_path, 0.0
    counted = {"steps": 0}
    optimizer_class = {"ld3": torch.optim.RMSprop, "indis": torch.optim.Adam}[name]
    original_step = optimizer_class.step

    def counting_step(self, *args, **kwargs):
        counted["steps"] += 1
        return original_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optimizer_class, "step", counting_step)
        second.fit(ctx2)
    assert ctx2.resumes == 1
    return second, counted["steps"]


@pytest.mark.parametrize("name,params,kill_after", [
    ("ld3", {"train": 8, "val": 16, "rounds1": 1, "rounds2": 2, "batch": 4, "loss": "l2", "bound": 20.0}, 3),
    ("indis", {**INDIS_TINY, "iterations": 10}, 4),
])
def test_an_interrupted_learned_fit_resumes_from_its_checkpoint(name, params, kill_after, toy, tmp_path):
    """Issue #7: the resumed fit continues where the checkpoint was taken (it takes only the
    remaining optimiser steps) and ends exactly where an uninterrupted fit ends."""
    whole = _fitted(name, toy, **params)
    resumed, steps_after_resume = _interrupted_then_resumed(name, toy, tmp_path, kill_after, **params)
    info, whole_info = resumed.fit_info(), whole.fit_info()
    assert info["resumed_at_iteration"] == kill_after and whole_info["resumed_at_iteration"] == 0
    total = info["iterations"] if name == "ld3" else params["iterations"]
    assert steps_after_resume == total - kill_after > 0
    assert info["best_val_loss"] == whole_info["best_val_loss"]
    x_T = toy[0].prior(torch.randn(5, 2, generator=torch.Generator().manual_seed(9)))
    _same(resumed.discretize(x_T), whole.discretize(x_T))


def test_checkpoint_carries_the_cost_of_earlier_attempts(tmp_path):
    class Rows:
        rows = 0

    model = Rows()
    ctx = FitContext(model=model, schedule=None, solver=None, nfe=3, steps=3, teacher=None,
                     generator=torch.Generator(), artifact_dir=tmp_path)
    model.rows = 40
    ctx.save_checkpoint({"step": 1})
    again = FitContext(model=model, schedule=None, solver=None, nfe=3, steps=3, teacher=None,
                       generator=torch.Generator(), artifact_dir=tmp_path)
    model.rows = 7  # evaluations of the new attempt before it loaded the checkpoint are not counted
    assert again.load_checkpoint() == {"step": 1}
    model.rows += 5
    assert again.resumes == 1 and again.total_nfe() == 45 and again.total_seconds() >= ctx.resumed_seconds


def test_oracle_refines_per_sample_and_never_loses_to_its_start(toy):
    model, solver, steps, teacher, _ = toy
    params = {**INDIS_TINY, "refine_iterations": 4}
    method = _fitted("oracle", toy, **params)
    assert method.uses_eval_targets
    evaluation = teacher("eval", 32)
    with torch.no_grad():  # the runner calls schedule under no_grad
        disc = method.discretize_evaluation(evaluation.x_T, None, target=evaluation.x0)
        start = method.phi(evaluation.x_T[:1] / model.schedule.prior_std())
        start_disc = method.disc_from_output(start, evaluation.x_T.dtype)
        refined = l2_loss(solver.sample(model, evaluation.x_T, disc), evaluation.x0)
        plain = l2_loss(solver.sample(model, evaluation.x_T, start_disc), evaluation.x0)
    assert disc.t.shape == (32, steps + 1)
    assert bool((refined <= plain + 1e-6).all()) and refined.mean() < plain.mean()
    with pytest.raises(UserError, match="oracle"):
        method.discretize(evaluation.x_T)
    cheap = _fitted("oracle", toy, init_fit="heuristic", refine_iterations=2, val=32)
    assert cheap.fit_info()["init"] in heuristic_timesteps(model.schedule, steps, solver, model.data_shape)
    with torch.no_grad():
        assert cheap.discretize_evaluation(evaluation.x_T, None, target=evaluation.x0).t.shape == (32, steps + 1)
    reloaded = _reloaded("oracle", toy, method, **params)
    with torch.no_grad():
        _same(reloaded.discretize_evaluation(evaluation.x_T[:8], None, target=evaluation.x0[:8]),
              method.discretize_evaluation(evaluation.x_T[:8], None, target=evaluation.x0[:8]))


# ------------------------------------------------------------------------------------------------
# User errors and the loss choice.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,params,field", [
    ("indis", {"b": 2.0}, "b"), ("indis", {"space": "sigma"}, "space"), ("ld3", {"bound": -1}, "bound"),
    ("ld3", {"loss": "l1"}, "loss"), ("god", {"iterations": 0}, "iterations"), ("ld3", {"init": "foo"}, "init"),
    ("oracle", {"refine_lr": 0}, "refine_lr"), ("god", {"instance": True}, "instance"),
    ("ld3-hard", {"bound": 0.001}, "bound"), ("indis", {"lr_net": -1}, "lr_net"), ("god", {"lr_net": 0.1}, "lr_net"),
])
def test_bad_parameters_are_user_errors(name, params, field):
    with pytest.raises(UserError, match=field):
        METHODS.create(name, **params)


def test_loss_choice():
    assert make_loss("ld3", "l2", (2,), "cpu")[1] == "l2"
    assert make_loss("ld3", "auto", (2,), "cpu")[1] == "l2"  # not an image
    assert make_loss("ld3", "auto", (4, 8, 8), "cpu")[1] == "l2"  # 4 channels: a latent, not an image
    with pytest.raises(UserError, match="loss"):
        make_loss("ld3", "lpips", (2,), "cpu")


def test_lpips_loss_of_a_latent_model_compares_decoded_images(monkeypatch):
    """Latent models: LPIPS sees decoded images (of the autoencoder's shape), l2 stays on latents."""
    from bench.models.base import Denoiser

    class Latent(Denoiser):
        data_shape = (4, 2, 2)
        image_shape = (3, 4, 4)

        def decode(self, z):
            return z[:, :3].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    seen = []
    monkeypatch.setattr(learned_losses, "_load_lpips", lambda device: lambda x, y: seen.append(x.shape) or (x - y).abs().mean((1, 2, 3)))
    loss_fn, used = loss_for_model("ld3", "auto", Latent(), "cpu")
    z, w = torch.randn(5, 4, 2, 2), torch.randn(5, 4, 2, 2)
    assert used == "lpips (decoded)" and loss_fn(z, w).shape == (5,) and seen == [(5, 3, 4, 4)]
    assert loss_for_model("ld3", "l2", Latent(), "cpu")[1] == "l2"
    plain = make_model({"name": "digits"})  # identity decode: LPIPS on the samples themselves
    assert loss_for_model("ld3", "auto", plain, "cpu")[1] == "lpips"


def test_heuristic_candidates_cover_the_baselines():
    model = make_model({"name": "toy2d", "time": "flow"})
    names = heuristic_timesteps(model.schedule, 4, make_solver("euler"), model.data_shape)
    assert {"uniform", "logsnr", "polynomial", "edm"} <= set(names)


# ------------------------------------------------------------------------------------------------
# Through the harness: fit, cache on disk, reload, same rows.
# ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_learned_methods_through_the_runner(tmp_path):
    import json

    from bench.grid import parse_grid
    from bench.launch import run_local

    grid = parse_grid({
        "name": "learned", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [3],
        "methods": ["uniform", {"name": "god", "iterations": 40}, {"name": "indis", "iterations": 40},
                    {"name": "oracle", "iterations": 40, "refine_iterations": 3}, {"name": "ld3", "rounds2": 1}],
        "metrics": ["mse"], "teacher": {"solver": "euler", "steps": 20, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 256, "eval": 128, "batch": 128},
    })
    run_local(grid, tmp_path, quiet=True)
    rows_dir = tmp_path / "learned" / "rows"
    first = {p.name: json.loads(p.read_text()) for p in rows_dir.glob("*.json")}
    assert len(first) == 5
    by_method = {r["method"]["name"]: r for r in first.values()}
    assert by_method["oracle"]["uses_eval_targets"] and by_method["oracle"]["schedule_nfe"] == 4 * 3
    assert not by_method["indis"]["uses_eval_targets"] and by_method["indis"]["schedule"] is None
    assert by_method["god"]["schedule"] is not None
    for p in rows_dir.glob("*.json"):
        p.unlink()
    run_local(grid, tmp_path, quiet=True)  # the fits now come from the cache on disk
    for name, row in first.items():
        again = json.loads((rows_dir / name).read_text())
        assert again["metrics"] == row["metrics"], row["method_label"]
        if row["fit_key"]:
            assert again["fit"]["cached"], row["method_label"]
