"""Executor settings: a grid's `launch:` section and the flags of `python -m bench run`, one model.

Each setting is declared once, as a field of `LaunchSettings` (a `bench.params.Params` pydantic
model: type, default, check and the help text of its flag). The grid's `launch:` section is
validated by it when the grid loads (errors name `grid.launch.<field>`); `run`'s launch flags are
generated from it (`add_launch_flags`: `--cells-per-job` for `cells_per_job`, ...) and override the
grid's fields (`make_launch_config`; errors name the flag). `LaunchConfig` adds what only the
command line chooses (`--detach`). Every field is optional; settings an executor has no use for are
ignored (a grid written for a cluster still runs with `--executor local`):

    launch:
      executor: slurm
      partition: gpu
      cpus_per_job: 2
      sbatch: {account: abc, qos: high}

Defaults follow submitit's conventions where they exist (`timeout_min`, `cpus_per_task`,
`gpus_per_node`, `mem_gb`, `slurm_array_parallelism`, `slurm_additional_parameters`; mapped in
`bench.launch.submit.make_executor`); unset Slurm settings are the cluster's own defaults. The
checks are pydantic validators raising `PydanticCustomError` with what a value must be.
"""
from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from .errors import GridError, UserError
from .params import Params

EXECUTORS = ("local", "submitit-local", "slurm")

