"""The searched schedules: DMN (bench/methods/dmn.py), GITS (bench/methods/gits.py), OSS (bench/methods/oss.py) and their
shared machinery (bench/methods/search/).

* The two dynamic programs agree with brute-force enumeration of all interior subsets on small grids
  (12 nodes, 1..4 steps). OSS's DP keeps one state per (step count, node); it is exact when a state
  closer to the teacher always leads to a closer state, which the scalar test dynamics e' = c e + d
  (c, d >= 0) satisfy.
* OSS's student steps (the solvers' own `step`, resumed at any node) reproduce each solver's own
  trajectory (multistep histories, Heun's corrector, UniPC's corrector, AFS) along a fixed path, and
  share the evaluation at the node between the candidates; GITS's jumps are one Euler step.
* DMN: constraints, lower objective than its initialisation, schedule invariance, no network use,
  regression values for EDM's VE schedule.
* state_dict round trips, per-instance OSS, parameter errors, one end-to-end run.
Network-using checks run on a small exact Gaussian-mixture denoiser (cheap) unless stated.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

from bench.discretization import Discretization, FitContext
from bench.errors import UserError
from bench.registry import METHODS
from bench.schedules import VE, FlowOT, make_schedule
from bench.solvers import make_solver
from bench.solvers.base import ve_view
from bench.teacher import TeacherSet
from bench.methods.search.gits_dp import gits_dp, gits_path_cost
from bench.methods.search.oss_dp import median_path, oss_dp
from bench.methods.search.student_step import StudentSteps, one_step_jumps
from bench.methods.search.teacher_path import teacher_trajectory
from bench.methods.search.timestep_grid import timestep_grid
from tests.plugins.search_brute_force import gits_brute_force, oss_brute_force
from bench.methods.dmn import DMN, dmn_gradient, dmn_objective, optimize_lambdas
from tests.helpers import fitted_method

F64 = torch.float64


class Mixture(torch.nn.Module):
    """Exact denoiser of an isotropic 2D Gaussian mixture, in any schedule's coordinates."""

    num_classes = 0
    data_shape = (2,)

    def __init__(self, schedule, c=0.3):
        super().__init__()
        self.schedule = schedule
        self.means = torch.tensor([[1.0, 0.5], [-0.8, 0.2], [0.1, -1.0]], dtype=F64)
        self.c = c

    def forward(self, x, t, cond=None):
        alpha, s = ve_view(self.schedule, t, x.ndim)
        y = x / alpha
        var = self.c**2 + s**2  # [B, 1]
        logits = -((y[:, None, :] - self.means.to(y)) ** 2).sum(-1) / (2 * var)
        w = torch.softmax(logits, dim=-1)  # [B, K]
        mean = w @ self.means.to(y)
        return mean + self.c**2 / var * (y - mean)


def context(model, solver, steps, x_T, cond=None, teacher=None):
    def teacher_fn(split, n):
        if teacher == "raise":
            raise AssertionError("this method must not ask for a teacher set")
        return TeacherSet(list(range(n)), x_T[:n], None if cond is None else cond[:n], x_T[:n])

    return FitContext(model=model, schedule=model.schedule if model is not None else None, solver=solver,
                      nfe=steps, steps=steps, teacher=teacher_fn, generator=torch.Generator().manual_seed(0))


def priors(n, schedule, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g, dtype=F64) * schedule.prior_std()


# ---------------------------------------------------------------------------------------------
# the dynamic programs against brute force


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
@pytest.mark.parametrize("coeff", [1.15, 0.9])
def test_gits_dp_matches_brute_force(steps, coeff):
    rng = np.random.default_rng(steps)
    for _ in range(5):
        cost = rng.normal(size=(12, 12))  # negative entries too, as the 'dev' metric gives
        path = gits_dp(cost, steps, coeff)
        assert path == gits_brute_force(cost, steps, coeff)
        assert path[0] == 0 and path[-1] == 11 and len(path) == steps + 1
        assert all(a < b for a, b in zip(path[:-1], path[1:]))
        assert gits_path_cost(cost, path, coeff) <= gits_path_cost(cost, list(range(steps)) + [11], coeff)


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_oss_dp_matches_brute_force(steps):
    """Scalar errors e >= 0 with e_j = c[i, j] e_i + d[i, j], c, d >= 0 (per-sample initial errors)."""
    g = torch.Generator().manual_seed(steps)
    n = 12
    c = torch.rand(n, n, generator=g, dtype=F64) * 1.5
    d = torch.rand(n, n, generator=g, dtype=F64)
    e0 = torch.tensor([0.0, 0.3, 2.0, 10.0], dtype=F64)

    def advance(state, k, i, js):
        return {"e": c[i, js, None] * state["e"][None] + d[i, js, None]}

    def cost(cand, k, js):
        return cand["e"]

    paths = oss_dp(n, steps, {"e": e0}, advance, cost)
    brute = oss_brute_force(n, steps, {"e": e0}, lambda s, i, j: {"e": c[i, j] * s["e"] + d[i, j]},
                            lambda s: s["e"])
    assert torch.equal(paths, brute)
    assert (paths[:, 0] == 0).all() and (paths[:, -1] == n - 1).all()


