"""The result row: one versioned type, written and read only through this module.

A row holds what determines the cell's result (the resolved specs of `Cell.config()`, with every
default and `auto` filled in, plugin versions and the content hashes of model files), the labels the
report prints, the metrics and their directions, the measured NFE, fit and sampling cost, peak
memory, package versions and git revision. `write_row` stamps it with `schema` (ROW_SCHEMA) and a
`checksum` (SHA-256 of the rest); `read_row` refuses, with `CorruptArtifact` naming the file, a row
that does not parse, fails its checksum, misses a field, comes from another schema, or holds another
cell's row than the one its file name (`<cell hash>.json`) names (`bench.store.verify_key`).

Rows of an older schema (before typed keys) are not migrated: their keys hash unresolved grid
entries, so no current cell can claim them. They stay on disk until `bench gc --delete` removes them;
`report` never shows them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .store import CorruptArtifact, atomic_write_json, verify_key

ROW_SCHEMA = 2


class ResultRow(BaseModel):
    model_config = ConfigDict(extra="allow")  # free-form extras (fit info) live in typed dict fields

    schema_version: int
    cell: str
    grid: str
    model: dict
    solver: dict
    nfe: int
    method: dict
    seed: int
    metrics_spec: list
    teacher: dict
    samples: dict
    dtype: str
    seed_key: str
    steps: int
    model_label: str
    solver_label: str
    method_label: str
    heuristic: bool
    paper_baseline: bool
    metrics: dict[str, Any]
    higher_is_better: dict[str, bool]
    scores_sha256: str | None = None  # per-sample scores beside the row (`bench.scores`); None: none kept
    nfe_expected: float
    nfe_measured: float
    fit: dict
    fit_key: str | None
    sample_seconds: float
    finished: str


def _checksum(row: dict) -> str:
    text = json.dumps({k: v for k, v in row.items() if k != "checksum"}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def write_row(path, row: dict) -> Path:
    """Validate `row` against `ResultRow` and write it atomically with its schema and checksum."""
    row = {**row, "schema_version": ROW_SCHEMA}
    ResultRow.model_validate(row)
    plain = json.loads(json.dumps(row, default=str))  # what a reader will see
    plain["checksum"] = _checksum(plain)
    return atomic_write_json(path, plain)


def read_row(path) -> dict:
    """The row at `path` as a plain dict, or `CorruptArtifact` saying what is wrong with it."""
    path = Path(path)
    try:
        with open(path) as f:
            row = json.load(f)
    except UnicodeDecodeError:
        raise CorruptArtifact(path, "not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise CorruptArtifact(path, f"not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(row, dict):
        raise CorruptArtifact(path, "not a JSON object")
    if row.get("schema_version") != ROW_SCHEMA:
        raise CorruptArtifact(path, f"row schema {row.get('schema_version')!r}, expected {ROW_SCHEMA}")
    if row.get("checksum") != _checksum(row):
        raise CorruptArtifact(path, "checksum mismatch (edited or partly written)")
    try:
        ResultRow.model_validate(row)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        raise CorruptArtifact(path, f"field {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    verify_key(path, path.stem, row["cell"])  # a row file holds the row of the cell it is named after
    return row


def row_ok(path) -> bool:
    """True when a row exists at `path` and reads cleanly."""
    try:
        read_row(path)
    except (OSError, CorruptArtifact):
        return False
    return True


__all__ = ["ROW_SCHEMA", "ResultRow", "read_row", "row_ok", "write_row"]
