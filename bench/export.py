"""`bench export`: schedules out of the harness, as JSON and CSV, with ready-to-paste forms.

For every (model, solver, method, NFE[, seed]) it writes `<name>.json` and `<name>.csv`:
  * the knots i = 0..N in the model's time `t`, the VE-equivalent noise level `sigma` = sigma/alpha
    = exp(-lambda), `lambda` = log(alpha/sigma) (DPM-Solver's half log-SNR) and `log_snr` =
    log(alpha^2/sigma^2) = 2 lambda; a decoupled evaluation time `t_eval` and output scale `scale`
    per step where the method has them (LD3, INDIS/GOD: no sampler outside the harness takes these;
    the forms below carry the knots only);
  * the forms other samplers take, each with its convention stated in the file (`forms`).
    Checked against diffusers 0.42's source (`diffusers/schedulers/*.py`):
      - `EulerDiscreteScheduler.set_timesteps(sigmas=S)` takes all N + 1 knots as VE sigmas and uses
        them as given (cast to float32; its `final_sigmas_type` is ignored when sigmas are passed), so
        the last step lands on S[-1] = sigma(t_min) as in the harness. The network's `timestep` is
        interpolated from its training table (linear in log sigma between integer steps): fractional,
        and clipped to the table's ends, so the table must cover the schedule.
      - `DPMSolverMultistepScheduler.set_timesteps(timesteps=T)` (and the DDIM/DEIS family) takes the
        N evaluation steps only, as integer training steps of a DDPM table: it truncates them with
        `astype(int64)` (3.7 -> 3), so the export rounds to the nearest step and reports the largest
        change in log sigma that rounding makes (`max_log_sigma_rounding`; 0 when every knot is a
        training step, e.g. `linspace`/`leading`/`trailing`, AYS's lists). Where the last step lands
        is the scheduler's `final_sigmas_type`: "sigma_min" = training step 0 (the harness's t_min
        for tables in DPM-Solver's discrete time), "zero" (its default) = sigma 0. There is no
        `sigmas=` argument. `lower_order_final` applies below 15 steps (the harness's dpmpp: below 10;
        both give a first-order last step for NFE < 10).
      - `UniPCMultistepScheduler` has no `timesteps=`; `sigmas=` is refused unless
        `use_flow_sigmas=True`. `FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=S)` takes N flow
        sigmas BEFORE its own `shift` (it shifts them: pass the model's unshifted time t), appends a
        terminal 0 and gives the network timestep = shifted sigma x num_train_timesteps; its last step
        lands at 0, not at t_min.
    k-diffusion (`sigmas`): the N + 1 VE sigmas and a trailing 0, k-diffusion's own convention
    (`get_sigmas_karras(n, ...)` returns n sigmas and a 0; the harness's `edm` at N steps is
    `get_sigmas_karras(N + 1, sigma_min, sigma_max, 7)` exactly). k-diffusion's samplers step between
    consecutive sigmas, so the harness's N steps are the first N pairs; the last pair sigma_min -> 0
    is one more step (one more network call for Euler/DPM++(2M), a final denoise). To stop where the
    harness stops, pass `sigmas[:-1]` (k-diffusion's DPM++(2M) then takes a second-order last step,
    the harness a first-order one).
    ComfyUI (`sigmas`, `text`): `text` goes into the ManualSigmas node, whose output is a SIGMAS
    input of SamplerCustom / SamplerCustomAdvanced (comma-separated decimals, never exponents: the
    node reads numbers with a digits-and-dots pattern, so `2e-05` would become 2 and -5); the same
    convention with its trailing 0 (as its schedulers return), in the model's sampling sigma: the VE
    sigma for VE/VP models, the (shifted) flow time for flow models (ComfyUI's ModelSamplingDiscreteFlow).
Sources: a grid's results root (`export_grid`: a cell's row holds the global schedule it sampled
with; a fitted cell without a row uses its cached fit, a closed-form cell is computed; per-instance
methods have no single list and export their schedule network instead, `export_network`), or a
method given on the command line (`export_method`, as `show-schedule`). `bench export --grid`
lists the cells it could not export (not run yet) and writes `index.csv` of what it wrote.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import torch

from .discretization import Discretization
from .errors import UserError
from .grid import Cell, load_grid, plugin_label
from .schedules import DiscreteVP, FlowOT, NoiseSchedule
from .seeding import stable_hash
from .store import ResultsRoot, atomic_write_bytes, atomic_write_json, read_json

CONVENTIONS = {
    "t": "the model's own time, N + 1 knots from t_max to t_min (the harness's Discretization.t)",
    "sigma": "VE-equivalent noise level sigma(t)/alpha(t) = exp(-lambda) at each knot",
    "lambda": "half log-SNR log(alpha/sigma) at each knot (DPM-Solver's lambda)",
    "log_snr": "log(alpha^2/sigma^2) = 2 lambda at each knot",
    "t_eval": "per step: the time the network is evaluated at instead of t[n] (LD3 / INDIS); harness only",
    "scale": "per step: factor on the network's noise prediction (INDIS gamma); harness only",
}


def schedule_summary(schedule: NoiseSchedule) -> dict:
    """The schedule's spec without a discrete table's thousand values."""
    spec = dict(schedule.spec())
    if "alphas_cumprod" in spec:
        spec.pop("alphas_cumprod")
        spec["num_train_timesteps"] = schedule.num_train_timesteps
    return spec


def _floats(v: torch.Tensor) -> list[float]:
    return [float(x) for x in v.detach().cpu().double().flatten().tolist()]


def comfy_text(values) -> str:
    """ComfyUI's ManualSigmas text: comma-separated decimals, never exponent notation (its parser
    extracts runs of digits and dots, so `2e-05` would read as 2 and -5); each value is the shortest
    positional decimal that reads back as the same float64 (numpy's `format_float_positional`)."""
    return ", ".join(np.format_float_positional(float(v), unique=True, trim="-") for v in values)


def forms(schedule: NoiseSchedule, t: torch.Tensor) -> dict:
    """The ready-to-paste forms of one global schedule t [N+1] (module docstring)."""
    t = t.detach().cpu().double()
    sigma = schedule.sigma_ve(t)
    n = t.numel() - 1
    out: dict = {}
    diffusers: dict = {}
    if isinstance(schedule, FlowOT):
        flow_sigma = schedule.sigma(t)  # the OT time, i.e. the shifted time of a shifted model
        diffusers["FlowMatchEulerDiscreteScheduler"] = {
            "call": f"FlowMatchEulerDiscreteScheduler(shift={schedule.shift:g}, use_dynamic_shifting=False)"
                    ".set_timesteps(sigmas=SIGMAS)",
            "sigmas": _floats(t[:-1]),
            "convention": f"N = {n} flow sigmas before the scheduler's shift (the model's unshifted time t); "
                          "the scheduler shifts them, appends a terminal 0 and gives the network timestep = "
                          "shifted sigma x num_train_timesteps. Its last step lands at sigma 0, the harness's at "
                          f"t_min = {schedule.t_min:.6g}.",
        }
        diffusers["UniPCMultistepScheduler"] = {
            "convention": "no timesteps= argument; sigmas= only with use_flow_sigmas=True (not round-trip tested here)"}
        comfy = _floats(flow_sigma) + [0.0]
        comfy_unit = "flow sigma (the shifted OT time, ComfyUI's ModelSamplingDiscreteFlow)"
    else:
        diffusers["EulerDiscreteScheduler"] = {
            "call": "scheduler.set_timesteps(sigmas=SIGMAS)",
            "sigmas": _floats(sigma),
            "convention": f"all N + 1 = {n + 1} knots as VE sigmas, used as given (float32); the last step lands "
                          "on the last value, sigma(t_min), as in the harness. The network gets a fractional "
                          "timestep interpolated (linear in log sigma) in the scheduler's training table, "
                          "clipped to its ends: the table must cover the schedule's sigmas.",
        }
        if isinstance(schedule, DiscreteVP):
            k = schedule.num_train_timesteps
            steps = schedule.step_index(t)  # fractional training steps n = t K - 1
            rounded = steps[:-1].round()
            table = schedule.sigma_ve((rounded.clamp(0, k - 1) + 1) / k)
            err = (torch.log(table) - torch.log(sigma[:-1])).abs().max()
            ends_at_step0 = abs(float(steps[-1])) < 1e-6
            diffusers["EulerDiscreteScheduler"]["timesteps_fractional"] = _floats(steps[:-1])
            diffusers["EulerDiscreteScheduler"]["convention"] += (
                " timesteps_fractional: n = t K - 1 of the harness's discrete-time convention (for reference: "
                "the scheduler derives its own, equal at integer steps, linear in log sigma between them).")
            diffusers["DPMSolverMultistepScheduler"] = {
                "call": "DPMSolverMultistepScheduler.from_config(config, final_sigmas_type='sigma_min')"
                        ".set_timesteps(timesteps=TIMESTEPS)",
                "timesteps": [int(v) for v in rounded.tolist()],
                "max_log_sigma_rounding": float(err),
                "exact": bool(float(err) < 1e-9 and ends_at_step0),
                "convention": f"the N = {n} evaluation steps as integer training steps (diffusers truncates "
                              "fractional ones with astype(int64); these are rounded to the nearest); the last step "
                              "lands at training step 0 with final_sigmas_type='sigma_min' (the harness's t_min"
                              + ("" if ends_at_step0 else f"; NOT here: t_min is step {float(steps[-1]):.4g}")
                              + "), at sigma 0 with the default 'zero'. Same for the DDIM/DEIS/DPM family.",
            }
        else:
            diffusers["DPMSolverMultistepScheduler"] = {
                "convention": "takes only integer training steps of a DDPM table (timesteps=); this model is "
                              "continuous-time: use EulerDiscreteScheduler's sigmas= with a table that covers them"}
        diffusers["UniPCMultistepScheduler"] = {
            "convention": "no timesteps= argument and sigmas= is refused unless use_flow_sigmas=True: "
                          "use DPMSolverMultistepScheduler's timesteps= (discrete models) instead"}
        comfy = _floats(sigma) + [0.0]
        comfy_unit = "VE sigma"
    out["diffusers"] = diffusers
    out["k_diffusion"] = {
        "sigmas": _floats(sigma) + [0.0],
        "convention": "N + 1 VE sigmas and k-diffusion's trailing 0 (get_sigmas_karras(N + 1, ...) has this shape); "
                      "k-diffusion samplers step between consecutive values, so the final pair sigma_min -> 0 is "
                      "one more step (one more network call); pass sigmas[:-1] to stop where the harness stops.",
    }
    out["comfyui"] = {
        "sigmas": comfy,
        "text": comfy_text(comfy),
        "convention": f"a SIGMAS input of SamplerCustom(Advanced) in the model's sampling unit ({comfy_unit}), "
                      "with ComfyUI's trailing 0 (same step count as k-diffusion's form).",
    }
    return out


def record(schedule: NoiseSchedule, disc: Discretization, **meta) -> dict:
    """The export record of one global discretization (B = 1)."""
    if disc.batch != 1:
        raise ValueError("record() takes a global schedule (B = 1); per-instance schedules export their network")
    t = disc.t[0].detach().cpu().double()
    lam = schedule.lambda_(t)
    rec = {**meta, "steps": disc.steps, "noise_schedule": schedule_summary(schedule),
           "t": _floats(t), "sigma": _floats(schedule.sigma_ve(t)), "lambda": _floats(lam),
           "log_snr": _floats(2 * lam)}
    for name in ("t_eval", "scale"):
        value = getattr(disc, name)
        if value is not None:
            rec[name] = _floats(value[0])
    rec["conventions"] = {k: v for k, v in CONVENTIONS.items() if k in rec}
    rec["forms"] = forms(schedule, t)
    return rec


def to_csv(rec: dict) -> str:
    """One line per knot: i, t, sigma, lambda, log_snr (and t_eval, scale of step i, empty at i = N)."""
    cols = ["i", "t", "sigma", "lambda", "log_snr"] + [c for c in ("t_eval", "scale") if c in rec]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for i in range(len(rec["t"])):
        row = [i] + [repr(rec[c][i]) for c in ("t", "sigma", "lambda", "log_snr")]
        row += [repr(rec[c][i]) if i < len(rec[c]) else "" for c in cols[5:]]
        writer.writerow(row)
    return buf.getvalue()


def _slug(text: str) -> str:
    """A file-name-safe label; a long one is cut and keeps a hash of the whole, so names never collide."""
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-") or "x"
    return slug if len(slug) <= 80 else f"{slug[:71]}-{stable_hash(text)[:8]}"


def file_stem(rec: dict) -> str:
    parts = [rec["model_label"], rec["solver_label"], rec["method_label"], f"nfe{rec['nfe']}"]
    if rec.get("seed") is not None:
        parts.append(f"seed{rec['seed']}")
    return "__".join(_slug(p) for p in parts)


def write_record(rec: dict, out_dir) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    stem = file_stem(rec)
    json_path = atomic_write_json(out_dir / f"{stem}.json", rec)
    csv_path = atomic_write_bytes(out_dir / f"{stem}.csv", to_csv(rec).encode())
    return json_path, csv_path


def export_network(method, path) -> Path:
    """A per-instance method's schedule network as a self-contained TorchScript file (module docstring
    of the method: `export_module()`), mapping (x_T, labels) -> (t, t_eval, scale)."""
    make = getattr(method, "export_module", None)
    if make is None:
        raise UserError(f"method {method.name!r} has no schedule network to export")
    module = make()
    path = Path(path)
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# Sources: a grid's results root, or a method given on the command line.
# --------------------------------------------------------------------------------------------

def _meta(cell: Cell, source: str, **extra) -> dict:
    return {"model": cell.model, "solver": cell.solver, "method": cell.method, "nfe": cell.nfe, "seed": cell.seed,
            "model_label": plugin_label(cell.model), "solver_label": plugin_label(cell.solver),
            "method_label": plugin_label(cell.method), "grid": cell.grid, "cell": cell.hash,
            "fit_key": cell.fit_hash, "source": source, **extra}


def _disc_from_row(schedule: dict) -> Discretization:
    as_t = lambda k: None if k not in schedule else torch.tensor(schedule[k], dtype=torch.float64)  # noqa: E731
    return Discretization(as_t("t"), as_t("t_eval"), as_t("scale"))


def export_grid(grid_path, results="results", out_dir=None) -> dict:
    """Export every cell of a grid found in the results root; returns {"written", "networks", "missing", "out"}."""
    from .models import make_model
    from .runner import build_method, fit_cell
    from .solvers import make_solver

    grid = load_grid(grid_path)
    root = ResultsRoot(results)
    out = Path(out_dir) if out_dir else root.grid_dir(grid.name) / "export"
    written, networks, missing, index = [], [], [], []
    schedules: dict[str, NoiseSchedule] = {}
    for cell in grid.cells:
        key = plugin_label(cell.model)
        if key not in schedules:
            schedules[key] = make_model(cell.model).schedule
        schedule = schedules[key]
        row_path = root.row_path(grid.name, cell.hash)
        row = read_json(row_path) if row_path.exists() else None
        fitted = cell.needs_fit and (root.fit_dir(cell.fit_hash) / "fit.json").exists()
        disc, source = None, None
        if row is not None and row.get("schedule") is not None:
            disc, source = _disc_from_row(row["schedule"]), "row"
        elif not cell.needs_fit or fitted:
            if cell.needs_fit:  # the cached fit: fit_cell loads it (it never fits when fit.json exists)
                method, _ = fit_cell(cell, root)
                source = "fit"
            else:
                model = make_model(cell.model)
                method = build_method(cell, model, make_solver(cell.solver))
                source = "computed"
            if hasattr(method, "export_module") and getattr(method, "instance", False) or method.uses_eval_targets:
                disc = None
            else:
                probe = torch.zeros((1,) + tuple(make_model(cell.model).data_shape), dtype=torch.float64)
                try:
                    disc = method.discretize(probe).detach()
                except UserError as err:
                    missing.append((cell, f"cannot compute: {err}"))
                    continue
                if disc.batch != 1:
                    disc = None
            if disc is None and hasattr(method, "export_module"):
                path = export_network(method, out / f"{file_stem(_meta(cell, 'fit'))}.schedule-net.pt")
                networks.append(path)
                index.append({**_index(cell), "source": "fit", "kind": "network", "file": path.name})
                continue
        if disc is None:
            why = "per-instance schedule without an exportable network" if row is not None or fitted else "not run yet"
            missing.append((cell, why))
            continue
        rec = record(schedule, disc, **_meta(cell, source))
        json_path, csv_path = write_record(rec, out)
        written.append(json_path)
        index.append({**_index(cell), "source": source, "kind": "schedule", "file": json_path.name})
    if index:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(index[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(index)
        atomic_write_bytes(out / "index.csv", buf.getvalue().encode())
    return {"written": written, "networks": networks, "missing": missing, "out": out}


def _index(cell: Cell) -> dict:
    return {"model": plugin_label(cell.model), "solver": plugin_label(cell.solver), "method": plugin_label(cell.method),
            "nfe": cell.nfe, "seed": cell.seed, "cell": cell.hash}


def export_method(model_spec: dict, solver_spec: dict, method_spec: dict, nfes, out_dir) -> list[Path]:
    """Export a method that needs no teacher (a heuristic, `manual`, DMN) at each NFE."""
    from .discretization import FitContext
    from .models import make_model
    from .registry import METHODS
    from .solvers import make_solver

    model = make_model(model_spec)
    solver = make_solver(solver_spec)
    spec = dict(method_spec)
    cls = METHODS.get(spec.pop("name"))

    def no_teacher(split, n):
        raise UserError(f"method {method_spec['name']!r} learns from a teacher; run it in a grid and use "
                        f"`bench export --grid`")

    paths = []
    for nfe in nfes:
        steps = solver.steps_for_nfe(nfe)
        method = cls(**spec).bind(model.schedule, steps, solver, model=model)
        if cls.needs_fit:
            method.fit(FitContext(model=model, schedule=model.schedule, solver=solver, nfe=nfe, steps=steps,
                                  teacher=no_teacher, generator=torch.Generator().manual_seed(0)))
        probe = torch.zeros((1,) + tuple(model.data_shape), dtype=torch.float64)
        disc = method.discretize(probe).detach()
        if disc.batch != 1:
            raise UserError(f"method {method_spec['name']!r} gives each prior its own schedule; export it from a grid")
        rec = record(model.schedule, disc, model=model_spec, solver=solver_spec, method=method_spec, nfe=nfe,
                     seed=None, model_label=plugin_label(model_spec), solver_label=plugin_label(solver_spec),
                     method_label=plugin_label(method_spec), source="computed")
        paths.append(write_record(rec, out_dir)[0])
    return paths


__all__ = ["record", "forms", "to_csv", "write_record", "export_grid", "export_method", "export_network",
           "schedule_summary", "file_stem", "comfy_text"]
