"""The searched and learned methods against their public reference code, on the toy2d model.

Every expected value below was computed by running the reference code itself, outside this
repository, on the same model and inputs (the reference code is not part of the project; only its
results are kept here). The reference checkouts were the snapshots of:

* zju-pi/diff-sampler           68d5ce427f261962b89ce3b0ee8f6b29f0577328  (gits-main/gits_utils.py)
* bebebe666/OptimalSteps        ee350436c86e29088c0cf550300a2e6a5911a7ee  (OSS/OSS.py)
* vinhsuhi/LD3                  9e4a66f8238a45903e54b89a1f557df1e7de8afc  (trainer.py)

Each test's docstring says how its reference values were produced. The inputs are the harness's own:
the toy2d model (class A) in flow time and the first priors of the "train" split of seed 0
(`bench.teacher.priors(model, "train", 0, n)`), float32.
"""
from __future__ import annotations

import pytest
import torch

from bench.models.toy2d import Toy2D
from bench.registry import METHODS
from bench.schedules import VE
from bench.solvers import make_solver
from bench.teacher import TeacherSet, priors
from bench.methods.search.oss_dp import median_path
from bench.methods._learned.time_map import TimeMap
from tests.helpers import fitted_method


@pytest.fixture(scope="module")
def toy():
    return Toy2D(time="flow")


def fitted(model, name, nfe, n, **params):
    seeds, x_T, _ = priors(model, "train", 0, n)
    # euler: one evaluation per step
    return fitted_method({"name": name, **params}, model, make_solver("euler"),
                         lambda split, k: TeacherSet(seeds[:k], x_T[:k], None, x_T[:k]), steps=nfe)[0]


# ---------------------------------------------------------------------------------------------
# GITS

# Selected node indices of the 60-step EDM (rho 7) grid, per NFE and metric.
GITS_REFERENCE = {
    ("dev", 3): [0, 45, 48, 60],
    ("dev", 4): [0, 44, 47, 50, 60],
    ("dev", 5): [0, 44, 47, 50, 55, 60],
    ("dev", 6): [0, 43, 46, 48, 51, 55, 60],
    ("l2", 3): [0, 41, 46, 60],
    ("l2", 4): [0, 39, 43, 47, 60],
    ("l2", 5): [0, 38, 42, 45, 48, 60],
    ("l2", 6): [0, 37, 41, 44, 46, 49, 60],
}
# A few entries of the reference's cost matrix (float32), (i, j) -> cost.
GITS_REFERENCE_COST = {
    "dev": {(0, 45): 0.030756403, (45, 48): 0.008332983, (48, 60): 0.01364658, (10, 30): 0.0007170662},
    "l2": {(0, 41): 0.15440607, (41, 46): 0.056007374, (46, 60): 0.041537195},
}


@pytest.mark.parametrize("metric", ["dev", "l2"])
def test_gits_default_selects_the_reference_steps(toy, metric):
    """GITS's default (`space: ve`) picks the steps of zju-pi/diff-sampler at NFE 3-6.

    Reference values: `gits_utils.get_dp_list(net, device, **kwargs)` of gits-main (commit above) with
    metric dev / l2, coeff 1.15, num_steps_tea 61, solver_tea ipndm (max_order 4), schedule polynomial
    rho 7, sigma range of the toy2d flow schedule in VE terms (sigma_min = 0.002 / 0.998, sigma_max =
    80), num_warmup 256 with max_batch_size 256 (one round), num_steps = NFE + 1. `net` is toy2d in VE
    time (`Toy2D(time="ve")`, state reshaped to [B, 2, 1, 1], label_dim 0); `torch.randn` was patched to
    return the unit noise of the 256 priors (x_T / sigma(t_max)); a single-process gloo group stood in
    for the distributed one. The cost matrix was read from the argument of `gits_utils.dp`."""
    for nfe in (3, 4, 5, 6):
        method = fitted(toy, "gits", nfe, 256, metric=metric)
        assert method.path == GITS_REFERENCE[(metric, nfe)], nfe
        for (i, j), value in GITS_REFERENCE_COST[metric].items():
            assert float(method.cost[i, j]) == pytest.approx(value, rel=2e-4, abs=2e-7)


def test_gits_model_space_is_a_named_variant(toy):
    """`space: model` (the harness's variant) measures costs on the flow state and departs from the
    reference's steps on toy2d; the default is the reference's `ve`."""
    assert METHODS.create("gits").params.space == "ve"
    variant = fitted(toy, "gits", 3, 256, space="model")
    assert variant.path != GITS_REFERENCE[("dev", 3)]


# ---------------------------------------------------------------------------------------------
# OSS

