"""report: eval/eval_results.json + embeddings + metadata -> ``eval/report.html``, ``eval/report.json``,
``eval/clusters.json`` and the figures under ``eval/figures/``.

The work is :mod:`research_job.report` (numbers in :mod:`research_job.embedding_analysis`); this step maps its
options to :class:`~research_job.report.ReportOptions`, writes the files and prints the headline sentence.
Works on any version folder that evaluate has run on; the figures evaluate recorded are read, not recomputed.

Cost on the demo corpus (128 tracks): a few seconds, plus umap-learn's one-off compilation (numba, ~15 s on
2 cores) when the map is UMAP; ``--map-method tsne`` skips it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from research_job.config import CommonConfig, option
from research_job.errors import ConfigError
from research_job.steps import Step

LOG = logging.getLogger(__name__)

MAP_METHODS = ("umap", "tsne")


@dataclass(frozen=True)
class ReportConfig:
    """report: an HTML page, report.json, clusters.json and PNG figures from an evaluated version folder."""

    common: CommonConfig = field(default_factory=CommonConfig)
    map_method: str = option(
        "umap",
        "2-D map of the catalogue: UMAP (umap-learn; t-SNE when it is not installed) or scikit-learn t-SNE",
        choices=MAP_METHODS,
    )
    max_points: int = option(
        5000,
        "largest seeded sample of tracks for the map, the pair cosines, agglomerative clustering and silhouette",
    )
    top_hubs: int = option(10, "tracks listed as the top hubs (most frequent in the others' top-k lists)")
    seed: int = option(0, "seed of the map and of the samples (the clustering uses the evaluation's seed)")


def check(cfg: ReportConfig) -> None:
    """Refuse counts out of range.

    Raises:
        ConfigError: naming the bad value.
    """
    if cfg.max_points < 10:
        raise ConfigError(f"max_points must be >= 10, got {cfg.max_points}")
    if cfg.top_hubs < 0:
        raise ConfigError(f"top_hubs must be >= 0, got {cfg.top_hubs}")


def run(cfg: ReportConfig) -> dict[str, Any]:
    """Build and write the report of the version folder.

    Returns:
        the report.json dict written.

    Raises:
        ArtifactError: eval/eval_results.json (or the embeddings) missing, or of other embeddings.
    """
    from research_job.report import ReportOptions, build_report, write_report

    check(cfg)
    layout = cfg.common.layout
    opts = ReportOptions(map_method=cfg.map_method, max_points=cfg.max_points, top_hubs=cfg.top_hubs,
                         seed=cfg.seed)  # fmt: skip
    built = build_report(layout, opts)
    write_report(layout, built)
    LOG.info("Wrote %s (%d figures)", layout.path("report_html"), len(built.figures))
    return built.report


def _show(cfg: ReportConfig, report: dict[str, Any]) -> str:
    out = [report["headline"]["sentence"]]
    c = report["clustering"]
    if c:
        for m in c["methods"]:
            out.append(
                f"{m['name']}: NMI {m['nmi']:.3f}, ARI {m['ari']:.3f}, silhouette (cosine) "
                f"{m['silhouette_cosine']:.3f} (reference: NMI > {c['reference']['nmi']}, silhouette > "
                f"{c['reference']['silhouette_cosine']}; {'met' if m['meets_reference'] else 'not met'})"
            )
    h, d = report["hubness"], report["dimensionality"]
    out.append(
        f"hubness skewness {h['skewness']:.2f}; effective rank {d['effective_rank']:.1f} of {d['dim']}; "
        f"mean pairwise cosine {report['similarity']['mean_pairwise_cosine']:.3f}; map: {report['map']['method']}"
    )
    out.append(f"report: {cfg.common.layout.path('report_html')}")
    return "\n".join(out)


STEP = Step(
    name="report",
    config=ReportConfig,
    summary="Evaluation report: eval/report.html (self-contained), report.json, clusters.json, figures/.",
    example="research-job report --map-method umap",
    run=run,
    check=check,
    show=_show,
    pipeline=65,
)
