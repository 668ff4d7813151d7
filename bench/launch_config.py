"""Executor settings: a grid's `launch:` section, validated, plus command-line overrides -> `LaunchConfig`.

A grid may carry the settings of the machine or cluster it is meant for; every field is optional
and a command-line flag of `python -m bench run` overrides it:

    launch:
      executor: slurm          # local | submitit-local | slurm            (--executor)
      jobs: 1                  # local: worker processes                    (--jobs)
      partition: gpu           # Slurm partition (default: the cluster's)   (--partition)
      gpus_per_job: 1          # default: 1 with --device cuda, else 0      (--gpus-per-job)
      cpus_per_job: 2          # also the job's torch threads (default 1)   (--cpus-per-job)
      mem_gb: 16               # default: the cluster's                     (--mem-gb)
      timeout_min: 60          # per job; fits resume after it (default 60) (--timeout-min)
      array_parallelism: 32    # array tasks at once (default: Slurm 256,   (--array-parallelism)
                               #   submitit-local: cores / cpus_per_job)
      cells_per_job: 4         # evaluation cells per array task (default 4) (--cells-per-job)
      max_requeues: 3          # resubmissions of a timed-out fit (default 3) (--max-requeues)
      python: /path/to/python  # interpreter of the jobs (default: this one)  (--python)
      sbatch: {account: abc, qos: high}   # extra sbatch options            (--sbatch KEY=VALUE)

`parse_launch_section` checks the section when the grid is loaded (errors name `grid.launch.<field>`);
`make_launch_config` merges the flags in (errors name the flag). Settings an executor has no use
for are ignored (a grid written for a cluster still runs with `--executor local`). The executors themselves live in
`bench.launch`, the submitit library's conventions (`timeout_min`, `cpus_per_task`, `gpus_per_node`,
`mem_gb`, `slurm_array_parallelism`, `slurm_additional_parameters`) in `bench.launch.make_executor`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .errors import GridError, UserError

EXECUTORS = ("local", "submitit-local", "slurm")

# sbatch options that a LaunchConfig field or the launcher itself sets: `sbatch:` must not set them.
MANAGED_SBATCH = {
    "partition": "partition", "p": "partition", "time": "timeout_min", "t": "timeout_min",
    "cpus-per-task": "cpus_per_job", "c": "cpus_per_job", "gpus-per-node": "gpus_per_job",
    "gpus": "gpus_per_job", "G": "gpus_per_job", "mem": "mem_gb", "array": "array_parallelism",
    "output": None, "o": None, "error": None, "e": None, "job-name": None, "J": None, "signal": None,
    "open-mode": None, "dependency": None, "d": None, "wckey": None,
}


@dataclass(frozen=True)
class LaunchConfig:
    executor: str = "local"
    jobs: int = 1
    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int = 1
    mem_gb: float | None = None
    timeout_min: int = 60
    array_parallelism: int | None = None
    cells_per_job: int = 4
    max_requeues: int = 3
    python: str | None = None
    sbatch: dict = field(default_factory=dict)
    detach: bool = False  # command line only: submit and return without waiting

    def gpus(self, device: str) -> int:
        """GPUs per job: the configured number, else one on a CUDA device and none on the CPU."""
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        return 1 if str(device).startswith("cuda") else 0


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(v) -> str | None:
    return None if _is_int(v) and v >= 1 else "a positive integer"


def _non_negative_int(v) -> str | None:
    return None if _is_int(v) and v >= 0 else "an integer >= 0"


def _positive_number(v) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return None if ok else "a positive number"


def _name(v) -> str | None:
    return None if isinstance(v, str) and v and not any(c.isspace() for c in v) else "a name without spaces"


def _executor(v) -> str | None:
    return None if v in EXECUTORS else f"one of {', '.join(EXECUTORS)}"


def _python(v) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a command that starts Python, e.g. /opt/venv/bin/python"


def _sbatch(v) -> str | None:
    if not isinstance(v, dict):
        return "a mapping of sbatch options, e.g. {account: abc, qos: high}"
    for key, value in v.items():
        if not isinstance(key, str) or not key or key.startswith("-") or any(c.isspace() for c in key):
            return f"a mapping whose keys are sbatch option names without dashes, e.g. qos (got {key!r})"
        if not isinstance(value, (str, int, float, bool)):
            return f"a mapping of plain values (got {key}: {value!r})"
    return None


# field -> (check returning what the value must be, or None when it is fine)
CHECKS = {
    "executor": _executor, "jobs": _positive_int, "partition": _name, "gpus_per_job": _non_negative_int,
    "cpus_per_job": _positive_int, "mem_gb": _positive_number, "timeout_min": _positive_int,
    "array_parallelism": _positive_int, "cells_per_job": _positive_int, "max_requeues": _non_negative_int,
    "python": _python, "sbatch": _sbatch,
}
GRID_FIELDS = tuple(CHECKS)  # `detach` is a command-line choice, not a property of the grid


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_sbatch_keys(options: dict, where) -> dict:
    normalized = {}
    for key, value in options.items():
        norm = key.replace("_", "-")
        if norm in MANAGED_SBATCH:
            owner = MANAGED_SBATCH[norm]
            fix = f"set launch.{owner} ({_flag(owner)}) instead" if owner else "the launcher sets it"
            raise where(key, f"sbatch option {key!r} is managed by bench: {fix}")
        normalized[norm] = value
    return normalized


def parse_launch_section(raw) -> dict:
    """The grid's `launch:` mapping, checked; returns a plain dict of the fields it sets."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GridError(f"grid.launch must be a mapping such as {{executor: slurm, partition: gpu}}, got {raw!r}")
    unknown = sorted(set(raw) - set(GRID_FIELDS))
    if unknown:
        hint = " (--detach is a command-line flag)" if unknown[0] == "detach" else ""
        raise GridError(f"grid.launch.{unknown[0]} is not a known field{hint}; known: {', '.join(GRID_FIELDS)}")
    out = {}
    for key, value in raw.items():
        if value is None:
            continue
        problem = CHECKS[key](value)
        if problem:
            raise GridError(f"grid.launch.{key} must be {problem}, got {value!r}")
        out[key] = value

    def where(key, msg):
        return GridError(f"grid.launch.sbatch.{key}: {msg}")

    if "sbatch" in out:
        out["sbatch"] = _check_sbatch_keys(out["sbatch"], where)
    return out


