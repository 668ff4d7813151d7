"""One cell of a grid: fit the method (cached) -> sample the evaluation priors -> score -> write row.

`run_cell` is a pure function of the cell and the results root, so it can run in this process, a
worker process or a Slurm job alike (submitit's model: results on disk, nothing returned that
matters). A finished cell is a row that reads cleanly (`ResultsRoot.row_done`); a cell whose row exists
is skipped, one whose row is corrupt is quarantined and recomputed. Fits are cached under the cell's
fit key, so every cell that shares it (same resolved model, solver, steps, method, seed, teacher and
training size) reuses one artifact; `fit.json` records the fit key and the SHA-256 of `state.pt`, both
checked on load (a fit folder holding another key's fit is quarantined and refitted).

One writer per cell and per fit: `run_cell` holds the cell's lock while it computes, `fit_cell` the
fit's (`bench.store.lock`). A second process that wants the same cell waits for the first and then
finds its row; a fit resumes only from a checkpoint that its own lock protects. With
`wait=False`, `run_cell` returns None at once instead of waiting (the launcher retries those last).
"""
from __future__ import annotations

import datetime
import platform
import resource
import socket
import subprocess
import time
from functools import lru_cache
from pathlib import Path

import torch

from . import __version__
from .api import bind, fit
from .counting import NetworkCounter
from .filehash import sha256_of_file
from .grid import Cell, _unlabelled, plugin_label
from .images import save_sample_grid
from .metrics import MetricContext, make_metric
from .models import make_model
from .models._lazy import LazyDenoiser
from .registry import METHODS
from .rows import write_row
from .scores import write_scores
from .seeding import generator_for, stable_hash
from .solvers import make_solver
from .store import (CorruptArtifact, ResultsRoot, Timeout, atomic_write_json, atomic_write_torch, is_root_fault,
                    read_json, read_torch, verify_key)
from .teacher import DTYPES, teacher_set


PREVIEW = 8  # samples per cell kept for the report's sample panels




_MODELS: dict[str, torch.nn.Module] = {}


def load_model(spec: dict, device) -> torch.nn.Module:
    """Build a model once per process and device."""
    key = f"{stable_hash(spec)}@{device}"
    if key not in _MODELS:
        model = make_model(spec)
        if isinstance(model, LazyDenoiser):  # file-backed models load their weights now, onto `device`
            model.load(device)
        _MODELS[key] = model.to(device).eval()
    return _MODELS[key]


def resolved_params(spec: dict, cls) -> dict:
    """The constructor arguments of a resolved spec: its declared parameters only."""
    return {k: v for k, v in spec.items() if k in cls.Params.model_fields}


def build_method(cell: Cell, model, solver):
    """The cell's method with its resolved parameters (every `auto` as the cell's key records it)."""
    cls = METHODS.get(cell.method["name"])
    method = cls(**resolved_params(cell.resolved["method"], cls))
    return bind(method, NetworkCounter(model), solver, cell.nfe, steps=cell.steps)


def cell_teacher(cell: Cell, model, root: ResultsRoot, split: str, n: int, device):
    return teacher_set(model, cell.teacher, split, cell.seed, n, root,
                       batch_size=cell.samples["batch"], device=device, dtype=DTYPES[cell.dtype],
                       key_parts={"model": cell.resolved["model"], "teacher": cell.resolved["teacher"]})


def load_fit(method, fit_dir: Path, root: ResultsRoot, device, fit_key=None) -> dict | None:
    """The fit info of a finished fit, with `method` loaded from it; None when there is none. A
    fit whose files do not parse, whose state fails its checksum, or which holds another fit key than
    `fit_key` (default: the folder's name) is quarantined (None)."""
    fit_hash = fit_dir.name
    info_path, state_path = root.fit_record_path(fit_hash), root.fit_state_path(fit_hash)
    if not root.fit_done(fit_hash):
        return None
    try:
        record = read_json(info_path)
        if not isinstance(record, dict) or not isinstance(record.get("info"), dict):
            raise CorruptArtifact(info_path, "not a fit record")
        verify_key(info_path, fit_key if fit_key is not None else fit_dir.name, record.get("fit_key"))
        want = record.get("state_sha256")
        if want is not None and sha256_of_file(state_path) != want:
            raise CorruptArtifact(state_path, "checksum mismatch")
        method.load_state_dict(read_torch(state_path, map_location=device, weights_only=False))
    except OSError as err:
        if is_root_fault(err, root.root):
            raise
        root.quarantine(fit_dir, f"cannot read it ({err.strerror or err})")
        return None
    except Exception as err:  # noqa: BLE001 - any unreadable fit is set aside and refitted
        reason = err.reason if isinstance(err, CorruptArtifact) else (str(err).splitlines()[0] if str(err) else type(err).__name__)
        root.quarantine(fit_dir, reason)
        return None
    return record["info"]


