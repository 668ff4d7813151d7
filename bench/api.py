"""`bench` as a library: the few calls under the command line.

    import bench
    disc = bench.discretize("digits", "ipndm", "gits", nfe=4, results="results")   # fits (or loads) GITS
    x0 = bench.sample("digits", "ipndm", "edm", nfe=4, n=16)
    bench.run("grids/toy2d.yaml", results="results")
    df = bench.results("results")                                                 # the report's long table

Plugins are named by a spec: a name, a mapping `{name: ..., **params}` or a `bench.spec.PluginSpec`
(`Registry.build` constructs any of them). A method that needs a fit is fitted through the runner's
`fit_cell` for the one-cell grid that `run` would build for the same entries (the teacher, samples,
dtype and first seed of `grid` when given, else the grid defaults), so `discretize`, `bench
show-schedule` and `bench run` share one fit cache under the results root: whichever runs first fits,
the others load its fit. `bind` and `fit` are the assembly every caller uses: a method bound to a
model's noise schedule, the solver's step count and the solver, and fitted with a `FitContext`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .discretization import FitContext
from .errors import UserError
from .registry import METHODS, METRICS, MODELS, SCHEDULES, SOLVERS
from .solvers.base import StepPlan
from .spec import PluginSpec

DEFAULT_RESULTS = "results"


# -- building plugins -----------------------------------------------------------------------------

def model(spec):
    """The model of a spec (`MODELS.build`)."""
    return MODELS.build(spec)


def solver(spec):
    """The solver of a spec (`SOLVERS.build`)."""
    return SOLVERS.build(spec)


def bind(method, model, solver, nfe: int | None = None, *, steps: int | None = None):
    """A method (a spec, or a plugin instance) bound to `model`'s noise schedule, the step count that
    spends `nfe` evaluations with `solver` (or `steps` given directly) and the solver; `model` is what
    the method may evaluate (per-instance searches; the runner passes a counting wrapper)."""
    if steps is None:
        if nfe is None:
            raise TypeError("bind() needs nfe or steps")
        plan = solver.plan(nfe)
    else:
        plan = StepPlan(int(nfe) if nfe is not None else (solver.nfe(steps) if solver is not None else int(steps)),
                        int(steps))
    if not hasattr(method, "bind"):
        method = METHODS.build(method)
    method = method.bind(model.schedule, plan.steps, solver, model=model)
    method.plan = plan
    return method


def _no_teacher(method):
    def teacher(split, n):
        raise UserError(f"method {method.name!r} learns from a teacher; run it in a grid or call "
                        "bench.discretize(..., results=ROOT), which makes the teacher set")
    return teacher


def fit(method, *, teacher=None, generator: torch.Generator | None = None, nfe: int | None = None,
        **context) -> FitContext:
    """Fit a bound method: `method.fit` with a `FitContext` on the method's own model, noise schedule,
    solver and steps. `teacher(split, n)` returns a `TeacherSet` (default: a UserError if the method asks
    for one); `generator` defaults to seed 0; `nfe` to the solver's count for the steps; any other
    `FitContext` field (train_size, device, progress, artifact_dir, quarantine) passes through."""
    if nfe is None:
        plan = getattr(method, "plan", None)
        nfe = plan.nfe if plan is not None else (method.solver.nfe(method.steps) if method.solver is not None
                                                 else method.steps)
    model = method.model
    ctx = FitContext(model=model, schedule=method.noise_schedule, solver=method.solver, nfe=nfe,
                     steps=method.steps, teacher=teacher or _no_teacher(method),
                     generator=generator if generator is not None else torch.Generator().manual_seed(0), **context)
    method.fit(ctx)
    return ctx


# -- one cell, as `run` builds it -----------------------------------------------------------------

def cell(model, solver, method, nfe: int, *, grid=None, seed: int | None = None, name: str = "api"):
    """The `Cell` that a grid listing these entries would hold: the teacher, samples, dtype, metrics and
    first seed of `grid` (a grid file, a `Grid` or a grid mapping) when given, else the grid defaults;
    `seed` picks another seed. Its fit key is the one `run` uses for such a grid."""
    from .grid import Grid, parse_grid, read_grid_file

    if grid is None:
        base = {}
    elif isinstance(grid, Grid):
        base = grid.raw or {}
    elif isinstance(grid, dict):
        base = grid
    else:
        base = read_grid_file(grid)
    raw = {"name": name, "models": [PluginSpec.parse(model, "model").as_dict()],
           "solvers": [PluginSpec.parse(solver, "solver").as_dict()],
           "methods": [PluginSpec.parse(method, "method").as_dict()], "nfe": [int(nfe)],
           "metrics": base.get("metrics", ["mse"])}
    for key in ("teacher", "samples", "dtype", "seeds"):
        if key in base:
            raw[key] = base[key]
    if seed is not None:
        raw["seeds"] = [int(seed)]
    elif "seeds" in raw:
        raw["seeds"] = raw["seeds"][:1]
    return parse_grid(raw).cells[0]


def fitted(model, solver, method, nfe: int, *, results=DEFAULT_RESULTS, grid=None, seed: int | None = None,
           device="cpu", progress=None):
    """(method, fit info): the method bound for `nfe` evaluations of `solver` on `model`, fitted through
    the results root's fit cache (loaded when `run` or an earlier call fitted the same key). A method
    without a fit is bound and returned at once (info: no fit)."""
    from .runner import fit_cell
    from .store import ResultsRoot

    plan_solver = SOLVERS.build(solver)
    plan_solver.plan(nfe)  # an NFE the solver cannot spend: the solver's own one-line error
    if not METHODS.get(PluginSpec.parse(method, "method").name).needs_fit:
        plugin_model = MODELS.build(model)
        return bind(method, plugin_model, plan_solver, nfe), {"fit_seconds": 0.0, "fit_nfe": 0, "cached": False}
    the_cell = cell(model, solver, method, nfe, grid=grid, seed=seed)
    return fit_cell(the_cell, ResultsRoot(results), device, progress)


def first_prior(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x_T, cond) of the first evaluation prior of seed 0 in float64: the prior whose schedule
    `discretize` and `bench show-schedule` show for a per-instance method."""
    from .seeding import labels_for, noise_from_seeds, sample_seeds

    x_T = model.prior(noise_from_seeds(sample_seeds("eval", 0, 1), model.data_shape)).double()
    return x_T, labels_for(range(1), model.num_classes)


