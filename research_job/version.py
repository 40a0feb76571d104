"""Code version recorded in every artifact: the package version plus the git short sha when available."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from research_job import __version__


@functools.cache
def code_version() -> str:
    """``0.1.0+g1234567`` inside a git checkout (``.dirty`` appended with local changes), else ``0.1.0``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=7", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__
