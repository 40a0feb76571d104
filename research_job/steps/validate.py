"""validate: check a whole version folder and report every problem (file and mismatch), not just the first.

The checks live in :mod:`research_job.artifact_checks` (publish runs the same ones): every artifact of the one
list (``artifact_schema/artifacts.json``) against its schema and the sidecar that describes it, files the list
does not know, required files, and the cross-checks between embeddings, ids, metadata, indexes, the neighbour
table, segments and the evaluation. What the Node API refuses at load is refused here too, and the figures of
``eval/`` are recomputed from the embeddings and the metadata with the parameters they record (a schema-valid
edit of a metric is a problem, naming the file, the field, the recorded and the recomputed value).

Cost on N tracks (D dims, k neighbours, s = ``--sample``): hashing every file; the evaluation once more (one
N x N float32 product, the bootstrap over N queries, a seeded KMeans); the neighbour table's order, O(N k D);
s + 8 exact searches, O((s + 8) N D); s + 64 stored vectors per index. The demo's 128 tracks take about a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from research_job import artifact_checks
from research_job.config import CommonConfig, option
from research_job.errors import ArtifactError, ConfigError
from research_job.steps import Step

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidateConfig:
    """validate: check a whole version folder."""

    common: CommonConfig = field(default_factory=CommonConfig)
    unit_norm_tol: float = option(1e-4, "largest accepted | ||row|| - 1 | of an embedding row")
    sample: int = option(
        artifact_checks.DEFAULT_SAMPLE,
        "rows (seeded) checked against a fresh exact ranking and each index's vectors, beyond the Node API's own",
    )


def check(
    layout: Any, unit_norm_tol: float = 1e-4, sample: int = artifact_checks.DEFAULT_SAMPLE
) -> list[str]:
    """Every problem found in the version folder ``layout`` (empty list = valid); see :mod:`artifact_checks`."""
    return artifact_checks.check(layout, unit_norm_tol, sample=sample)


def run(cfg: ValidateConfig) -> dict[str, Any]:
    """Validate the version folder of ``cfg``.

    Returns:
        ``{"version_dir", "problems": []}`` when valid.

    Raises:
        ArtifactError: listing every problem (also logged one per line).
    """
    layout = cfg.common.layout
    if cfg.sample < 0:
        raise ConfigError(f"sample must be >= 0, got {cfg.sample}")
    problems = artifact_checks.check(layout, cfg.unit_norm_tol, sample=cfg.sample)
    for p in problems:
        LOG.error("%s", p)
    if problems:
        raise ArtifactError(f"{len(problems)} problem(s) in {layout.version_dir}: " + " | ".join(problems))
    LOG.info("%s is valid", layout.version_dir)
    return {"version_dir": str(layout.version_dir), "problems": []}


STEP = Step(
    name="validate",
    config=ValidateConfig,
    summary="Check a whole version folder (schemas, sizes, ids, norms, checksums, recomputed figures); exit 2 on any problem.",
    example="research-job validate --version-dir artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt",
    run=run,
    show=lambda cfg, result: f"OK: {result['version_dir']} is valid",
    pipeline=70,
)
