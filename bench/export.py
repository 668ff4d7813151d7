"""`bench export`: schedules out of the harness, as JSON and CSV, with ready-to-paste forms.

For every (model, solver, method, NFE[, seed]) it writes `<name>.json` and `<name>.csv`:
  * the knots i = 0..N in the model's time `t`, the VE-equivalent noise level `sigma` = sigma/alpha
    = exp(-lambda), `lambda` = log(alpha/sigma) (DPM-Solver's half log-SNR) and `log_snr` =
    log(alpha^2/sigma^2) = 2 lambda; a decoupled evaluation time `t_eval` and output scale `scale`
    per step where the method has them (LD3, INDIS/GOD: no sampler outside the harness takes these;
    the forms below carry the knots only, so where they differ from the plain rule -- t_eval = t,
    scale = 1 -- the record and every form carry a `warning`, and `bench export` prints it);
  * the forms other samplers take, each with its convention stated in the file (`forms`).
    Checked against diffusers 0.42's source (`diffusers/schedulers/*.py`):
      - `EulerDiscreteScheduler.set_timesteps(sigmas=S)` takes S as VE sigmas and uses them as given
        (cast to float32; its `final_sigmas_type` is ignored when sigmas are passed), one step between
        consecutive values, so S is the cell's stepping list (below). The network's `timestep` is
        interpolated from its training table (linear in log sigma between integer steps): fractional,
        and clipped to the table's ends, so the table must cover the schedule.
      - `DPMSolverMultistepScheduler.set_timesteps(timesteps=T)` (and the DDIM/DEIS family) takes the
        evaluation steps only (N; N + 1 for `final_step: denoise`), as integer training steps of a DDPM table: it truncates them with
        `astype(int64)` (3.7 -> 3), so the export rounds to the nearest step and reports the largest
        change in log sigma that rounding makes (`max_log_sigma_rounding`; 0 when every knot is a
        training step, e.g. `linspace`/`leading`/`trailing`, AYS's lists). Where the last step lands
        is the scheduler's `final_sigmas_type`: "sigma_min" = training step 0 (the harness's t_min
        for tables in DPM-Solver's discrete time; `final_step: t_min`), "zero" (its default) = sigma 0
        (`final_step: zero`, and `denoise` with the N + 1 steps). There is no
        `sigmas=` argument. `lower_order_final` applies below 15 steps (the harness's dpmpp: below 10;
        both give a first-order last step for NFE < 10).
      - `UniPCMultistepScheduler` has no `timesteps=`; `sigmas=` is refused unless
        `use_flow_sigmas=True`. `FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=S)` takes N flow
        sigmas BEFORE its own `shift` (it shifts them: pass the model's unshifted time t), appends a
        terminal 0 and gives the network timestep = shifted sigma x num_train_timesteps; its last step
        lands at 0: exact for `final_step: zero` (N sigmas) and `denoise` (N + 1), not for `t_min`.
    Where the last step lands is the cell's solver `final_step` (`bench.solvers.base`), and every
    form follows it (`stepping_list`, the record's `final_step`): a sampler that steps between
    consecutive sigmas gets `t_min`: the N + 1 knots (its last step lands on sigma(t_min), the
    harness's sample); `zero`: the first N knots and a 0 (the last step goes to 0 from t_{N-1}: x0 of
    that state); `denoise`: the N + 1 knots and a 0 (the step sigma(t_min) -> 0 is x0(x_N, t_N)).
    Passed as they are, N steps run where the cell ran N (one more pair for `denoise`, its extra
    evaluation); no element is to be dropped or added.
    k-diffusion (`sigmas`): that list of VE sigmas (`get_sigmas_karras(n, ...)` returns n sigmas and
    a 0; the harness's `edm` at N steps is `get_sigmas_karras(N + 1, sigma_min, sigma_max, 7)`, its 0
    dropped for `t_min`). A sampler's own order rule still applies (k-diffusion's DPM++(2M) takes a
    second-order last step unless it lands on 0, the harness's dpmpp a first-order one below 10 steps).
    ComfyUI (`sigmas`, `text`): `text` goes into the ManualSigmas node, whose output is a SIGMAS
    input of SamplerCustom / SamplerCustomAdvanced (comma-separated decimals, never exponents: the
    node reads numbers with a digits-and-dots pattern, so `2e-05` would become 2 and -5); the same
    list as k-diffusion's (ComfyUI's samplers are k-diffusion's), in the model's sampling sigma: the VE
    sigma for VE/VP models, the (shifted) flow time for flow models (ComfyUI's ModelSamplingDiscreteFlow).
Values are what the method computes, in float64: a cell's row holds the global schedule it sampled
with, in the cell's dtype, so where the method can be rebuilt (a closed form, or a cached fit) its
float64 values are exported when they agree with the row's to float32 rounding (else the row's).
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
import sys
from pathlib import Path

import numpy as np
import torch

from .discretization import Discretization
from .errors import UserError
from .grid import Cell, load_grid, plugin_label
from .schedules import DiscreteVP, FlowOT, NoiseSchedule
from .seeding import stable_hash
from .store import ResultsRoot, atomic_write_bytes, atomic_write_json

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


FINAL_STEP_RULES = {
    "t_min": "the N + 1 knots as they are: N steps, the last landing on sigma(t_min), where the harness's sample is",
    "zero": "the first N knots and a 0: N steps, the last from t_{N-1} to sigma = 0 (the harness's x0(x_{N-1}, "
            "t_{N-1}); its t_N is unused)",
    "denoise": "the N + 1 knots and a 0: N steps to t_min, then the step sigma(t_min) -> 0, i.e. x0(x_N, t_N), "
               "the harness's extra evaluation",
}


def stepping_list(values: list[float], final_step: str = "t_min") -> list[float]:
    """The list a sampler that steps between consecutive values (k-diffusion, ComfyUI, diffusers'
    Euler with sigmas=) needs to reproduce a cell with this `final_step` (FINAL_STEP_RULES)."""
    if final_step == "t_min":
        return list(values)
    if final_step == "zero":
        return list(values[:-1]) + [0.0]
    if final_step == "denoise":
        return list(values) + [0.0]
    raise ValueError(f"final_step must be one of {', '.join(FINAL_STEP_RULES)}, got {final_step!r}")


def eval_warning(t: torch.Tensor, t_eval=None, scale=None) -> str | None:
    """A one-line warning when a global schedule carries a decoupled evaluation time or an output
    scale (LD3, GOD, INDIS) that differs from the plain rule (t_eval = t at each step, scale = 1):
    the plain samplers' forms take the knots only, so they do not reproduce the cell's samples."""
    t = t.detach().cpu().double()
    parts = []
    if t_eval is not None:
        t_eval = t_eval.detach().cpu().double().flatten()
        dev = float(((t_eval - t[:t_eval.numel()]).abs() / t[:t_eval.numel()].abs()).max())
        if dev > 0:
            parts.append(f"t_eval (differs from t by up to {dev:.3g}, relative)")
    if scale is not None:
        dev = float((scale.detach().cpu().double() - 1).abs().max())
        if dev > 0:
            parts.append(f"scale (differs from 1 by up to {dev:.3g})")
    if not parts:
        return None
    return ("this schedule also has " + " and ".join(parts) + ", which no plain sampler takes: the forms carry "
            "the knots only, so a sampler run on them does not reproduce the cell's samples (use the harness, "
            "or wrap the model in bench.kdiffusion_wrapper.LearnedScheduleDenoiser, which applies them per step "
            "for k-diffusion-style samplers such as sample_euler)")


def forms(schedule: NoiseSchedule, t: torch.Tensor, final_step: str = "t_min", warning: str | None = None) -> dict:
    """The ready-to-paste forms of one global schedule t [N+1] sampled with the solver's `final_step`
    (module docstring): passed as they are, they take the cell's steps, to where the cell's last lands."""
    t = t.detach().cpu().double()
    sigma = schedule.sigma_ve(t)
    rule = f"final_step: {final_step}: {FINAL_STEP_RULES.get(final_step, '')}"
    stepping = stepping_list(_floats(sigma), final_step)
    out: dict = {}
    diffusers: dict = {}
    if isinstance(schedule, FlowOT):
        flow_sigma = schedule.sigma(t)  # the OT time, i.e. the shifted time of a shifted model
        given = t if final_step == "denoise" else t[:-1]  # the scheduler appends its own 0
        lands = {"t_min": f"its last step lands at sigma 0, NOT at the harness's t_min = {schedule.t_min:.6g} "
                          "(no exact form: the scheduler always appends 0)",
                 "zero": "its last step lands at sigma 0, as the cell's (final_step: zero)",
                 "denoise": "its last step goes from t_min to sigma 0, the cell's final denoise (final_step: denoise)"}
        diffusers["FlowMatchEulerDiscreteScheduler"] = {
            "call": f"FlowMatchEulerDiscreteScheduler(shift={schedule.shift:g}, use_dynamic_shifting=False)"
                    ".set_timesteps(sigmas=SIGMAS)",
            "sigmas": _floats(given),
            "exact": final_step != "t_min",
            "convention": f"{given.numel()} flow sigmas before the scheduler's shift (the model's unshifted time t); "
                          "the scheduler shifts them, appends a terminal 0 and gives the network timestep = "
                          f"shifted sigma x num_train_timesteps; {lands[final_step]}.",
        }
        diffusers["UniPCMultistepScheduler"] = {
            "convention": "no timesteps= argument; sigmas= only with use_flow_sigmas=True (not round-trip tested here)"}
        comfy = stepping_list(_floats(flow_sigma), final_step)
        comfy_unit = "flow sigma (the shifted OT time, ComfyUI's ModelSamplingDiscreteFlow)"
    else:
        diffusers["EulerDiscreteScheduler"] = {
            "call": "scheduler.set_timesteps(sigmas=SIGMAS)",
            "sigmas": stepping,
            "convention": f"{len(stepping)} VE sigmas, used as given (float32), one step between consecutive values "
                          f"({rule}). The network gets a fractional "
                          "timestep interpolated (linear in log sigma) in the scheduler's training table, "
                          "clipped to its ends: the table must cover the schedule's sigmas.",
        }
        if isinstance(schedule, DiscreteVP):
            k = schedule.num_train_timesteps
            steps = schedule.step_index(t)  # fractional training steps n = t K - 1
            evaluated = steps if final_step == "denoise" else steps[:-1]
            rounded = evaluated.round()
            table = schedule.sigma_ve((rounded.clamp(0, k - 1) + 1) / k)
            err = (torch.log(table) - torch.log(sigma if final_step == "denoise" else sigma[:-1])).abs().max()
            ends_at_step0 = abs(float(steps[-1])) < 1e-6
            final_type = "sigma_min" if final_step == "t_min" else "zero"
            diffusers["EulerDiscreteScheduler"]["timesteps_fractional"] = _floats(steps[:-1])
            diffusers["EulerDiscreteScheduler"]["convention"] += (
                " timesteps_fractional: n = t K - 1 of the harness's discrete-time convention (for reference: "
                "the scheduler derives its own, equal at integer steps, linear in log sigma between them).")
            lands = {"t_min": "the last step lands at training step 0 with final_sigmas_type='sigma_min' (the "
                              "harness's t_min" + ("" if ends_at_step0 else
                                                   f"; NOT here: t_min is step {float(steps[-1]):.4g}") + ")",
                     "zero": "the last step lands at sigma 0 with final_sigmas_type='zero' (final_step: zero)",
                     "denoise": "the N + 1 knots; the step from t_min to sigma 0 with final_sigmas_type='zero' is the "
                                "cell's final denoise (diffusers takes it first-order; a multistep solver's order "
                                "rule at the step before may differ from the harness's)"}
            diffusers["DPMSolverMultistepScheduler"] = {
                "call": f"DPMSolverMultistepScheduler.from_config(config, final_sigmas_type='{final_type}')"
                        ".set_timesteps(timesteps=TIMESTEPS)",
                "timesteps": [int(v) for v in rounded.tolist()],
                "max_log_sigma_rounding": float(err),
                "exact": bool(float(err) < 1e-9 and (ends_at_step0 or final_step != "t_min")),
                "convention": f"{rounded.numel()} evaluation steps as integer training steps (diffusers truncates "
                              "fractional ones with astype(int64); these are rounded to the nearest); "
                              + lands[final_step] + ". Same for the DDIM/DEIS/DPM family.",
            }
        else:
            diffusers["DPMSolverMultistepScheduler"] = {
                "convention": "takes only integer training steps of a DDPM table (timesteps=); this model is "
                              "continuous-time: use EulerDiscreteScheduler's sigmas= with a table that covers them"}
        diffusers["UniPCMultistepScheduler"] = {
            "convention": "no timesteps= argument and sigmas= is refused unless use_flow_sigmas=True: "
                          "use DPMSolverMultistepScheduler's timesteps= (discrete models) instead"}
        comfy = stepping
        comfy_unit = "VE sigma"
    out["diffusers"] = diffusers
    out["k_diffusion"] = {
        "sigmas": stepping,
        "convention": f"VE sigmas to pass as they are: k-diffusion's samplers take one step between consecutive "
                      f"values ({rule}; `edm` at N steps is get_sigmas_karras(N + 1, ...) without its 0 for "
                      "t_min, with it for denoise). A sampler's own order rules still apply (k-diffusion's "
                      "DPM++(2M) takes a second-order last step unless it lands on 0; the harness's dpmpp "
                      "a first-order one below 10 steps).",
    }
    out["comfyui"] = {
        "sigmas": comfy,
        "text": comfy_text(comfy),
        "convention": f"a SIGMAS input of SamplerCustom(Advanced) in the model's sampling unit ({comfy_unit}); "
                      f"ComfyUI's samplers are k-diffusion's: same list, same rule ({rule}).",
    }
    if warning:  # next to every form a plain sampler takes
        for form in [*diffusers.values(), out["k_diffusion"], out["comfyui"]]:
            if "sigmas" in form or "timesteps" in form:
                form["warning"] = warning
    return out


def record(schedule: NoiseSchedule, disc: Discretization, final_step: str = "t_min", **meta) -> dict:
    """The export record of one global discretization (B = 1), sampled with the solver's `final_step`."""
    if disc.batch != 1:
        raise ValueError("record() takes a global schedule (B = 1); per-instance schedules export their network")
    t = disc.t[0].detach().cpu().double()
    lam = schedule.lambda_(t)
    rec = {**meta, "steps": disc.steps, "noise_schedule": schedule_summary(schedule),
           "t": _floats(t), "sigma": _floats(schedule.sigma_ve(t)), "lambda": _floats(lam),
           "log_snr": _floats(2 * lam), "final_step": final_step}
    for name in ("t_eval", "scale"):
        value = getattr(disc, name)
        if value is not None:
            rec[name] = _floats(value[0])
    rec["conventions"] = {k: v for k, v in CONVENTIONS.items() if k in rec}
    warning = eval_warning(t, disc.t_eval[0] if disc.t_eval is not None else None,
                           disc.scale[0] if disc.scale is not None else None)
    if warning:
        rec["warning"] = warning
    rec["forms"] = forms(schedule, t, final_step, warning)
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