def discretize(model, solver, method, nfe: int, *, results=DEFAULT_RESULTS, grid=None, seed: int | None = None,
               x_T=None, cond=None, device="cpu"):
    """The `Discretization` (t, and t_eval / scale where the method has them) of `method` for `nfe`
    evaluations of `solver` on `model`, fitted as `fitted` does; for x_T (default: `first_prior`)."""
    method, _ = fitted(model, solver, method, nfe, results=results, grid=grid, seed=seed, device=device)
    if x_T is None:
        x_T, cond = first_prior(method.model if method.model is not None else MODELS.build(model))
    return method.discretize(x_T, cond)


def sample(model, solver, method, nfe: int, *, n: int = 16, seed: int = 0, x_T=None, cond=None,
           results=DEFAULT_RESULTS, grid=None, device="cpu", batch_size: int = 4096) -> torch.Tensor:
    """Samples x_0 of `method` for `nfe` evaluations of `solver` on `model`, from x_T (default: the
    first `n` evaluation priors of `seed`, as a cell's), without gradients."""
    from .runner import load_model, sample as sample_batches
    from .teacher import priors

    method, _ = fitted(model, solver, method, nfe, results=results, grid=grid, device=device)
    net = load_model(PluginSpec.parse(model, "model").as_dict(label=False), torch.device(device))
    if x_T is None:
        _, x_T, cond = priors(net, "eval", seed, n, device=device)
    return sample_batches(net, method.solver, method, x_T, cond, batch_size)[0]


# -- grids and results ----------------------------------------------------------------------------

def run(grid, results=DEFAULT_RESULTS, *, device: str = "cpu", jobs: int = 1, quiet: bool = True):
    """Run every missing cell of `grid` (a grid file, a `Grid` or a grid mapping as a file holds it) on
    this machine, as `bench run --executor local` does; returns the launcher's plan."""
    from .grid import Grid, load_grid, parse_grid
    from .launch import launch
    from .launch_config import make_launch_config
    from .preflight import check_paths
    from .store import check_writable

    if isinstance(grid, dict):
        grid = parse_grid(grid)
    elif not isinstance(grid, Grid):
        grid = load_grid(grid)
    check_paths(grid.cells)
    check_writable(results)
    config = make_launch_config(grid.launch, executor="local", jobs=jobs)
    return launch(grid, root=results, config=config, device=device, quiet=quiet)


def results(where=DEFAULT_RESULTS, *, root=None, level: float = 0.95, n_resamples: int = 2000):
    """The report's long table (`bench.report.long_table`: one line per cell x metric, every resolved
    parameter, the statistics over seeds) as a `pandas.DataFrame`. `where` is a results root (every
    grid run there), or a grid (a grid file, a `Grid` or a grid's name) whose rows are read from `root`
    (default: `results`)."""
    from .grid import Grid, load_grid
    from .report import long_table

    if isinstance(where, Grid):
        return long_table(where, root or DEFAULT_RESULTS, level, n_resamples)
    path = Path(where)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return long_table(load_grid(path, force=True), root or DEFAULT_RESULTS, level, n_resamples)
    if root is not None:  # a grid's name under root
        return long_table(str(where), root, level, n_resamples)
    return long_table(None, where, level, n_resamples)


__all__ = ["PluginSpec", "MODELS", "SOLVERS", "METHODS", "METRICS", "SCHEDULES", "model", "solver", "bind", "fit",
           "cell", "fitted", "first_prior", "discretize", "sample", "run", "results"]