def test_median_path_is_strictly_increasing():
    g = torch.Generator().manual_seed(0)
    for count in (1, 4, 7):
        paths = torch.stack([torch.cat([torch.tensor([0]), torch.randperm(18, generator=g)[:3].sort().values + 1,
                                        torch.tensor([19])]) for _ in range(count)])
        med = median_path(paths)
        assert med[0] == 0 and med[-1] == 19 and bool((med[1:] > med[:-1]).all())
    assert median_path(torch.tensor([[0, 2, 9], [0, 5, 9]])).tolist() == [0, 3, 9]
    assert median_path(torch.tensor([[0, 2, 9], [0, 5, 9], [0, 6, 9]])).tolist() == [0, 5, 9]


# ---------------------------------------------------------------------------------------------
# OSS's student steps and GITS's jumps


@pytest.mark.parametrize("spec", ["euler", "ipndm", "ipndm-v", "dpmpp-3m", "unipc-bh2", "heun", "dpm2",
                                  {"name": "ipndm", "afs": True}, {"name": "unipc-bh1", "afs": True},
                                  {"name": "dpmpp-2m", "final_step": "zero"}])
def test_student_steps_reproduce_the_solver_along_a_path(spec):
    schedule = FlowOT()
    model = Mixture(schedule)
    solver = make_solver(spec)
    t_nodes = timestep_grid(schedule, "edm", 11)
    path = [0, 2, 5, 7, 11]
    x_T = priors(3, schedule)
    direct = solver.trajectory(model, x_T, Discretization(t_nodes[path][None]))
    student = StudentSteps(solver, model, t_nodes, len(path) - 1, x_T, teacher=torch.zeros(12, 3, 2, dtype=F64))
    state = student.init_state()
    for k, (i, j) in enumerate(zip(path[:-1], path[1:])):
        js = torch.arange(j, min(j + 2, 12))  # the path's node and a decoy candidate
        cand = student.advance(state, k, i, js)
        torch.testing.assert_close(cand["x"][0], direct[k + 1], rtol=1e-12, atol=1e-12)
        assert cand["path"][0].tolist() == [path[:k + 2]] * 3
        state = {name: v[0] for name, v in cand.items()}
    nfe = solver.nfe(len(path) - 1)
    if solver.evals_per_step == 1 and not solver.name.startswith("unipc"):
        # the evaluation at the path's node is made once per sample, shared by both candidates
        assert student.rows == 3 * nfe
    else:  # Heun's / DPM-Solver-2's second and UniPC's corrector evaluation depend on the candidate
        assert student.rows > 3 * nfe


@pytest.mark.parametrize("spec, extra", [("euler", 0), ("heun", 0), ("unipc-bh2", 3), ({"name": "euler", "afs": True}, 1)])
def test_teacher_trajectory_reuses_the_teachers_own_evaluations(spec, extra):
    """x0 at node i is the teacher's evaluation at its state x*_i where it made one; UniPC evaluates at its
    predicted points (so all but node 0 cost one more row each), AFS's first evaluation is analytic."""
    schedule = FlowOT()
    model = Mixture(schedule)
    solver = make_solver(spec)
    t_nodes = timestep_grid(schedule, "edm", 4)
    x_T = priors(5, schedule)
    traj, x0, rows = teacher_trajectory(solver, model, x_T, t_nodes)
    direct = solver.trajectory(model, x_T, Discretization(t_nodes[None]))
    torch.testing.assert_close(traj, torch.stack(direct), rtol=0, atol=0)
    for i in range(4):
        torch.testing.assert_close(x0[i], model(traj[i], t_nodes[i].expand(5)), rtol=1e-14, atol=1e-14)
    assert rows == 5 * (solver.nfe(4) + extra)