def _checked_row(root: ResultsRoot, grid_name: str, cell_hash: str) -> dict | None:
    """The cell's row through `ResultsRoot.read_row` (checksum, schema, and the cell it names against
    its file name), or None when there is none; a row that fails is named on stderr and not exported
    (the next `run` quarantines and recomputes it)."""
    from .store import CorruptArtifact

    try:
        return root.read_row(grid_name, cell_hash)
    except CorruptArtifact as err:
        print(f"bench: not exporting {err} (the next run recomputes it)", file=sys.stderr)
        return None


def _disc_from_row(schedule: dict) -> Discretization:
    as_t = lambda k: None if k not in schedule else torch.tensor(schedule[k], dtype=torch.float64)  # noqa: E731
    return Discretization(as_t("t"), as_t("t_eval"), as_t("scale"))


def export_grid(grid_path, results="results", out_dir=None) -> dict:
    """Export every cell of a grid found in the results root; returns {"written", "networks", "missing", "out"}."""
    from .models import make_model
    from .runner import fit_cell

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
        row = _checked_row(root, grid.name, cell.hash)
        fitted = cell.needs_fit and root.fit_done(cell.fit_hash)
        disc, source = None, None
        row_disc = _disc_from_row(row["schedule"]) if row is not None and row.get("schedule") is not None else None
        if row_disc is not None and not (cell.needs_fit and not fitted):
            # the row keeps the values the cell sampled with, in the cell's dtype (float32 rounding shows
            # in float64: 0.00200000009); the method recomputes them in float64, kept when they agree
            disc, source = _recomputed(cell, root, row_disc), "row"
        elif row_disc is not None:
            disc, source = row_disc, "row"
        elif not cell.needs_fit or fitted:
            # the cached fit: fit_cell loads it (it never fits when fit.json exists); a method without a
            # fit is built as the runner builds it
            method, _ = fit_cell(cell, root)
            source = "fit" if cell.needs_fit else "computed"
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
        rec = record(schedule, disc, final_step=_final_step(cell.resolved.get("solver") or cell.solver),
                     **_meta(cell, source))
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


