"""`python -m bench`: the command line. It parses arguments and calls the engine; no logic of its own.

    python -m bench run --grid grids/toy2d.yaml [--jobs N] [--device cuda] [--results DIR]
                        [--executor local|submitit-local|slurm] [--detach] [--cells-per-job N] ...
                        [--set nfe=[4,6]] [--only method=edm,ld3] [--dry-run]
    python -m bench status --grid grids/toy2d.yaml [--all] [--json]
    python -m bench report [--grid grids/toy2d.yaml] [--format text|markdown|csv|latex] [--out FILE]
                           [--only KEY=V1,V2 ...]
    python -m bench check --study studies/indis-toy.yaml | --grid grids/indis-toy.yaml [--results DIR]
    python -m bench gc --grid grids/toy2d.yaml [--delete]
    python -m bench compare ROOT_A ROOT_B [--grid grids/toy2d.yaml] [--rtol R] [--atol A]
    python -m bench list
    python -m bench show-schedule --model toy2d --method edm --nfe 5 [--solver euler]
    python -m bench export --grid grids/toy2d.yaml [--results DIR] [--out DIR]
    python -m bench export --model digits --method edm --nfe 4 5 [--solver euler] --out DIR
    python -m bench fid-ref --model digits | --images DIR | --array FILE.npz [--name NAME]

User errors (bad grid, unknown names, missing files) print one line `bench: error: ...` and exit 2.
"""
from __future__ import annotations

import argparse
import sys

from .errors import UserError


def _parse_value(text: str):
    from .grid import load_yaml  # as a grid reads it (`1e-1` is a number)

    return load_yaml(text)


