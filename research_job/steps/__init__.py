"""Pipeline steps: each module exposes ``run(cfg) -> dict`` that does one step and returns the report it wrote.

Steps pass files (see :mod:`research_job.layout`); they never import the CLI.
"""

from __future__ import annotations

import datetime as _dt

import research_job


def utc_now() -> str:
    """The current UTC time as an RFC 3339 string (``created_at`` of every report)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def code_version() -> str:
    """Version of the research job recorded in every report."""
    return research_job.__version__