def fit_cell(cell: Cell, root: ResultsRoot, device="cpu", progress=None):
    """Return the cell's method, fitted (from the cache when the fit key has one), and fit info."""
    device = torch.device(device)
    model = load_model(_unlabelled(cell.model), device)
    solver = make_solver(_unlabelled(cell.solver))
    method = build_method(cell, model, solver)
    if not method.needs_fit:
        return method, {"fit_seconds": 0.0, "fit_nfe": 0, "cached": False}
    fit_dir = root.fit_dir(cell.fit_hash)
    info = load_fit(method, fit_dir, root, device, cell.fit_key())
    if info is not None:
        return method, {**info, "cached": True}
    with root.fit_lock(cell.fit_hash):
        info = load_fit(method, fit_dir, root, device, cell.fit_key())  # another process may have finished it meanwhile
        if info is not None:
            return method, {**info, "cached": True}
        counting = method.model
        ctx = fit(
            method, teacher=lambda split, n: cell_teacher(cell, model, root, split, n, device),
            # seeded from the entries as written, so a changed default keeps the fit's randomness
            generator=generator_for(cell.seed_key(), "fit"), device=device, progress=progress,
            artifact_dir=fit_dir, checkpoint_path=root.fit_checkpoint_path(cell.fit_hash),
            train_size=cell.samples["train"], quarantine=root.quarantine,
        )
        info = {"fit_seconds": ctx.total_seconds(), "fit_nfe": ctx.total_nfe(), "fit_resumes": ctx.resumes,
                **method.fit_info()}
        counting.calls = counting.rows = 0
        state_path = atomic_write_torch(root.fit_state_path(cell.fit_hash), method.state_dict())
        record = {"fit_key": cell.fit_key(), "info": info, "state_sha256": sha256_of_file(state_path)}
        atomic_write_json(root.fit_record_path(cell.fit_hash), record)  # written last: marks the fit done
        root.fit_checkpoint_path(cell.fit_hash).unlink(missing_ok=True)  # the finished fit supersedes it
    return method, {**info, "cached": False}


def sample(model, solver, method, x_T, cond, batch_size: int, targets=None):
    """Sample every prior in batches without gradients; returns (x0, the first batch's schedule).

    `targets` (the teacher endpoints) go to `method.discretize_evaluation`, which only methods with
    `uses_eval_targets` read."""
    outputs, first = [], None
    with torch.no_grad():
        for i in range(0, x_T.shape[0], batch_size):
            xb = x_T[i : i + batch_size]
            cb = None if cond is None else cond[i : i + batch_size]
            disc = method.discretize_evaluation(xb, cb, None if targets is None else targets[i : i + batch_size])
            if first is None:
                first = disc
            outputs.append(solver.sample(model, xb, disc, cb))
    return torch.cat(outputs), first