def parse_sbatch_flags(items: list[str] | None) -> dict:
    """`--sbatch KEY=VALUE` items -> {key: value}; values are read as YAML scalars."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"--sbatch expects KEY=VALUE, e.g. --sbatch qos=high; got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-")
        parsed = yaml.safe_load(value) if value else ""
        out[key] = parsed if isinstance(parsed, (str, int, float, bool)) else value
    return out


def make_launch_config(grid_launch: dict | None = None, **overrides) -> LaunchConfig:
    """Merge the grid's checked `launch:` fields with command-line overrides (None = not given).

    `sbatch` overrides are merged key by key over the grid's; every other flag replaces the field."""
    values = dict(grid_launch or {})
    known = {f.name for f in fields(LaunchConfig)}
    for key, value in overrides.items():
        if key not in known:
            raise TypeError(f"make_launch_config() got an unknown field {key!r}")
        if value is None:
            continue
        if key == "detach":
            values["detach"] = bool(value)
            continue
        if key == "sbatch":
            problem = CHECKS["sbatch"](value)
            if problem:
                raise UserError(f"--sbatch must be {problem}")

            def where(k, msg):
                return UserError(f"--sbatch {k}: {msg}")

            values["sbatch"] = {**values.get("sbatch", {}), **_check_sbatch_keys(value, where)}
            continue
        problem = CHECKS[key](value)
        if problem:
            raise UserError(f"{_flag(key)} must be {problem}, got {value!r}")
        values[key] = value
    config = LaunchConfig(**values)
    if config.detach and config.executor != "slurm":
        raise UserError(
            f"--detach needs --executor slurm (the {config.executor} executor runs the fits before the cells "
            "from this process); drop --detach or use --executor slurm"
        )
    return config


__all__ = ["EXECUTORS", "LaunchConfig", "make_launch_config", "parse_launch_section", "parse_sbatch_flags"]
