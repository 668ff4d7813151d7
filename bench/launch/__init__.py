"""Launching a grid: run its missing cells on this machine (`local`) or as submitit jobs
(`submitit-local`, `slurm`), resumably.

* `plan`: which cells have no row yet and which fits they need (`bench.launch.plan`);
* `local`: the local executor, this process or joblib workers (`LocalExecutor`, `run_local`);
* `job`: what runs inside a job or worker: arguments in, results on disk;
* `submit`: submitit-local and Slurm (`run_submitit`), with the second round for cells that ran
  before their requeued fit;
* `ledger`: the job ledger every executor writes; `probes`: where a ledger entry's job stands;
* `devices`: which GPU each task takes.

`launch` picks the executor the `LaunchConfig` names (`bench.launch_config`; default: the grid's
`launch:` section). `bench status` (`bench.status`) is a view over the ledger and the probes.
"""
from __future__ import annotations

from ..grid import Grid
from ..launch_config import LaunchConfig, make_launch_config
from ..store import is_root_fault, root_error
from .devices import spread_devices
from .job import CellsTask, FitMissing, FitTask, plugin_modules
from .local import LocalExecutor, SweepFailed, run_local
from .plan import Plan, plan
from .submit import make_executor, run_submitit


def launch(grid: Grid, root="results", config: LaunchConfig | None = None, device: str = "cpu",
           quiet: bool = False, command: list[str] | None = None) -> Plan:
    """Run the grid with the executor `config` names (default: the grid's `launch:` section)."""
    config = config or make_launch_config(grid.launch)
    try:
        if config.executor == "local":
            return run_local(grid, root=root, device=device, jobs=config.jobs, quiet=quiet)
        return run_submitit(grid, root, config, device=device, quiet=quiet, command=command)
    except OSError as err:  # the results root itself failed (full disk, permissions): one line, exit 2
        if is_root_fault(err, root, any_cause=True):
            raise root_error(err, root) from None
        raise


__all__ = ["CellsTask", "FitMissing", "FitTask", "LocalExecutor", "Plan", "SweepFailed", "launch", "make_executor",
           "plan", "plugin_modules", "run_local", "run_submitit", "spread_devices"]
