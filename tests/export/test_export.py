"""`bench export`: exported schedules round-trip through diffusers' own schedulers (a few-line
denoising loop driven by the harness's exact digits model wrapped as an eps-predictor) and give the
harness's samples back; the k-diffusion form of `edm` is k-diffusion's Karras list; a grid's export
covers every cell of its results root and names the ones not run yet."""
import csv
import json

import numpy as np
import pytest
import torch

from bench.discretization import Discretization

from bench.__main__ import main
from bench.export import export_method, record, to_csv
from bench.grid import parse_grid
from bench.launch import run_local
from bench.models import make_model
from bench.registry import METHODS
from bench.solvers import make_solver

from ..core.test_discretization import get_sigmas_karras

diffusers = pytest.importorskip("diffusers")


def _priors(model, n=16, dtype=torch.float32):
    noise = torch.randn((n,) + tuple(model.data_shape), generator=torch.Generator().manual_seed(0))
    return model.prior(noise).to(dtype)


def _ve_table(k=1000, lo=1e-3, hi=100.0):
    """trained_betas of a DDPM table whose VE sigmas are log-uniform in [lo, hi] (covers digits' 0.002..80)."""
    sig = np.exp(np.linspace(np.log(lo), np.log(hi), k))
    ac = 1 / (1 + sig**2)
    return (1 - np.concatenate([[ac[0]], ac[1:] / ac[:-1]])).tolist()


@pytest.mark.parametrize("final_step", ["t_min", "zero", "denoise"])
def test_euler_sigmas_round_trip_through_diffusers_on_digits_ve(final_step):
    """EulerDiscreteScheduler(sigmas=the exported list) gives the harness's Euler samples back (digits,
    VE), for each `final_step` (the list: N + 1 knots; the first N and 0; N + 1 and 0).

    In float64: the exact digits denoiser at small sigma is a near-tie between training images, which
    turns float32 round-off of the state (~1e-5 at sigma = 80) into ~1e-4 differences of x0. The harness
    runs on the float32 values of the sigmas that diffusers keeps, and the network is given the
    scheduler's own sigma (mapping the timestep back through the float32 alphas_cumprod table loses
    ~1e-7 of it), so what remains to compare is the two codes' step arithmetic."""
    model = make_model("digits")
    solver = make_solver({"name": "euler", "final_step": final_step})
    steps = 5
    disc = METHODS.create("edm").bind(model.schedule, steps, solver).discretize(torch.zeros(1, 1, 8, 8))
    x_T = _priors(model, dtype=torch.float64)
    rec = record(model.schedule, disc, final_step=final_step, nfe=steps)
    sigmas = rec["forms"]["diffusers"]["EulerDiscreteScheduler"]["sigmas"]
    assert len(sigmas) == steps + 1 + (final_step == "denoise")

    sched = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, trained_betas=_ve_table(),
                                             prediction_type="epsilon")
    sched.set_timesteps(sigmas=sigmas)
    knots = disc.t.to(torch.float32).to(torch.float64)  # the float32 values diffusers keeps (VE: sigma = t)
    assert torch.equal(sched.sigmas[:steps].to(torch.float64), knots[0, :steps])
    with torch.no_grad():
        harness = solver.sample(model, x_T, Discretization(knots))

    def eps_model(x_in, timestep):
        sigma = float(sched.sigmas[sched.step_index])
        x = x_in * (sigma**2 + 1) ** 0.5  # scale_model_input divided the VE state by sqrt(sigma^2 + 1)
        with torch.no_grad():
            x0 = model(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))
        return (x - x0) / sigma

    x = x_T.clone()
    for timestep in sched.timesteps:
        x = sched.step(eps_model(sched.scale_model_input(x, timestep), timestep), timestep, x).prev_sample
    # t_min lands on sigma_min as the harness; zero and denoise land on 0
    assert float(sched.sigmas[-1]) == (float(torch.tensor(0.002, dtype=torch.float32)) if final_step == "t_min" else 0)
    print(f"euler round trip ({final_step}): max |diffusers - harness| = {float((x - harness).abs().max()):.2e}")
    assert (x - harness).abs().max() < 1e-5


