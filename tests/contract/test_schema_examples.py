"""Contract tests: every schema accepts its valid examples and rejects its invalid ones.

The Node API runs the same examples through ajv (node_api/test), so both runtimes agree on the contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research_job import schema
from research_job.errors import SchemaValidationError

EXAMPLES = schema.SCHEMA_DIR / "examples"


def _name(path: Path) -> str:
    return path.name.split(".")[0]


def _examples(kind: str) -> list[Path]:
    return sorted((EXAMPLES / kind).glob("*.json"))


def test_every_schema_has_valid_and_invalid_examples() -> None:
    names = set(schema.schema_names())
    assert names, "no schemas found"
    assert {_name(p) for p in _examples("valid")} >= names
    assert {_name(p) for p in _examples("invalid")} >= names


@pytest.mark.parametrize("path", _examples("valid"), ids=lambda p: p.name)
def test_valid_examples_pass(path: Path) -> None:
    schema.validate(_name(path), json.loads(path.read_text()))


@pytest.mark.parametrize("path", _examples("invalid"), ids=lambda p: p.name)
def test_invalid_examples_fail(path: Path) -> None:
    with pytest.raises(SchemaValidationError, match=_name(path)):
        schema.validate(_name(path), json.loads(path.read_text()), source=path)


def test_unknown_schema_lists_known_ones() -> None:
    with pytest.raises(SchemaValidationError, match="Known: .*eval_results"):
        schema.load_schema("eval_result")