def test_gits_jump_is_one_euler_step_for_single_evaluation_solvers():
    """y_j = y_i + (s_j - s_i) eps_i in the VE view (y = x / alpha, s = sigma / alpha), from the given x0_i."""
    schedule = VE()
    model = Mixture(schedule)
    x = priors(4, schedule) / 80 * 3.0
    t_i, t_js = torch.tensor(3.0, dtype=F64), torch.tensor([2.0, 0.5, 0.01], dtype=F64)
    x0 = model(x, t_i.expand(4))
    eps = (x - x0) / 3.0  # VE: alpha = 1, s = sigma = t
    expected = x[None] + (t_js - 3.0)[:, None, None] * eps[None]
    for spec in ("euler", "ipndm", "dpmpp-3m", "unipc-bh2"):
        out, rows = one_step_jumps(make_solver(spec), model, x, x0, t_i, t_js)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)
        assert rows == 0  # the given first prediction is all these solvers need
    _, rows = one_step_jumps(make_solver("heun"), model, x, x0, t_i, t_js)
    assert rows == 3 * 4


# ---------------------------------------------------------------------------------------------
# DMN


@pytest.mark.parametrize("schedule", [VE(), FlowOT(), make_schedule("vp-linear"), make_schedule("vp-scaled-linear")],
                         ids=["ve", "flow", "vp-linear", "vp-scaled-linear"])
@pytest.mark.parametrize("steps", [2, 3, 6])
def test_dmn_constraints_and_objective(schedule, steps):
    method = DMN().bind(schedule, steps, make_solver("dpmpp-3m"))
    method.fit(context(None, None, steps, None, teacher="raise"))
    t = method.discretize(torch.zeros(1, 2, dtype=F64)).t[0]
    assert t[0] == schedule.t_max and t[-1] == schedule.t_min and len(t) == steps + 1
    assert bool((t[1:] < t[:-1]).all())
    lam = method.lambdas
    assert bool((lam[1:] > lam[:-1]).all())
    assert dmn_objective(lam) < dmn_objective(method.initial_lambdas)


def test_dmn_depends_on_the_log_snr_range_only():
    """VE(0.002, 80) and FlowOT(0.002/1.002, 80/81) cover the same log-SNR range: same lambdas."""
    a = DMN().bind(VE(), 5)
    b = DMN().bind(FlowOT(0.002 / 1.002, 80 / 81), 5)
    a.fit(None)
    b.fit(None)
    torch.testing.assert_close(a.lambdas, b.lambdas, rtol=1e-6, atol=1e-6)


def test_dmn_gradient_matches_finite_differences():
    lam = torch.tensor([-4.38, -1.9, -0.7, 0.2, 1.1, 2.6, 6.21], dtype=F64)
    grad = dmn_gradient(lam)
    for k in range(1, 6):
        e = np.zeros(7)
        e[k] = 1e-6
        fd = (dmn_objective(lam.numpy() + e) - dmn_objective(lam.numpy() - e)) / 2e-6
        assert grad[k] == pytest.approx(fd, rel=1e-5)


# DMN for EDM's VE(0.002, 80), DPM-Solver++(3M) (steps = NFE), order 3, logSNR-uniform initialisation.
DMN_VE_REGRESSION = {
    4: [80, 3.37741, 1.02316, 0.174372, 0.002],
    5: [80, 4.25811, 1.5883, 0.610735, 0.142967, 0.002],
    6: [80, 6.20245, 2.03808, 1.05843, 0.437486, 0.117386, 0.002],
    7: [80, 9.26492, 3.36189, 1.85891, 0.723378, 0.29738, 0.0917556, 0.002],
    8: [80, 13.2623, 5.36964, 3.37974, 1.24819, 0.508363, 0.215086, 0.0734848, 0.002],
    9: [80, 17.4575, 8.53585, 6.10941, 2.21522, 0.897315, 0.358304, 0.172711, 0.0624571, 0.002],
    10: [80, 21.4902, 12.0146, 9.36496, 3.77306, 1.64264, 0.677993, 0.289896, 0.144442, 0.054851, 0.002],
}


