"""report: eval/eval_results.json + embeddings + metadata -> ``eval/report.html``, ``eval/report.json``,
``eval/clusters.json`` and the figures under ``eval/figures/``.

The work is :mod:`research_job.report` (numbers in :mod:`research_job.embedding_analysis`); this step maps its
options to :class:`~research_job.report.ReportOptions`, writes the files and prints the headline sentence.
Works on any version folder that evaluate has run on; the figures evaluate recorded are read, not recomputed.
The sections of other steps' artifacts (indexes, a trained head, cluster tags) appear when the folder has them;
the model comparison when compare-models' ``comparison.json`` exists (``--comparison``; by default the one
compare-models writes, ``<artifacts-root>/comparison/comparison.json``).

Cost on the demo corpus (128 tracks): a few seconds, plus umap-learn's one-off compilation (numba, ~15 s on
2 cores) when the map is UMAP; ``--map-method tsne`` skips it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_job.config import CommonConfig, option
from research_job.errors import ConfigError
from research_job.steps import Step

LOG = logging.getLogger(__name__)

MAP_METHODS = ("umap", "tsne")
#: --comparison value that turns the comparison section off
NO_COMPARISON = "none"


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
        "largest seeded sample of tracks for the map, the pair cosines, agglomerative clustering and the "
        "silhouettes",
    )
    kmeans_points: int = option(
        20000,
        "largest seeded sample of labelled tracks the KMeans clusters are fitted on (then every track goes to its "
        "nearest centre); evaluate fits all, the same fit up to this size",
    )
    top_hubs: int = option(10, "tracks listed as the top hubs (most frequent in the others' top-k lists)")
    seed: int = option(0, "seed of the map and of the samples (the clustering uses the evaluation's seed)")
    comparison: str | None = option(
        None,
        "compare-models' comparison.json to show; unset = <artifacts-root>/comparison/comparison.json when it "
        f"exists; '{NO_COMPARISON}' = no comparison section",
    )


def default_comparison(common: CommonConfig) -> Path:
    """Where compare-models writes its table by default (its ``out_dir`` unset): <artifacts-root>/comparison/."""
    return Path(common.artifacts_root) / "comparison" / "comparison.json"


def comparison_path(cfg: ReportConfig) -> Path | None:
    """The comparison.json the report shows: the one named, the default one when it exists, or none."""
    if cfg.comparison == NO_COMPARISON:
        return None
    if cfg.comparison:
        return Path(cfg.comparison)
    path = default_comparison(cfg.common)
    return path if path.is_file() else None


def check(cfg: ReportConfig) -> None:
    """Refuse counts out of range.

    Raises:
        ConfigError: naming the bad value.
    """
    if cfg.max_points < 10:
        raise ConfigError(f"max_points must be >= 10, got {cfg.max_points}")
    if cfg.kmeans_points < 10:
        raise ConfigError(f"kmeans_points must be >= 10, got {cfg.kmeans_points}")
    if cfg.top_hubs < 0:
        raise ConfigError(f"top_hubs must be >= 0, got {cfg.top_hubs}")
    if cfg.comparison not in (None, "", NO_COMPARISON) and not Path(cfg.comparison).is_file():
        raise ConfigError(
            f"comparison {cfg.comparison!r}: no such file; give compare-models' comparison.json, leave it unset "
            f"(default {default_comparison(cfg.common)} when it exists) or '{NO_COMPARISON}'"
        )


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
                         seed=cfg.seed, fit_points=cfg.kmeans_points, comparison=comparison_path(cfg))  # fmt: skip
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
    skipped = [key for key in ("tags", "comparison", "index", "head") if "skipped" in (report.get(key) or {})]
    if skipped:
        out.append("sections skipped: " + "; ".join(f"{key} ({report[key]['skipped']})" for key in skipped))
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