# Per-prior paths of `search_OSS` for the first 8 train priors, NFE 3 / 4 / 5 (harness node order:
# 0 = t_max, 200 = t_min; the first node is where the reference placed x_T), and `cal_medium` of them.
OSS_REFERENCE = {
    3: ([[69, 187, 199, 200], [86, 181, 188, 200], [84, 185, 196, 200], [80, 177, 193, 200],
         [43, 144, 163, 200], [77, 172, 197, 200], [110, 182, 189, 200], [85, 179, 192, 200]],
        [82, 180, 193, 200]),
    4: ([[69, 187, 198, 199, 200], [78, 177, 182, 188, 200], [65, 176, 190, 196, 200], [65, 168, 186, 193, 200],
         [43, 144, 163, 198, 200], [62, 163, 173, 193, 200], [107, 180, 184, 188, 200], [82, 177, 190, 194, 200]],
        [67, 177, 185, 194, 200]),
    5: ([[64, 180, 187, 198, 199, 200], [74, 175, 179, 182, 188, 200], [53, 169, 183, 191, 196, 200],
         [62, 166, 184, 189, 193, 200], [34, 136, 152, 166, 196, 200], [77, 172, 196, 198, 199, 200],
         [107, 180, 184, 186, 188, 200], [82, 177, 190, 193, 197, 200]],
        [69, 174, 184, 190, 196, 200]),
}


@pytest.mark.parametrize("nfe", [3, 4, 5])
def test_oss_code_variant_reproduces_the_reference_paths(toy, nfe):
    """`oss(variant=code)` finds the per-prior paths of bebebe666/OptimalSteps's `search_OSS`, and its
    OSS-ave (default `median: reference`) is `cal_medium` of them.

    Reference values: `OSS.OSS.search_OSS(wrapped, x_T, 8, None, "cpu", teacher_steps=200,
    student_steps=NFE)` (OptimalSteps commit above) on the first 8 train priors x_T (the flow state at
    t_max, float32), with `wrapped.fm_steps` = the 201 times of OSS's "auto" grid for flow (uniform
    in t from 80/81 to 0.002), reversed into the reference's order (index 0 = the data end, float64),
    and `wrapped(z, t, ...)` = the velocity (z - x0) / t of toy2d's data prediction x0 at time
    fm_steps[t] (cast to float32). Its index lists (data end first, the data end itself dropped) were
    mapped to the harness's nodes n = 200 - r, noise end first, node 200 appended; `cal_medium` ran on
    the same lists. `search_OSS_batch` returned the same paths."""
    paths, median = OSS_REFERENCE[nfe]
    method = fitted(toy, "oss", nfe, 8, variant="code", search_batch=8)
    assert method.paths.tolist() == paths
    t_nodes = method.teacher_grid()
    assert method.t.tolist() == t_nodes[median].tolist()
    assert float(method.t[0]) < toy.schedule.t_max  # the reference's OSS-ave starts below t_max here


def test_oss_paper_variant_starts_at_t_max(toy):
    """The default (`variant: paper`) searches paths that start at node 0 (t_max), unlike the code."""
    params = METHODS.create("oss").params
    assert (params.variant, params.median) == ("paper", "reference")
    method = fitted(toy, "oss", 3, 8, search_batch=8)
    assert bool((method.paths[:, 0] == 0).all()) and bool((method.paths[:, -1] == 200).all())
    assert method.paths.tolist() != OSS_REFERENCE[3][0]


def test_oss_code_variant_per_instance(toy):
    """Per-instance OSS with the code's search returns the same per-prior paths as schedules, which
    may start below t_max, and samples with them."""
    _, x_T, _ = priors(toy, "train", 0, 4)
    method = METHODS.create("oss", variant="code", instance=True).bind(toy.schedule, 3, make_solver("euler"), toy)
    disc = method.discretize(x_T)
    t_nodes = method.teacher_grid()
    expected = torch.tensor(OSS_REFERENCE[3][0][:4])
    assert disc.t.tolist() == t_nodes[expected].to(x_T.dtype).tolist()
    out = make_solver("euler").sample(toy, x_T, disc)
    assert bool(torch.isfinite(out).all())


def test_oss_cal_medium_rounding():
    """OSS-ave's median with the reference's rule (`median: reference`).

    Reference values: `OSS.OSS.cal_medium` (OptimalSteps commit above) run on the reference-order
    lists (data end first, node r = T - n, T = 10) [[1,4,9]]; [[1,4,9],[2,5,10]];
    [[1,4,9],[2,5,10],[3,7,10]]; [[1,3,6],[2,4,7],[2,6,9],[3,7,10]], which returned [1,4,9]; [1,4,9];
    [1,4,9]; [2,5,8]; converted here to the harness's order (noise end first, T appended)."""
    cases = [
        ([[1, 6, 9, 10]], [1, 6, 9, 10]),
        ([[1, 6, 9, 10], [0, 5, 8, 10]], [1, 6, 9, 10]),
        ([[1, 6, 9, 10], [0, 5, 8, 10], [0, 3, 7, 10]], [1, 6, 9, 10]),
        ([[4, 7, 9, 10], [3, 6, 8, 10], [1, 4, 8, 10], [0, 3, 7, 10]], [2, 5, 8, 10]),
    ]
    for paths, expected in cases:
        assert median_path(torch.tensor(paths), "reference").tolist() == expected
    # the harness's earlier rule, kept as `median: noise-end`: true median, even counts rounded up the noise end
    assert median_path(torch.tensor(cases[1][0]), "noise-end").tolist() == [0, 5, 8, 10]
    assert median_path(torch.tensor(cases[2][0]), "noise-end").tolist() == [0, 5, 8, 10]