def _final_step(solver_spec: dict) -> str:
    from .solvers.base import Solver

    return solver_spec.get("final_step", Solver.Params.model_fields["final_step"].default)


def _recomputed(cell: Cell, root: ResultsRoot, row_disc: Discretization) -> Discretization:
    """The method's own float64 discretization of a cell whose row holds its schedule, or the row's
    values where the two differ by more than float32 rounding (the row is what the cell sampled with)."""
    from .models import make_model
    from .runner import fit_cell

    model = make_model(cell.model)
    method = fit_cell(cell, root)[0]  # the cached fit, or the method built as the runner builds it
    if getattr(method, "instance", False) or getattr(method, "uses_eval_targets", False):
        return row_disc  # its schedule depends on the prior or the targets: the row's is the one sampled
    probe = torch.zeros((1,) + tuple(model.data_shape), dtype=torch.float64)
    try:
        disc = method.discretize(probe).detach()
    except UserError:
        return row_disc
    if disc.batch != 1 or disc.t.dtype != torch.float64:
        return row_disc
    for name in ("t", "t_eval", "scale"):
        a, b = getattr(disc, name), getattr(row_disc, name)
        if (a is None) != (b is None) or (a is not None and (a.shape != b.shape or not torch.allclose(
                a, b, rtol=4 * torch.finfo(torch.float32).eps, atol=0))):
            return row_disc
    return disc