@pytest.mark.parametrize("nfe", sorted(DMN_VE_REGRESSION))
def test_dmn_ve_regression(nfe):
    solver = make_solver("dpmpp-3m")
    method = DMN().bind(VE(), solver.steps_for_nfe(nfe), solver)
    method.fit(context(None, solver, nfe, None, teacher="raise"))
    np.testing.assert_allclose(method.t.numpy(), DMN_VE_REGRESSION[nfe], rtol=2e-4)


def test_optimize_lambdas_keeps_endpoints_and_improves():
    lam0 = torch.linspace(-3.0, 5.0, 9, dtype=F64)
    lam, res = optimize_lambdas(lam0, order=2)
    assert lam[0] == -3.0 and lam[-1] == 5.0
    assert dmn_objective(lam, 2) < dmn_objective(lam0, 2)
    assert optimize_lambdas(torch.tensor([-1.0, 2.0], dtype=F64))[1] is None  # one step: nothing to do


# ---------------------------------------------------------------------------------------------
# GITS and OSS fits, state round trips, per-instance OSS


def fitted(name, steps=3, solver="euler", **params):
    model = Mixture(FlowOT())
    x_T = priors(16, model.schedule)
    return fitted_method({"name": name, **params}, model, make_solver(solver),
                         lambda split, n: TeacherSet(list(range(n)), x_T[:n], None, x_T[:n]), steps=steps, nfe=steps)


@pytest.mark.parametrize("name, params", [
    ("dmn", {}),
    ("gits", {"teacher_steps": 12, "warmup": 16}),
    ("gits", {"teacher_steps": 12, "warmup": 16, "metric": "l2", "jump": "solver", "timestep_grid": "uniform"}),
    ("oss", {"teacher_steps": 12, "search_batch": 6}),
    ("oss", {"teacher_steps": 12, "search_batch": 6, "timestep_grid": "logsnr"}),
])
def test_state_dict_round_trip(name, params, tmp_path):
    method, ctx = fitted(name, **params)
    x = torch.zeros(5, 2, dtype=torch.float32)
    disc = method.discretize(x)
    assert disc.t.shape == (1, 4) and disc.t.dtype == torch.float32
    schedule = method.noise_schedule
    assert float(disc.t[0, 0]) == pytest.approx(schedule.t_max) and float(disc.t[0, -1]) == pytest.approx(schedule.t_min)
    torch.save(method.state_dict(), tmp_path / "state.pt")
    fresh = METHODS.create(name, **params).bind(schedule, 3, method.solver, method.model)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    assert torch.equal(fresh.discretize(x).t, disc.t)
    if name != "dmn":
        assert ctx.fit_nfe > 0
        # the schedule's nodes come from the fine grid
        grid = params.get("timestep_grid", "edm" if name == "gits" else "uniform")
        nodes = timestep_grid(schedule, grid, 12)
        for t in method.t:
            assert torch.isclose(nodes, t.to(F64)).any()


def test_afs_students():
    """With AFS, GITS's jumps from node 0 use the analytic prediction; OSS's replay skips the call."""
    gits, ctx = fitted("gits", solver={"name": "ipndm", "afs": True}, teacher_steps=12, warmup=16)
    plain, _ = fitted("gits", solver="ipndm", teacher_steps=12, warmup=16)
    assert not torch.equal(gits.cost[0], plain.cost[0]) and torch.equal(gits.cost[1:], plain.cost[1:])
    oss, ctx = fitted("oss", solver={"name": "heun", "afs": True}, teacher_steps=12, search_batch=4)
    assert bool((oss.t[1:] < oss.t[:-1]).all())


def test_gits_counts_teacher_evaluations_and_uses_the_warmup_priors():
    method, ctx = fitted("gits", teacher_steps=12, warmup=16)
    assert ctx.fit_nfe == 16 * 12  # an iPNDM teacher's evaluations are reused for the jumps
    assert method.cost.shape == (13, 13)
    assert method.path[0] == 0 and method.path[-1] == 12


