"""The shipped grid files: each says in one `description:` line what it studies, and its comments
explain settings, never observed results, timings or machine load (those live in generated output)."""
import re
from pathlib import Path

import pytest
import yaml

from bench.errors import UserError
from bench.grid import parse_grid

GRIDS = sorted((Path(__file__).resolve().parents[2] / "grids").glob("*.yaml"))
# A number with a unit of time, a machine's load, or a measured comparison ("loses ... 4.85 vs 4.95").
LAB_NOTE = re.compile(r"\d\s*(s|sec|seconds?|min|minutes?|h|hours?)\b|busy|idle|shared \d-core|\bvs\.? \d|"
                      r"foundation issue|earlier", re.IGNORECASE)


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_grid_file_has_a_one_line_description(path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw.get("description"), str) and raw["description"].strip(), path.name
    assert "\n" not in raw["description"].strip()


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_grid_comments_hold_no_lab_notes(path):
    comments = [line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line]
    notes = [c.strip() for c in comments if LAB_NOTE.search(c)]
    assert not notes, f"{path.name}: comments with results, timings or history: {notes}"


def test_description_must_be_one_line():
    raw = {"models": ["toy2d"], "solvers": ["euler"], "nfe": [3], "methods": ["uniform"],
           "description": "two\nlines"}
    with pytest.raises(UserError, match="grid.description must be one line"):
        parse_grid(raw)


def test_docs_catalogue_lists_every_grid_with_its_description():
    catalogue = (Path(__file__).resolve().parents[2] / "docs" / "grids.md").read_text()
    for path in GRIDS:
        description = yaml.safe_load(path.read_text())["description"]
        assert f"[`{path.stem}`](../grids/{path.name})" in catalogue, f"docs/grids.md misses {path.name}"
        assert description in catalogue, f"docs/grids.md has another description for {path.name}"
