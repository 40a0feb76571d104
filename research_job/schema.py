"""JSON Schemas of the artifacts: load ``artifact_schema/``, validate, write validated JSON.

The schemas are the only contract between the research job and the Node API. Every JSON artifact is validated
here when written (:func:`write_artifact`) and when read back (:func:`read_artifact`).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from research_job.errors import SchemaValidationError, unknown_choice
from research_job.io.atomic import write_json

SCHEMA_DIR = Path(
    os.environ.get("ARTIFACT_SCHEMA_DIR", Path(__file__).resolve().parent.parent / "artifact_schema")
)


def schema_names() -> list[str]:
    """Names of the known schemas (file stem without ``.schema.json``)."""
    return sorted(p.name[: -len(".schema.json")] for p in SCHEMA_DIR.glob("*.schema.json"))


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Load the schema ``artifact_schema/<name>.schema.json``.

    Raises:
        SchemaValidationError: no such schema.
    """
    path = SCHEMA_DIR / f"{name}.schema.json"
    if not path.is_file():
        raise SchemaValidationError(unknown_choice("schema", name, schema_names()))
    with open(path, encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), format_checker=jsonschema.FormatChecker())


def validate(name: str, obj: Any, *, source: str | os.PathLike[str] | None = None) -> None:
    """Validate ``obj`` against schema ``name``.

    Raises:
        SchemaValidationError: naming the schema, the source file if given, the JSON path and the reason.
    """
    errors = sorted(_validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "<root>"
        src = f" in {source}" if source is not None else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SchemaValidationError(f"{name}{src}: at {where}: {first.message}{more}")


def write_artifact(path: str | os.PathLike[str], name: str, obj: Any) -> None:
    """Validate ``obj`` against schema ``name`` and write it atomically to ``path``."""
    validate(name, obj, source=path)
    write_json(path, obj)


def read_artifact(path: str | os.PathLike[str], name: str) -> Any:
    """Read JSON from ``path`` and validate it against schema ``name``.

    Raises:
        SchemaValidationError: the file is not JSON or does not match the schema.
    """
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise SchemaValidationError(f"{path}: not valid JSON: {e}") from e
    validate(name, obj, source=path)
    return obj