def test_gits_coeff_list_keeps_the_path_closest_to_the_teacher_on_the_warmup():
    coeffs = [0.5, 1.0, 2.0]
    method, ctx = fitted("gits", teacher_steps=12, warmup=16, coeff=coeffs)
    paths = {c: gits_dp(method.cost.numpy(), 3, c) for c in coeffs}
    distinct = {tuple(p) for p in paths.values()}
    assert len(distinct) >= 2  # this fixture's weights disagree, so the choice matters
    # each candidate's error, recomputed by hand: Euler student from the warm-up priors along its path
    schedule = method.noise_schedule
    nodes = timestep_grid(schedule, "edm", 12)
    x_T = priors(16, schedule)
    teacher = make_solver("ipndm").sample(method.model, x_T, Discretization(nodes[None]))
    for c in coeffs:
        x = make_solver("euler").sample(method.model, x_T, Discretization(nodes[paths[c]][None]))
        assert method.selection[c] == pytest.approx(float((x - teacher).norm(dim=1).mean()), rel=1e-9)
    assert method.coeff == min(coeffs, key=method.selection.__getitem__)
    assert method.path == paths[method.coeff]
    assert method.fit_info() == {"coeff": method.coeff, "warmup_endpoint_l2": method.selection[method.coeff]}
    # the teacher's evaluations plus one Euler solve (3 evaluations) per distinct path and sample
    assert ctx.fit_nfe == 16 * 12 + 16 * 3 * len(distinct)


def test_gits_single_coeff_needs_no_selection():
    scalar, ctx = fitted("gits", teacher_steps=12, warmup=16, coeff=1.0)
    listed, ctx_listed = fitted("gits", teacher_steps=12, warmup=16, coeff=[1.0])
    assert listed.path == scalar.path and ctx_listed.fit_nfe == ctx.fit_nfe == 16 * 12
    assert scalar.fit_info() == {} and scalar.coeff == 1.0
    sweep = METHODS.create("gits", coeff="sweep")
    assert sweep.coeffs == (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)


def test_oss_ave_is_the_median_of_per_sample_paths():
    method, _ = fitted("oss", teacher_steps=12, search_batch=6)
    assert method.paths.shape == (6, 4)
    nodes = timestep_grid(method.noise_schedule, "uniform", 12)
    torch.testing.assert_close(method.t, nodes[median_path(method.paths, method.params.median)])


def test_oss_per_instance_schedules():
    schedule = FlowOT()

    class Counting(Mixture):
        calls, rows = 0, 0

        def forward(self, x, t, cond=None):
            Counting.calls += 1
            Counting.rows += x.shape[0]
            return super().forward(x, t, cond)

    model = Counting(schedule)
    solver = make_solver("ipndm")
    method = METHODS.create("oss", teacher_steps=12, instance=True).bind(schedule, 3, solver, model)
    method.fit(context(model, solver, 3, priors(4, schedule), teacher="raise"))  # a no-op
    x = priors(5, schedule).float()
    disc = method.discretize(x)
    assert disc.t.shape == (5, 4) and disc.t.dtype == torch.float32
    assert bool((disc.t[:, 1:] < disc.t[:, :-1]).all())
    assert Counting.rows == 5 * Counting.calls  # every call has the batch's rows: calls = per-sample NFE
    # the teacher (12) plus one evaluation per reachable node and step
    assert 12 < Counting.calls <= 12 + 3 * 12
    # per-sample schedules beat (or tie) the global median schedule on their own samples
    teacher = make_solver("euler").sample(model, x.double(), Discretization(timestep_grid(schedule, "uniform", 12)[None]))
    own = solver.sample(model, x.double(), disc.to(dtype=F64))
    assert ((own - teacher) ** 2).sum(-1).mean() < ((x.double() - teacher) ** 2).sum(-1).mean()


def test_teacher_steps_below_student_steps_is_a_user_error():
    with pytest.raises(UserError, match="teacher_steps"):
        fitted("gits", steps=5, teacher_steps=4, warmup=4)
    with pytest.raises(UserError, match="teacher_steps"):
        fitted("oss", steps=5, teacher_steps=4, search_batch=2)


@pytest.mark.parametrize("name, params, field", [
    ("gits", {"metric": "l3"}, "metric"),
    ("gits", {"coeff": 0}, "coeff"),
    ("gits", {"coeff": []}, "coeff"),
    ("gits", {"coeff": [1.0, -1]}, "coeff"),
    ("gits", {"coeff": "all"}, "coeff"),
    ("gits", {"timestep_grid": "gits"}, "timestep_grid"),
    ("gits", {"timestep_grid": "nope"}, "timestep_grid"),
    ("gits", {"jump": "heun"}, "jump"),
    ("gits", {"space": "vp"}, "space"),
    ("gits", {"warmup": 0}, "warmup"),
    ("gits", {"teacher_solver": "rk45"}, "teacher_solver"),
    ("oss", {"instance": "yes"}, "instance"),
    ("oss", {"search_batch": 0}, "search_batch"),
    ("oss", {"teacher_steps": 1.5}, "teacher_steps"),
    ("dmn", {"order": 4}, "order"),
    ("dmn", {"init": "dmn"}, "init"),
    ("dmn", {"bogus": 1}, "bogus"),
])
def test_parameter_errors_name_the_field(name, params, field):
    with pytest.raises(UserError, match=field):
        METHODS.create(name, **params)