def test_dpmsolver_timesteps_round_trip_through_diffusers_on_digits_discrete_vp():
    """DPMSolverMultistepScheduler(dpmsolver++, order 2, timesteps=N integer steps, final_sigmas_type=
    'sigma_min') gives the harness's dpmpp-2m samples back. Its timesteps are integer training steps, so
    the model runs in Stable Diffusion's discrete VP time (digits, time: vp-scaled-linear) and the
    schedule is one whose knots are training steps (`trailing`); `exact` says so in the export."""
    model = make_model({"name": "digits", "time": "vp-scaled-linear"})
    solver = make_solver("dpmpp-2m")
    steps = 4
    disc = METHODS.create("trailing").bind(model.schedule, steps, solver).discretize(torch.zeros(1, 1, 8, 8))
    x_T = _priors(model, dtype=torch.float64)  # float64 for the reason given in the Euler round trip
    with torch.no_grad():
        harness = solver.sample(model, x_T, disc)
    form = record(model.schedule, disc, nfe=steps)["forms"]["diffusers"]["DPMSolverMultistepScheduler"]
    assert form["exact"] and form["timesteps"] == [999, 749, 499, 249]

    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++", solver_order=2, prediction_type="epsilon", final_sigmas_type="sigma_min")
    sched.set_timesteps(timesteps=form["timesteps"])
    s = model.schedule

    def eps_model(x, timestep):
        t = torch.full((x.shape[0],), (int(timestep) + 1) / 1000, dtype=torch.float64)
        with torch.no_grad():
            x0 = model(x, t)
        return ((x - s.alpha(t)[:, None, None, None] * x0) / s.sigma(t)[:, None, None, None]).to(x.dtype)

    x = x_T.clone()
    for timestep in sched.timesteps:
        x = sched.step(eps_model(x, timestep), timestep, x).prev_sample
    print(f"dpm++(2m) round trip: max |diffusers - harness| = {float((x - harness).abs().max()):.2e}")
    assert (x - harness).abs().max() < 1e-5


def test_k_diffusion_sigmas_of_edm_are_get_sigmas_karras():
    """edm at N steps exports get_sigmas_karras(N + 1, sigma_min, sigma_max, rho=7): without its
    trailing 0 for final_step t_min, with it for denoise, and its first N values and 0 for zero."""
    model = make_model("digits")
    for steps in (3, 6):
        disc = METHODS.create("edm").bind(model.schedule, steps).discretize(torch.zeros(1, 1, 8, 8, dtype=torch.float64))
        karras = get_sigmas_karras(steps + 1, 0.002, 80.0) + [0.0]
        for final_step, expected in (("t_min", karras[:-1]), ("denoise", karras), ("zero", karras[:steps] + [0.0])):
            sigmas = torch.tensor(record(model.schedule, disc, final_step=final_step, nfe=steps)[
                "forms"]["k_diffusion"]["sigmas"], dtype=torch.float64)
            expected = torch.tensor(expected, dtype=torch.float64)
            assert sigmas.shape == expected.shape
            assert torch.allclose(sigmas, expected, rtol=1e-12, atol=0)


def test_flow_forms_pass_the_unshifted_time(tmp_path):
    model = make_model({"name": "toy2d", "time": {"name": "flow", "shift": 3.0}})
    disc = METHODS.create("uniform").bind(model.schedule, 4).discretize(torch.zeros(1, 2, dtype=torch.float64))
    rec = record(model.schedule, disc, nfe=4)
    form = rec["forms"]["diffusers"]["FlowMatchEulerDiscreteScheduler"]
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(sigmas=form["sigmas"])
    shifted = model.schedule.sigma(disc.t[0])  # the OT time = diffusers' flow sigma
    assert torch.allclose(sched.sigmas[:-1].double(), shifted[:-1], rtol=1e-6)
    assert float(sched.sigmas[-1]) == 0.0  # its last step lands at 0 (stated in the convention)
    assert not form["exact"]  # t_min: the scheduler's appended 0 is not the harness's t_min
    assert torch.allclose(torch.tensor(rec["forms"]["comfyui"]["sigmas"], dtype=torch.float64), shifted, rtol=1e-12)
    zero = record(model.schedule, disc, final_step="zero", nfe=4)["forms"]
    assert zero["diffusers"]["FlowMatchEulerDiscreteScheduler"]["exact"]
    assert zero["comfyui"]["sigmas"] == shifted[:-1].tolist() + [0.0]