# ---------------------------------------------------------------------------------------------
# LD3

# (logits xi_0..xi_N as the reference holds them, xi_0 the inert one) -> per mode: the reference's
# clamp half-width and evaluation times t_eval_0..t_eval_{N-1} for shifts xi_c = +-5 (alternating).
LD3_REFERENCE = {
    (0.0, 0.3, -0.5, 0.9, 0.1): {
        "lambda": (0.15000000596046448, [80.0, 6.9676289558410645, 1.6115167140960693, 0.019380634650588036]),
        "time": (4.394112586975098, [80.0, 59.59269332885742, 32.74290084838867, 15.166451454162598]),
    },
    (0.0, 1.2, 1.0, 0.7, 1.5, 0.2): {
        "lambda": (0.10000002384185791, [80.0, 6.8503947257995605, 0.6908875107765198, 0.17886686325073242,
                                         0.0046370550990104675]),
        "time": (3.551727294921875, [80.0, 69.34481811523438, 50.38357925415039, 31.568504333496094,
                                     22.862926483154297]),
    },
    (0.0, -0.05, 0.4, -0.3): {
        "lambda": (0.02500000037252903, [80.0, 3.459498167037964, 0.02296004630625248]),
        "time": (9.306903839111328, [80.0, 56.386192321777344, 28.902599334716797]),
    },
}


@pytest.mark.parametrize("logits", list(LD3_REFERENCE))
@pytest.mark.parametrize("mode", ["lambda", "time"])
def test_ld3_xi_window_is_the_references(logits, mode):
    """LD3's default `xi_window: global` clamps xi_c as vinhsuhi/LD3 does, in both of its modes.

    Reference values: `trainer.discretize_model_wrapper(xi, xi_c, ns.lambda_max, ns.lambda_min, ns, mode,
    0.5)()` (LD3 commit above; `ns = noise_schedulers.NoiseScheduleVE("edm", 0.002, 80.0)`, the toy2d VE
    schedule) with the float32 logits `xi` above and xi_c = [5, -5, 5, ...] (N + 1 entries, so that
    every interior shift is clamped when the window is below 5); its second output is t_eval. The
    window is the reference's `max_move`: half the smallest gap of the raw logits (lambda mode) or of
    the timesteps (time mode). The harness holds the N logits after the inert xi_0 (here 0, the
    harness's convention), in the order of its gaps from the noise end: as they are in lambda mode,
    reversed in time mode (the reference's time mode sums the gaps from the data end)."""
    window, expected = LD3_REFERENCE[logits][mode]
    tmap = TimeMap(VE(0.002, 80.0), "lambda" if mode == "lambda" else "t")
    xi = torch.tensor(logits[1:], dtype=torch.float32)
    if mode == "time":
        xi = xi.flip(0)
    n = xi.numel()
    xi_c = torch.tensor([(-1.0) ** k * 5.0 for k in range(n)], dtype=torch.float32)
    u = tmap.progress(xi)
    t_eval = tmap.ld3_eval_times(u, xi_c, 0.5, "global", xi)[0]
    assert t_eval.tolist() == pytest.approx(expected, rel=2e-6)
    shift = tmap.coord(t_eval[1:]) - tmap.value(u)[0, 1:n]
    assert shift.abs().tolist() == pytest.approx([min(window, 5.0)] * (n - 1), rel=1e-5)
    step = tmap.ld3_eval_times(u, xi_c, 0.5, "step", xi)[0]
    if mode == "lambda":  # the harness's per-step window (`step`) is another rule
        assert not torch.allclose(step, t_eval, rtol=1e-3)


def test_ld3_default_window_is_the_references():
    assert METHODS.create("ld3").params.xi_window == "global"
    assert METHODS.create("ld3-hard").params.xi_window == "global"


@pytest.mark.parametrize("name, params, field", [
    ("oss", {"variant": "reference"}, "variant"),
    ("oss", {"median": "mean"}, "median"),
    ("ld3", {"xi_window": "neighbours"}, "xi_window"),
    ("ld3-hard", {"xi_window": 0.5}, "xi_window"),
])
def test_variant_parameters_are_checked(name, params, field):
    from bench.errors import UserError

    with pytest.raises(UserError, match=field):
        METHODS.create(name, **params)