def _spec(name: str, params: list[str] | None) -> dict:
    spec = {"name": name}
    for item in params or []:
        if "=" not in item:
            raise UserError(f"--param expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        spec[key] = _parse_value(value)
    return spec


def check_device(device: str) -> str:
    """`--device` as torch understands it, on a device this machine has; else one UserError."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device: {device!r} is not a torch device; use cpu, cuda, cuda:1 or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: this machine has no CUDA device; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise UserError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"--device {device}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device: {device!r} is not supported; use cpu, cuda or mps")
    return device


def cmd_run(args):
    from .launch import launch
    from .launch_config import launch_overrides, make_launch_config
    from .preflight import check_paths
    from .store import check_writable

    check_device(args.device)
    if args.study:  # a study runs its grid; what it needs is listed with where to get it (bench.studies)
        from .studies import check_needs, load_study

        study = load_study(args.study)
        check_needs(study, args.results)
        args.grid = str(study.grid_path)
    elif not args.grid:
        raise UserError("run needs --grid GRID or --study STUDY")
    from .overrides import load_grid_for_run

    grid = load_grid_for_run(args.grid, sets=args.set, only=args.only, force=args.force)
    if args.dry_run:  # the cells, fits and teacher sets, their cost and what is done; nothing runs
        from .dry_run import describe

        print(describe(grid, args.results, source=" ".join([args.grid] + [f"--set {s}" for s in args.set or []]
                                                           + [f"--only {o}" for o in args.only or []])))
        return
    check_paths(grid.cells)  # every missing weight / prompt file at once, before anything runs
    check_writable(args.results)
    config = make_launch_config(grid.launch, **launch_overrides(args))
    launch(grid, root=args.results, config=config, device=args.device, quiet=args.quiet,
           command=[sys.executable, "-m", "bench", *(args.argv or [])])
    if not args.quiet and not config.detach:
        results = "" if args.results == "results" else f" --results {args.results}"
        print(f"rows in {args.results}/{grid.name}/rows; `python -m bench report --grid {args.grid}{results}` "
              "prints the tables", file=sys.stderr)


def cmd_status(args):
    from .grid import load_grid
    from .status import format_status, status_json, sweep_status

    grid = load_grid(args.grid, force=True)
    status = sweep_status(grid, args.results)
    print(status_json(status) if args.json else format_status(status, show_all=args.all))


def cmd_report(args):
    from .grid import load_grid
    from .report_files import print_and_write_report
    from .stats import check_settings

    if args.digits < 1:
        raise UserError(f"--digits must be an integer >= 1 (significant digits), got {args.digits}")
    grid = load_grid(args.grid, force=True) if args.grid else None
    if args.study:
        from .studies import load_study

        grid = load_study(args.study).grid
    check_settings(args.ci_level, args.bootstrap)
    if args.plots:
        _check_report_writable(args.results)
    # --no-plots still writes the long CSV/parquet and the tables, where the root can be written
    print_and_write_report(args.results, grid, args.format, args.digits, write_files=args.plots or _writable(args.results),
                           plots=args.plots, level=args.ci_level, n_resamples=args.bootstrap,
                           brackets=args.brackets, jobs=args.jobs, studies=[args.study] if args.study else None,
                           out=args.out, only=args.only)


def _writable(root) -> bool:
    try:
        _check_report_writable(root)
    except UserError:
        return False
    return True


def cmd_check(args):
    """Measured against published values; exit 1 when a value fails (`bench.studies`)."""
    from .studies import check, format_check, load_study, studies_for_grid

    if bool(args.study) == bool(args.grid):
        raise UserError("check takes --study STUDY or --grid GRID (the shipped studies of that grid)")
    if args.study:
        studies = [load_study(args.study)]
    else:
        name = load_grid_arg(args.grid).name
        studies = studies_for_grid(name)
        if not studies:
            raise UserError(f"--grid {args.grid}: no study in studies/ publishes values for grid {name!r}; "
                            "pass --study")
    failed = False
    for study in studies:
        results = check(study, args.results)
        print(format_check(study, results))
        failed |= any(r.status == "fail" for r in results)
    return 1 if failed else 0


def _check_report_writable(root) -> None:
    import os
    from pathlib import Path

    folder = Path(root)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        raise UserError(f"--results: {root} is read-only, so the plots cannot be written; pass --no-plots "
                        "or a writable results root")


def cmd_gc(args):
    from .gc import collect, format_garbage, remove

    garbage = collect(load_grid_arg(args.grid), args.results)
    print(format_garbage(garbage, deleted=args.delete))
    if args.delete:
        remove(garbage, args.results)


def cmd_compare(args):
    """The same cells in two results roots; exit 1 past tolerance (`bench.compare`)."""
    from .compare import compare_roots, format_comparison

    grid = load_grid_arg(args.grid) if args.grid else None
    result = compare_roots(args.root_a, args.root_b, grid, rtol=args.rtol, atol=args.atol)
    print(format_comparison(result, args.root_a, args.root_b))
    return 1 if result.failed else 0


def load_grid_arg(path):
    from .grid import load_grid

    return load_grid(path, force=True)


def cmd_list(args):
    from .registry import METHODS, METRICS, MODELS, SCHEDULES, SOLVERS

    for title, registry in (("models", MODELS), ("schedules", SCHEDULES), ("solvers", SOLVERS),
                            ("methods", METHODS), ("metrics", METRICS)):
        print(f"{title}:")
        for name, cls in registry.items():
            doc = (cls.__module__ and sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip()
            first = doc.splitlines()[0] if doc else ""
            print(f"  {name:<18} {first}")
            params = getattr(cls, "Params", None)
            if params is not None:
                from .params import field_table

                for field, kind, default, doc in field_table(params):
                    print(f"      {field} = {default!r}  ({kind}) {doc}")
        for alias, target, note in registry.aliases():
            print(f"  {alias:<18} = {target}" + (f" ({note})" if note else ""))


def cmd_show_schedule(args):
    """Fitted methods fit (or load their fit) through the results root's cache, for the cell a grid
    would build (teacher, samples, dtype and seed from --grid when given): `bench.api.fitted`."""
    from . import api

    model_spec = _spec(args.model, args.model_param)
    solver_spec, method_spec = _spec(args.solver, args.solver_param), _spec(args.method, args.param)
    model = api.model(model_spec)
    print(_schedule_units(model.schedule))
    for nfe in args.nfe:
        method, info = api.fitted(model_spec, solver_spec, method_spec, nfe, results=args.results, grid=args.grid)
        # a per-instance method shows the schedule of the first evaluation prior
        t = method.discretize(*api.first_prior(model)).t[0]
        t_line, sigma_line = _schedule_lines(f"nfe={nfe} steps={method.steps}", model.schedule, t)
        if method.needs_fit:
            how = "cached fit" if info.get("cached") else "fitted"
            t_line += f"  ({how}: {info.get('fit_seconds', 0.0):.1f} s, {info.get('fit_nfe', 0)} network evaluations)"
        print(t_line)
        print(sigma_line)


def _schedule_units(schedule) -> str:
    """The header of `show-schedule`: what its two rows are, in which unit."""
    spec = schedule.spec()
    return (f"t: the model's time ({spec.get('name', type(schedule).__name__)} schedule, t_max={schedule.t_max:.6g}, "
            f"t_min={schedule.t_min:.6g}); sigma: the VE noise level sigma(t)/alpha(t) (k-diffusion / ComfyUI "
            "sigmas); float64 as the method computed them, 6 significant digits (bench export writes every digit)")


def _schedule_lines(head: str, schedule, t) -> list[str]:
    t = t.detach().cpu().double()
    fmt = lambda v: " ".join(f"{x:.6g}" for x in v.tolist())  # noqa: E731
    return [f"{head}: t {fmt(t)}", f"{' ' * len(head)}  sigma {fmt(schedule.sigma_ve(t))}"]


def cmd_export(args):
    from .export import export_grid, export_method

    if args.grid:
        if args.method or args.nfe:
            raise UserError("export takes either --grid (cells from the results root) or --method/--nfe, not both")
        result = export_grid(args.grid, args.results, args.out)
        print(f"{len(result['written'])} schedules and {len(result['networks'])} schedule networks in {result['out']}"
              f" (index.csv lists them)")
        _print_export_warnings(result["written"])
        if result["missing"]:
            print(f"{len(result['missing'])} cells not exported:")
            for cell, why in result["missing"]:
                print(f"  {cell.label()}: {why}")
        return
    if not args.method or not args.nfe:
        raise UserError("export needs --grid GRID, or --method NAME --nfe N [N ...] (with --model, --solver)")
    out = args.out or "exports"
    paths = export_method(_spec(args.model, args.model_param), _spec(args.solver, args.solver_param),
                          _spec(args.method, args.param), args.nfe, out)
    for path in paths:
        print(f"{path} (+ .csv)")
    _print_export_warnings(paths)


def _print_export_warnings(paths) -> None:
    """One line per exported schedule whose forms lose its t_eval / scale (bench.export.eval_warning)."""
    import json

    for path in paths:
        warning = json.loads(path.read_text()).get("warning")
        if warning:
            print(f"warning: {path.name}: {warning}")


def _add_launch_options(run: argparse.ArgumentParser) -> None:
    """`run`'s executor flags; each overrides the same field of the grid's `launch:` section."""
    from .launch_config import add_launch_flags

    add_launch_flags(run.add_argument_group("launch (each flag overrides the grid's `launch:` section)"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every missing cell of a grid (locally, or as submitit / Slurm jobs)")
    run.add_argument("--grid", help="grid YAML file, e.g. grids/toy2d.yaml")
    run.add_argument("--study", help="study file (studies/*.yaml): runs its grid once everything it needs is here")
    run.add_argument("--results", default="results", help="results root (default: results)")
    run.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--force", action="store_true",
                     help="accept sizes beyond the sane limits (NFE > 1000, teacher steps > 10000)")
    run.add_argument("--set", action="append", metavar="KEY=YAML",
                     help="override a grid field, validated as the grid file is: --set nfe=[4,6], "
                          "--set samples.eval=256 (repeatable; bench/overrides.py)")
    run.add_argument("--only", action="append", metavar="FIELD=V1,V2",
                     help="run only the cells whose model/solver/method (name or label), nfe or seed is one "
                          "of the values, e.g. --only method=edm,ld3 (repeatable: all must hold)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the cells, fits and teacher sets, their cost in network evaluations and "
                          "what the results root already holds; run nothing")
    _add_launch_options(run)
    run.set_defaults(func=cmd_run)

    stat = sub.add_parser("status", help="done / running / queued / failed / pending cells of a grid's sweep")
    stat.add_argument("--grid", required=True, help="grid YAML file, e.g. grids/toy2d.yaml")
    stat.add_argument("--results", default="results", help="results root (default: results)")
    stat.add_argument("--all", action="store_true", help="list done cells too")
    stat.add_argument("--json", action="store_true", help="print the status as JSON")
    stat.set_defaults(func=cmd_status)

    rep = sub.add_parser("report", help="print tables (and write plots) from the result rows")
    rep.add_argument("--grid", help="only this grid's rows (default: every grid under --results)")
    rep.add_argument("--study", help="this study's grid, with its published values (default: the shipped "
                                     "studies of each grid)")
    rep.add_argument("--results", default="results", help="results root (default: results)")
    rep.add_argument("--format", default="text", choices=["text", "markdown", "csv", "latex"],
                     help="text or markdown tables; latex: what report/tables.tex holds (\\input it with "
                          "\\usepackage{booktabs}); csv: the long form, one line per cell x metric with its "
                          "statistics (what report/results_long.csv holds; pandas.read_csv reads it)")
    rep.add_argument("--out", help="write the output to this file instead of printing it")
    rep.add_argument("--only", action="append", metavar="KEY=V1,V2",
                     help="keep the lines whose KEY (grid, model, solver, method, nfe, metric, seed) is one of "
                          "the values, as the tables label them (a metric also by its name without the weights "
                          "hash); repeat for several keys; statistics are computed among the lines kept and "
                          "no report files are written, e.g. --only method=edm,ld3 --only nfe=4")
    rep.add_argument("--digits", type=int, default=4, help="significant digits (default: 4)")
    rep.add_argument("--no-plots", dest="plots", action="store_false",
                     help="do not draw figures (the long CSV/parquet and tables are still written)")
    rep.add_argument("--ci-level", type=float, default=0.95, help="interval level, in (0, 1) (default: 0.95)")
    rep.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    rep.add_argument("--brackets", action="store_true", help="print intervals as [low, high] instead of ± half-width")
    rep.add_argument("--jobs", type=int, default=2, help="processes drawing figures (joblib; default: 2)")
    rep.set_defaults(func=cmd_report)

    chk = sub.add_parser("check", help="measured against published values of a study: one line per value; "
                                       "exit 1 on a fail")
    chk.add_argument("--study", help="study file, e.g. studies/indis-toy.yaml")
    chk.add_argument("--grid", help="grid file: check every shipped study of that grid")
    chk.add_argument("--results", default="results", help="results root (default: results)")
    chk.set_defaults(func=cmd_check)

    gc = sub.add_parser("gc", help="list (and with --delete remove) rows and fits no current cell uses")
    gc.add_argument("--grid", required=True, help="grid YAML file, e.g. grids/toy2d.yaml")
    gc.add_argument("--results", default="results", help="results root (default: results)")
    gc.add_argument("--delete", action="store_true", help="remove them (default: only list)")
    gc.set_defaults(func=cmd_gc)

    from .compare import DEFAULT_ATOL, DEFAULT_RTOL

    cmp = sub.add_parser("compare", help="the same cells in two results roots: metrics past tolerance, cells in "
                                         "one root only; exit 1 past tolerance")
    cmp.add_argument("root_a", metavar="ROOT_A", help="a results root")
    cmp.add_argument("root_b", metavar="ROOT_B", help="another results root")
    cmp.add_argument("--grid", help="compare only this grid's current cells (default: every grid in either root)")
    cmp.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                     help=f"relative tolerance, as math.isclose's rel_tol (default: {DEFAULT_RTOL:g})")
    cmp.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                     help=f"absolute tolerance, as math.isclose's abs_tol (default: {DEFAULT_ATOL:g})")
    cmp.set_defaults(func=cmd_compare)

    from .fidref import add_parser as add_fid_ref_parser

    add_fid_ref_parser(sub)

    lst = sub.add_parser("list", help="list the registered models, schedules, solvers, methods, metrics")
    lst.set_defaults(func=cmd_list)

    show = sub.add_parser("show-schedule", help="print the timesteps of a method (fitted ones fit through the results cache)")
    show.add_argument("--model", default="toy2d")
    show.add_argument("--model-param", action="append", metavar="KEY=VALUE")
    show.add_argument("--solver", default="euler")
    show.add_argument("--solver-param", action="append", metavar="KEY=VALUE")
    show.add_argument("--method", required=True)
    show.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter")
    show.add_argument("--nfe", type=int, nargs="+", required=True)
    show.add_argument("--results", default="results",
                      help="results root whose fit cache fitted methods use (default: results)")
    show.add_argument("--grid", help="take the teacher, samples, dtype and seed of fitted methods from this grid")
    show.set_defaults(func=cmd_show_schedule)

    exp = sub.add_parser("export", help="write schedules as JSON + CSV with diffusers / k-diffusion / ComfyUI forms")
    exp.add_argument("--grid", help="export every cell of this grid found under --results")
    exp.add_argument("--results", default="results", help="results root (default: results)")
    exp.add_argument("--out", help="output folder (default: <results>/<grid>/export, or exports/ with --method)")
    exp.add_argument("--model", default="toy2d")
    exp.add_argument("--model-param", action="append", metavar="KEY=VALUE")
    exp.add_argument("--solver", default="euler")
    exp.add_argument("--solver-param", action="append", metavar="KEY=VALUE")
    exp.add_argument("--method", help="a method that needs no teacher (heuristic, manual, dmn)")
    exp.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter")
    exp.add_argument("--nfe", type=int, nargs="+")
    exp.set_defaults(func=cmd_export)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    results = getattr(args, "results", None)
    try:
        if results is not None and not str(results).strip():
            raise UserError("--results is empty; pass a folder for the results root, e.g. --results results")
        code = args.func(args)  # `check` returns 1 when a value fails
    except UserError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a fault of the results root (full disk, permissions): one line, not a traceback
        from .store import is_root_fault, root_error

        if results is None or not is_root_fault(err, results, any_cause=True):
            raise
        print(f"bench: error: {root_error(err, results)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; finished rows are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