def test_end_to_end_rows(tmp_path):
    """The runner fits, caches and samples all three on toy2d (tiny sizes)."""
    from bench.grid import parse_grid
    from bench.launch import run_local
    from bench.report import load_rows

    grid = parse_grid({
        "name": "searched", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [3],
        "methods": ["dmn", {"name": "gits", "teacher_steps": 10, "warmup": 8},
                    {"name": "oss", "teacher_steps": 10, "search_batch": 4},
                    {"name": "oss", "teacher_steps": 10, "instance": True}],
        "metrics": ["mse"], "teacher": {"solver": "euler", "steps": 10, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 8, "eval": 16, "batch": 16},
    })
    run_local(grid, root=tmp_path, quiet=True)
    df = load_rows(tmp_path)
    assert set(df["method"]) == {"dmn", "gits(teacher_steps=10, warmup=8)", "oss(search_batch=4, teacher_steps=10)",
                                 "oss(instance=True, teacher_steps=10)"}
    assert np.isfinite(df["value"]).all()


def test_search_cost_benchmark_runs(capsys):
    """benchmarks/bench_search_cost.py prints a GITS fit's wall time beside its network time (timing is
    the benchmark's business; this only keeps the script working)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_search_cost.py"
    spec = importlib.util.spec_from_file_location("bench_search_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--repeats", "1", "--gits-only"]) == 0
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("gits")][0]
    assert int(line.split()[4]) == 60 and int(line.split()[5]) == 60 * 256  # 60 iPNDM teacher calls of 256 rows


def test_candidate_denoise_shares_the_start_evaluation_with_global_t_eval_and_scale():
    """At the step's starting state the candidates share one evaluation; a one-row t_eval / scale
    applies to it as to every row."""
    from bench.solvers.base import predict
    from bench.methods.search.student_step import CandidateDenoise, candidate_rows

    schedule = VE()
    model = Mixture(schedule)
    x = priors(3, schedule) / 80 * 2.0
    start = candidate_rows(x, 4)
    t, t_eval, scale = (torch.tensor([v], dtype=F64) for v in (2.0, 1.5, 1.1))
    denoise = CandidateDenoise(model, None, start, 3, 4)
    x0, eps = denoise(start, t, t_eval, scale)
    expected = predict(model, start, t, t_eval, scale)
    torch.testing.assert_close(x0, expected[0], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(eps, expected[1], rtol=1e-14, atol=1e-14)
    assert denoise.rows == 3


class _Guided:
    """A denoiser that declares two network evaluations per call (as classifier-free guidance does)."""

    evals_per_call = 2

    def __init__(self, model):
        self.model, self.schedule = model, model.schedule

    def __call__(self, x, t, cond=None):
        return self.model(x, t, cond)


@pytest.mark.parametrize("name, params", [("gits", {"teacher_steps": 12, "warmup": 16}),
                                          ("oss", {"teacher_steps": 12, "search_batch": 6}),
                                          ("oss", {"teacher_steps": 12, "search_batch": 6, "variant": "code"})])
def test_search_cost_counts_network_evaluations_per_call(name, params):
    """The searches count with bench.counting's rule: rows x evals_per_call (a guided row costs two)."""
    model = Mixture(FlowOT())
    x_T = priors(16, model.schedule)
    teacher = lambda split, n: TeacherSet(list(range(n)), x_T[:n], None, x_T[:n])  # noqa: E731
    costs = []
    for net in (model, _Guided(model)):
        method, ctx = fitted_method({"name": name, **params}, net, make_solver("euler"), teacher, steps=3, nfe=3)
        costs.append(ctx.fit_nfe)
        if net is model:
            plain_t = method.t.clone()
    assert costs[0] > 0 and costs[1] == 2 * costs[0]
    assert torch.equal(method.t, plain_t)  # the same search, counted honestly