def decode(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`model.decode` (the identity unless the model is latent) in batches, without gradients."""
    fn = getattr(model, "decode", None)
    if fn is None or x.shape[0] == 0:
        return x
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def run_cell(cell: Cell, root="results", device="cpu", progress=None, overwrite=False,
             wait: bool = True) -> Path | None:
    """Run one cell and write its row; skip it if its row exists and reads cleanly. Returns the
    row's path, or None when `wait` is False and another process holds the cell."""
    root = ResultsRoot(root) if not isinstance(root, ResultsRoot) else root
    row_path = root.row_path(cell.grid, cell.hash)
    if not overwrite and root.row_done(cell):
        return row_path
    try:
        with root.cell_lock(cell.grid, cell.hash, timeout=-1 if wait else 0):
            if not overwrite and root.row_done(cell):
                return row_path  # computed by the process that held the lock
            return _compute_cell(cell, root, row_path, device, progress)
    except Timeout:
        return None


def _compute_cell(cell: Cell, root: ResultsRoot, row_path: Path, device, progress) -> Path:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    method, fit_info = fit_cell(cell, root, device, progress)
    model = load_model(_unlabelled(cell.model), device)
    solver = method.solver
    evaluation = cell_teacher(cell, model, root, "eval", cell.samples["eval"], device)

    counting = NetworkCounter(model)
    _sync(device)
    start = time.perf_counter()
    samples, disc = sample(counting, solver, method, evaluation.x_T, evaluation.cond, cell.samples["batch"],
                           targets=evaluation.x0)
    _sync(device)
    sample_seconds = time.perf_counter() - start
    n_batches = -(-len(evaluation) // cell.samples["batch"])

    # Latent models score decoded images: samples and teacher endpoints go through model.decode.
    samples = decode(model, samples, cell.samples["batch"])
    teacher_x0 = decode(model, evaluation.x0, cell.samples["batch"])
    # Seeded from the model, seed and evaluation size (not the cell) so that all cells of a sweep
    # share the metrics' reference samples: method differences are not blurred by reference noise.
    metric_ctx = MetricContext(teacher=teacher_x0, model=model, device=device, results_root=root.root,
                               generator=generator_for(_unlabelled(cell.model), cell.seed, len(evaluation),
                                                       "metrics"))
    if samples.ndim == 4:  # image models keep a small grid of their samples, and the first few
        # samples beside their teacher endpoints for the report's labelled panels
        save_sample_grid(samples[:64], root.samples_path(cell.grid, cell.hash))
        atomic_write_torch(root.preview_path(cell.grid, cell.hash),
                           {"samples": samples[:PREVIEW].detach().cpu(), "teacher": teacher_x0[:PREVIEW].detach().cpu(),
                            "cell": cell.hash})
    metrics, higher, per_sample = {}, {}, {}
    for spec in cell.metrics:
        metric = make_metric(_unlabelled(spec))
        values, scores = metric.compute_per_sample(samples, metric_ctx)
        metrics.update(values)
        per_sample.update(scores)
        higher[metric.name] = metric.higher_is_better
    # per-sample values of the metrics that are means over samples, in the order of the priors
    scores_sha256 = (write_scores(root.scores_path(cell.grid, cell.hash), cell.hash, per_sample)
                     if per_sample else None)

    config = cell.config()
    row = {
        "cell": cell.hash,
        "grid": cell.grid,
        **{k: v for k, v in config.items() if k != "metrics"},
        "metrics_spec": config["metrics"],
        "steps": cell.steps,
        "model_label": plugin_label(cell.model),
        "model_weights_sha256": getattr(model, "weights_sha256", None),  # models that ship weights (digits-net)
        "solver_label": plugin_label(cell.solver),
        "method_label": plugin_label(cell.method),
        "heuristic": bool(method.heuristic),
        # one of the four closed forms the papers compare against: the report's "best heuristic" picks among them
        "paper_baseline": bool(getattr(method, "paper_baseline", False)),
        "metrics": metrics,
        "higher_is_better": higher,
        "scores_sha256": scores_sha256,  # SHA-256 of <root>/<grid>/scores/<cell>.npz (bench.scores)
        # NFE in the papers' convention (a guided evaluation counts once); the network's own
        # evaluations per sample (2 x NFE under classifier-free guidance) beside it.
        "nfe_expected": solver.nfe(cell.steps),
        "nfe_measured": counting.calls / n_batches,
        "network_evals_expected": solver.nfe(cell.steps) * counting.evals_per_call,
        "network_evals_measured": counting.network_evals / n_batches,
        # evaluations a method spends inside `schedule` (per-instance searches), per sample
        "schedule_nfe": method.model.calls / n_batches,
        "uses_eval_targets": bool(method.uses_eval_targets),
        "fit": fit_info,
        "fit_key": cell.fit_hash,
        "sample_seconds": sample_seconds,
        "samples_per_second": len(evaluation) / sample_seconds if sample_seconds > 0 else None,
        "schedule": disc.to_dict() if disc.batch == 1 else None,
        "device": str(device),
        **_memory(device),
        "versions": _versions(),
        "git_rev": _git_revision(),
        "host": socket.gethostname(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_row(row_path, row)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory(device) -> dict:
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20, "peak_memory_kind": "cuda-allocated"}
    # ru_maxrss is the process's peak resident set (KiB on Linux), not this cell's alone.
    return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_memory_kind": "process-rss"}


@lru_cache(maxsize=1)
def _versions() -> dict:
    import numpy

    return {"bench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


@lru_cache(maxsize=1)
def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
