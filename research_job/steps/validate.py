"""validate: check a whole version folder and report every problem (file and mismatch), not just the first.

The checks live in :mod:`research_job.artifact_checks` (publish runs the same ones): every artifact of the one
list (``artifact_schema/artifacts.json``) against its schema and the sidecar that describes it, files the list
does not know, required files, and the cross-checks between embeddings, ids, metadata, indexes, the neighbour
table, segments and the evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from research_job import artifact_checks
from research_job.config import CommonConfig, option
from research_job.errors import ArtifactError
from research_job.steps import Step

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidateConfig:
    """validate: check a whole version folder."""

    common: CommonConfig = field(default_factory=CommonConfig)
    unit_norm_tol: float = option(1e-4, "largest accepted | ||row|| - 1 | of an embedding row")


def check(layout: Any, unit_norm_tol: float = 1e-4) -> list[str]:
    """Every problem found in the version folder ``layout`` (empty list = valid); see :mod:`artifact_checks`."""
    return artifact_checks.check(layout, unit_norm_tol)


def run(cfg: ValidateConfig) -> dict[str, Any]:
    """Validate the version folder of ``cfg``.

    Returns:
        ``{"version_dir", "problems": []}`` when valid.

    Raises:
        ArtifactError: listing every problem (also logged one per line).
    """
    layout = cfg.common.layout
    problems = artifact_checks.check(layout, cfg.unit_norm_tol)
    for p in problems:
        LOG.error("%s", p)
    if problems:
        raise ArtifactError(f"{len(problems)} problem(s) in {layout.version_dir}: " + " | ".join(problems))
    LOG.info("%s is valid", layout.version_dir)
    return {"version_dir": str(layout.version_dir), "problems": []}


STEP = Step(
    name="validate",
    config=ValidateConfig,
    summary="Check a whole version folder (schemas, sizes, ids, norms, checksums); exit 2 on any problem.",
    example="research-job validate --version-dir artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt",
    run=run,
    show=lambda cfg, result: f"OK: {result['version_dir']} is valid",
    pipeline=70,
)