# sbatch options that a LaunchConfig field or the launcher itself sets: `sbatch:` must not set them.
MANAGED_SBATCH = {
    "partition": "partition", "p": "partition", "time": "timeout_min", "t": "timeout_min",
    "cpus-per-task": "cpus_per_job", "c": "cpus_per_job", "gpus-per-node": "gpus_per_job",
    "gpus": "gpus_per_job", "G": "gpus_per_job", "mem": "mem_gb", "array": "array_parallelism",
    "output": None, "o": None, "error": None, "e": None, "job-name": None, "J": None, "signal": None,
    "open-mode": None, "dependency": None, "d": None, "wckey": None,
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checked(test, must: str) -> PlainValidator:
    """A pydantic validator that keeps the values `test` accepts and otherwise says what the value
    must be (the error `launch_value`, with `must` in its context)."""
    def check(value):
        if not test(value):
            raise PydanticCustomError("launch_value", "must be {must}", {"must": must})
        return value

    return PlainValidator(check)


def _sbatch_options(value):
    if not isinstance(value, dict):
        raise PydanticCustomError("launch_value", "must be {must}",
                                  {"must": "a mapping of sbatch options, e.g. {account: abc, qos: high}"})
    normalized = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or key.startswith("-") or any(c.isspace() for c in key):
            must = f"a mapping whose keys are sbatch option names without dashes, e.g. qos (got {key!r})"
            raise PydanticCustomError("launch_value", "must be {must}", {"must": must})
        if not isinstance(item, (str, int, float, bool)):
            raise PydanticCustomError("launch_value", "must be {must}",
                                      {"must": f"a mapping of plain values (got {key}: {item!r})"})
        norm = key.replace("_", "-")
        if norm in MANAGED_SBATCH:
            owner = MANAGED_SBATCH[norm]
            fix = f"set launch.{owner} ({flag(owner)}) instead" if owner else "the launcher sets it"
            raise PydanticCustomError("sbatch_managed", "sbatch option {key} is managed by bench: {fix}",
                                      {"key": key, "fix": fix})
        normalized[norm] = item
    return normalized


Executor = Annotated[Literal["local", "submitit-local", "slurm"],
                     _checked(lambda v: v in EXECUTORS, f"one of {', '.join(EXECUTORS)}")]
PositiveInt = Annotated[int, _checked(lambda v: _is_int(v) and v >= 1, "a positive integer")]
NonNegativeInt = Annotated[int, _checked(lambda v: _is_int(v) and v >= 0, "an integer >= 0")]
PositiveNumber = Annotated[float, _checked(
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a positive number")]
Name = Annotated[str, _checked(lambda v: isinstance(v, str) and bool(v) and not any(c.isspace() for c in v),
                               "a name without spaces")]
Command = Annotated[str, _checked(lambda v: isinstance(v, str) and bool(v.strip()),
                                  "a command that starts Python, e.g. /opt/venv/bin/python")]
SbatchOptions = Annotated[dict, PlainValidator(_sbatch_options)]


def _cli(metavar: str | None = None, **extra) -> dict:
    return {"metavar": metavar, **extra}


class LaunchSettings(Params):
    """The grid's `launch:` section; each field is also a flag of `python -m bench run`, whose help
    is the field's description (plus its default when that is a number)."""

    executor: Executor = Field(
        "local", json_schema_extra=_cli(choices=EXECUTORS),
        description="local: this process or --jobs workers; submitit-local: submitit jobs on this machine; "
                    "slurm: Slurm jobs (default: launch.executor, else local)")
    jobs: PositiveInt = Field(1, description="local: parallel worker processes")
    partition: Name | None = Field(None, description="Slurm partition (default: the cluster's default)")
    gpus_per_job: NonNegativeInt | None = Field(None, json_schema_extra=_cli("N"),
                                                description="default: 1 with --device cuda, else 0")
    cpus_per_job: PositiveInt = Field(1, json_schema_extra=_cli("N"),
                                      description="CPUs and torch threads per job")
    mem_gb: PositiveNumber | None = Field(None, json_schema_extra=_cli("GB"),
                                          description="memory per job (default: the cluster's)")
    timeout_min: PositiveInt = Field(60, json_schema_extra=_cli("MIN"),
                                     description="time limit per job; fits resume after it")
    array_parallelism: PositiveInt | None = Field(
        None, json_schema_extra=_cli("N"),
        description="array tasks running at once (default: slurm 256, submitit-local cores/cpus)")
    cells_per_job: PositiveInt = Field(4, json_schema_extra=_cli("N"),
                                       description="evaluation cells per array task")
    max_requeues: NonNegativeInt = Field(3, json_schema_extra=_cli("N"),
                                         description="resubmissions of a timed-out or preempted job")
    python: Command | None = Field(None, json_schema_extra=_cli("CMD"),
                                   description="the jobs' Python (default: this interpreter)")
    sbatch: SbatchOptions = Field(default_factory=dict, json_schema_extra=_cli("KEY=VALUE"),
                                  description="extra sbatch option, e.g. --sbatch qos=high (repeatable)")


class LaunchConfig(LaunchSettings):
    """The settings a run uses: the grid's, the flags over them, and the command line's own."""

    detach: bool = Field(False, description="slurm: submit and return at once; `bench status` follows the sweep")

    def gpus(self, device: str) -> int:
        """GPUs per job: the configured number, else one on a CUDA device and none on the CPU."""
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        return 1 if str(device).startswith("cuda") else 0


GRID_FIELDS = tuple(LaunchSettings.model_fields)
COMMAND_LINE_ONLY = tuple(f for f in LaunchConfig.model_fields if f not in LaunchSettings.model_fields)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _validate(model, values: dict, name, sbatch_where, error):
    """`model(**values)`, or one `error` naming the field (`name(field)`) and what it must be."""
    try:
        return model(**values)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        extra = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if extra:
            hint = f" ({flag(extra[0])} is a command-line flag)" if extra[0] in COMMAND_LINE_ONLY else ""
            raise error(f"{name(extra[0])} is not a known field{hint}; known: {', '.join(GRID_FIELDS)}") from None
        first = errors[0]
        field, ctx = str(first["loc"][0]), first.get("ctx") or {}
        if first["type"] == "sbatch_managed":
            raise error(f"{sbatch_where(ctx['key'])}: sbatch option {ctx['key']!r} is managed by bench: "
                        f"{ctx['fix']}") from None
        if first["type"] == "launch_value":
            raise error(f"{name(field)} must be {ctx['must']}, got {first['input']!r}") from None
        raise error(f"{name(field)}: {first['msg']}") from None


def parse_launch_section(raw) -> dict:
    """The grid's `launch:` mapping, checked; returns a plain dict of the fields it sets (null
    fields are left unset)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GridError(f"grid.launch must be a mapping such as {{executor: slurm, partition: gpu}}, got {raw!r}")
    values = {k: v for k, v in raw.items() if v is not None}
    settings = _validate(LaunchSettings, values, lambda f: f"grid.launch.{f}", lambda k: f"grid.launch.sbatch.{k}",
                         GridError)
    return settings.model_dump(exclude_unset=True)


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
    for key in overrides:
        if key not in LaunchConfig.model_fields:
            raise TypeError(f"make_launch_config() got an unknown field {key!r}")
    given = {k: (bool(v) if k == "detach" else v) for k, v in overrides.items() if v is not None}
    flags = _validate(LaunchConfig, given, flag, lambda k: f"--sbatch {k}", UserError)
    values = {**(grid_launch or {}), **flags.model_dump(include=set(given))}
    if "sbatch" in given:
        values["sbatch"] = {**(grid_launch or {}).get("sbatch", {}), **flags.sbatch}
    config = LaunchConfig(**values)
    if config.detach and config.executor != "slurm":
        raise UserError(
            f"--detach needs --executor slurm (the {config.executor} executor runs the fits before the cells "
            "from this process); drop --detach or use --executor slurm"
        )
    return config


def _flag_type(annotation) -> Any:
    """The argparse type of a field: int, float or str, from its (optional, annotated) type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _flag_type(args[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _flag_type(args[0])
    return annotation if annotation in (int, float) else str


def add_launch_flags(group) -> None:
    """Add one flag per `LaunchConfig` field to an argparse (group): `--cells-per-job N`, ..."""
    for name, info in LaunchConfig.model_fields.items():
        extra = info.json_schema_extra or {}
        kwargs: dict = {"help": info.description}
        if _is_int(info.default):  # a plain default is said once, here; others in the description
            kwargs["help"] += f" (default: {info.default})"
        if info.annotation is bool:
            kwargs["action"] = "store_true"
        elif name == "sbatch":
            kwargs.update(action="append", metavar=extra["metavar"])
        elif extra.get("choices"):
            kwargs["choices"] = extra["choices"]
        else:
            kwargs["type"] = _flag_type(info.annotation)
            if extra.get("metavar"):
                kwargs["metavar"] = extra["metavar"]
        group.add_argument(flag(name), dest=name, **kwargs)


def launch_overrides(args) -> dict:
    """The launch flags given on the command line (None: not given), for `make_launch_config`."""
    values = {name: getattr(args, name, None) for name in LaunchConfig.model_fields}
    values["sbatch"] = parse_sbatch_flags(values["sbatch"]) or None
    values["detach"] = values["detach"] or None
    return values


__all__ = ["EXECUTORS", "LaunchConfig", "LaunchSettings", "add_launch_flags", "launch_overrides",
           "make_launch_config", "parse_launch_section", "parse_sbatch_flags"]