def _index(cell: Cell) -> dict:
    return {"model": plugin_label(cell.model), "solver": plugin_label(cell.solver), "method": plugin_label(cell.method),
            "nfe": cell.nfe, "seed": cell.seed, "cell": cell.hash}


def export_method(model_spec: dict, solver_spec: dict, method_spec: dict, nfes, out_dir) -> list[Path]:
    """Export a method that needs no teacher (a heuristic, `manual`, DMN) at each NFE."""
    from . import api

    model = api.model(model_spec)
    solver = api.solver(solver_spec)

    def no_teacher(split, n):
        raise UserError(f"method {method_spec['name']!r} learns from a teacher; run it in a grid and use "
                        f"`bench export --grid`")

    paths = []
    for nfe in nfes:
        method = api.bind(method_spec, model, solver, nfe)
        if method.needs_fit:
            api.fit(method, nfe=nfe, teacher=no_teacher)  # seed 0, no cache: nothing to learn from a teacher
        probe = torch.zeros((1,) + tuple(model.data_shape), dtype=torch.float64)
        disc = method.discretize(probe).detach()
        if disc.batch != 1:
            raise UserError(f"method {method_spec['name']!r} gives each prior its own schedule; export it from a grid")
        rec = record(model.schedule, disc, final_step=solver.params.final_step, model=model_spec, solver=solver_spec, method=method_spec, nfe=nfe,
                     seed=None, model_label=plugin_label(model_spec), solver_label=plugin_label(solver_spec),
                     method_label=plugin_label(method_spec), source="computed")
        paths.append(write_record(rec, out_dir)[0])
    return paths


__all__ = ["record", "forms", "to_csv", "write_record", "export_grid", "export_method", "export_network",
           "schedule_summary", "file_stem", "comfy_text", "stepping_list", "eval_warning"]