def test_csv_and_json_files_read_back(tmp_path):
    paths = export_method({"name": "digits"}, {"name": "euler"}, {"name": "kl-optimal"}, [4, 6], tmp_path)
    assert len(paths) == 2
    rec = json.loads(paths[0].read_text())
    rows = list(csv.DictReader(paths[0].with_suffix(".csv").read_text().splitlines()))
    assert [float(r["sigma"]) for r in rows] == rec["sigma"] and len(rows) == rec["steps"] + 1
    assert rec["conventions"]["sigma"] and rec["final_step"] == "t_min"
    assert rec["forms"]["comfyui"]["text"].endswith(", 0.002")  # t_min: the last step lands on sigma_min
    # the manual method reads an export back (sigma column / list) and gives the same schedule
    s = make_model("digits").schedule
    again = METHODS.create("manual", path=str(paths[0].with_suffix(".csv"))).bind(s, 4).timesteps()
    assert torch.allclose(again, torch.tensor(rec["t"], dtype=torch.float64), rtol=1e-12)
    assert "t_eval" not in to_csv(rec).splitlines()[0]


def test_export_grid_covers_every_cell_and_names_the_missing(tmp_path, capsys):
    raw = {
        "name": "ex", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [3, 4],
        "methods": ["uniform", "edm", {"name": "god", "iterations": 2, "val": 8, "val_every": 1, "batch": 8,
                                       "train": 16, "loss": "l2"},
                    {"name": "indis", "iterations": 2, "val": 8, "val_every": 1, "batch": 8, "train": 16, "loss": "l2"}],
        "metrics": ["mse"], "teacher": {"solver": "euler", "steps": 10, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 16, "eval": 32, "batch": 32}, "exclude": [{"method": ["god", "indis"], "nfe": 4}],
    }
    grid_path = tmp_path / "ex.yaml"
    import yaml

    grid_path.write_text(yaml.safe_dump(raw))
    root = tmp_path / "res"
    partial = dict(raw, methods=["uniform", "edm"], nfe=[3], exclude=[])  # run only part of it
    run_local(parse_grid(partial, name="ex"), root=root, quiet=True)
    assert main(["export", "--grid", str(grid_path), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 cells not exported" in out and "god" in out and "indis" in out and "not run yet" in out
    index = list(csv.DictReader((root / "ex" / "export" / "index.csv").read_text().splitlines()))
    assert {(r["method"], r["nfe"], r["source"]) for r in index} == {
        ("uniform", "3", "row"), ("edm", "3", "row"), ("uniform", "4", "computed"), ("edm", "4", "computed")}
    row = json.loads(next((root / "ex" / "rows").glob("*.json")).read_text())
    exported = json.loads((root / "ex" / "export" / (
        f"toy2d-time=flow__euler__{row['method']['name']}__nfe3__seed0.json")).read_text())
    # the method's float64 values, not the row's float32 ones (0.98765432834... for t_max = 80/81)
    t_max = make_model({"name": "toy2d", "time": "flow"}).schedule.t_max
    assert exported["t"][0] == t_max and row["schedule"]["t"][0][0] != t_max
    assert torch.equal(torch.tensor(exported["t"]).float(), torch.tensor(row["schedule"]["t"][0]).float())
    # after the whole grid runs, every cell is exported: GOD's schedule from its row, INDIS's network
    run_local(parse_grid(raw, name="ex"), root=root, quiet=True)
    assert main(["export", "--grid", str(grid_path), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "not exported" not in out and "5 schedules and 1 schedule networks" in out
    (god_path,) = (root / "ex" / "export").glob("*god*.json")
    god = json.loads(god_path.read_text())
    assert god["scale"] != [1.0] * 3  # GOD learns a per-step scale: the plain forms lose it, and say so
    assert god["warning"].startswith("this schedule also has") and "scale" in god["warning"]
    assert god["forms"]["k_diffusion"]["warning"] == god["forms"]["comfyui"]["warning"] == god["warning"]
    assert f"warning: {god_path.name}: this schedule also has" in out
    (net_path,) = (root / "ex" / "export").glob("*indis*.schedule-net.pt")
    t, t_eval, scale = torch.jit.load(str(net_path))(torch.randn(5, 2, dtype=torch.float64), torch.full((5,), -1))
    assert t.shape == (5, 4) and t_eval.shape == scale.shape == (5, 3)


# ComfyUI's ManualSigmas node (comfy_extras/nodes_custom_sampler.py) reads its text with this pattern:
# an optional sign, then digits and dots -- no exponent -- each match passed to float().
COMFY_NUMBER = r"[-+]?(?:\d*\.*\d+)"


def test_comfyui_text_reads_back_through_comfyuis_pattern_without_exponents():
    """Values below 1e-4 (where `.9g` switches to `2e-05`, read by ComfyUI as 2 and -5) and float64
    values with many digits come back exactly, one number per value."""
    import re

    from bench.schedules import VE

    schedule = VE(t_min=2e-5, t_max=80.0)
    t = torch.tensor([80.0, 1.2345678901234567, 3e-4, 7.5e-5, 2e-5], dtype=torch.float64)
    form = record(schedule, Discretization(t[None]), nfe=4)["forms"]["comfyui"]
    text = form["text"]
    assert "e" not in text.lower()
    read = [float(v) for v in re.findall(COMFY_NUMBER, text)]
    assert read == form["sigmas"] and len(read) == len(form["sigmas"])
    assert read[-1] == 2e-5 and read[1] == 1.2345678901234567  # float64 round trip (shortest repr)
    from bench.export import comfy_text

    assert comfy_text([1e-30, 0.0, 80.0]) == "0.000000000000000000000000000001, 0, 80"


def _k_diffusion_loop(denoise, x, sigmas, heun=False):
    """k-diffusion's sample_euler / sample_heun (churn 0) on a sigma list, written out: one step per
    consecutive pair, d = (x - D(x, s)) / s; Heun corrects every step except one that lands on 0."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, s)) / s
        x_next = x + d * (s_next - s)
        if heun and s_next != 0:
            d_next = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (d + d_next) / 2 * (s_next - s)
        x = x_next
    return x


@pytest.mark.parametrize("final_step", ["t_min", "zero", "denoise"])
@pytest.mark.parametrize("solver_name,steps", [("euler", 4), ("heun", 3)])
def test_exported_sigmas_follow_the_cells_final_step(final_step, solver_name, steps):
    """The k-diffusion / ComfyUI list of a cell, run as it is by k-diffusion's Euler / Heun loop, gives
    the cell's sample back, for each `final_step` (digits, VE, exact model, float64).

    Both sides evaluate the same denoiser at the same float64 sigmas and combine it with the same few
    operations per step, in a different order: each step differs by a few ulps of the state
    (|x| <= 80: ~1e-14); the exact digits denoiser amplifies a state difference by its Lipschitz
    constant ~ data spread / sigma^2 (<= 1 / 0.002^2 at sigma_min) at most once per step, bounding the
    difference by ~1e-14 * 2.5e5 * N ~ 1e-8. A wrong step count (one step too many for `zero`, as
    before the export followed final_step) differs by orders of magnitude more."""
    from bench.export import stepping_list

    model = make_model("digits")
    solver = make_solver({"name": solver_name, "final_step": final_step})
    nfe = solver.nfe(steps)
    disc = METHODS.create("edm").bind(model.schedule, steps, solver).discretize(torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    x_T = _priors(model, dtype=torch.float64)
    with torch.no_grad():
        harness = solver.sample(model, x_T, disc)
    rec = record(model.schedule, disc, final_step=final_step, nfe=nfe)
    sigmas = rec["forms"]["k_diffusion"]["sigmas"]
    assert sigmas == rec["forms"]["comfyui"]["sigmas"] == rec["forms"]["diffusers"]["EulerDiscreteScheduler"]["sigmas"]
    assert len(sigmas) == steps + 1 + (final_step == "denoise")

    def denoise(x, s):
        with torch.no_grad():
            return model(x, torch.full((x.shape[0],), float(s), dtype=x.dtype))

    out = _k_diffusion_loop(denoise, x_T.clone(), sigmas, heun=solver_name == "heun")
    err = float((out - harness).abs().max())
    print(f"{solver_name} nfe={nfe} final_step={final_step}: max |k-diffusion loop - harness| = {err:.2e}")
    assert err < 1e-8
    if final_step == "zero":  # the list the export wrote before (all N + 1 knots and a 0) takes one step too many
        old = stepping_list(rec["sigma"], "denoise")
        assert float((_k_diffusion_loop(denoise, x_T.clone(), old, heun=solver_name == "heun") - harness).abs().max()) > 1e-3


def test_export_takes_final_step_from_the_cells_solver(tmp_path):
    """`bench export --grid` and `--method` read `final_step` from the solver spec (or its default)."""
    import yaml

    (path,) = export_method({"name": "digits"}, {"name": "euler", "final_step": "zero"}, {"name": "edm"}, [4], tmp_path)
    rec = json.loads(path.read_text())
    assert rec["final_step"] == "zero" and rec["forms"]["k_diffusion"]["sigmas"] == rec["sigma"][:4] + [0.0]
    grid = {"name": "fs", "models": ["toy2d"], "solvers": ["euler", {"name": "euler", "final_step": "denoise"}],
            "nfe": [3], "methods": ["edm"], "metrics": ["mse"]}
    (tmp_path / "fs.yaml").write_text(yaml.safe_dump(grid))
    assert main(["export", "--grid", str(tmp_path / "fs.yaml"), "--results", str(tmp_path / "res")]) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "fs" / "export").glob("*.json")]
    # nfe 3: euler t_min takes 3 steps (4 knots); denoise 2 steps and the final evaluation (3 knots and a 0)
    assert sorted((r["final_step"], r["steps"], r["forms"]["k_diffusion"]["sigmas"][-1]) for r in recs) == [
        ("denoise", 2, 0.0), ("t_min", 3, 0.002)]


def test_forms_warn_when_t_eval_or_scale_is_not_the_plain_rule():
    """A schedule with a decoupled evaluation time or a scale other than the plain rule (t_eval = t,
    scale = 1) gets a `warning` next to every form a plain sampler takes; a plain one gets none."""
    model = make_model({"name": "digits", "time": "vp-scaled-linear"})
    t = torch.tensor([[1.0, 0.5, 0.2, 0.001]], dtype=torch.float64)
    plain = record(model.schedule, Discretization(t, t[:, :-1].clone(), torch.ones(1, 3, dtype=torch.float64)), nfe=3)
    assert "warning" not in plain and not any("warning" in str(f) for f in plain["forms"].values())
    for t_eval, scale, named in ((t[:, :-1] * 1.01, None, "t_eval (differs from t by up to 0.01, relative)"),
                                 (None, torch.tensor([[1.0, 0.98, 1.0]]), "scale (differs from 1 by up to 0.02)")):
        rec = record(model.schedule, Discretization(t, t_eval, scale), nfe=3)
        assert named in rec["warning"]
        taken = [rec["forms"]["k_diffusion"], rec["forms"]["comfyui"], rec["forms"]["diffusers"]["EulerDiscreteScheduler"],
                 rec["forms"]["diffusers"]["DPMSolverMultistepScheduler"]]
        assert all(f["warning"] == rec["warning"] for f in taken)
