"""Named errors of the research job.

Every error a user can cause derives from :class:`ResearchJobError`; the CLI maps it to exit code 2 and a
one-line message. Messages name the offending value and, where there is a closed set, the valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable


class ResearchJobError(Exception):
    """Base class of the errors the CLI reports as a one-line message (exit code 2)."""

    exit_code = 2


class ConfigError(ResearchJobError):
    """A configuration value is missing or invalid."""


class SchemaValidationError(ResearchJobError):
    """A JSON artifact does not match its schema in ``artifact_schema/``."""


class MetadataError(ResearchJobError):
    """The catalogue metadata cannot be exported (duplicate or unsafe ids, missing columns, ...)."""


class StorageError(ResearchJobError):
    """An object store or local file operation failed."""


class AudioDecodeError(ResearchJobError):
    """An audio file cannot be decoded, or decodes to nothing usable."""


class ModelError(ResearchJobError):
    """A model cannot be resolved or loaded (unknown name, missing weights, offline hub)."""


class ArtifactError(ResearchJobError):
    """An artifact folder is missing a file or is internally inconsistent."""


def unknown_choice(kind: str, value: object, valid: Iterable[str]) -> str:
    """Return the standard message for an unknown choice: ``Unknown model 'x'. Known: a, b, c``."""
    return f"Unknown {kind} {value!r}. Known: {', '.join(sorted(valid))}"
