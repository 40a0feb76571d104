"""train-recs: ``interactions/interactions.csv`` + the embeddings -> the recommenders in ``recs/``.

Fits popularity (global counts), trending (time-decayed), implicit ALS and the hybrid of ALS with the
content-based profile on every event (what is served), and evaluates each on a time split (what is reported:
``recs/recs_eval.json``, Recall@K / NDCG@K / MRR with bootstrap CIs, the hybrid's weights chosen on a validation
split inside the training part). Scoring is :mod:`research_job.recs.scoring`, the reference the Node API matches.
Deterministic for a seed: the binaries are the same bytes on a rerun.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from threadpoolctl import threadpool_limits

from research_job.config import CommonConfig, option
from research_job.embeddings import load_embeddings
from research_job.errors import ConfigError
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.recs import als, artifacts, evaluation, popularity
from research_job.recs.data import EVENT_WEIGHTS, iso, read_interactions
from research_job.recs.fit import fit_all
from research_job.schema import write_artifact
from research_job.steps import Step

log = logging.getLogger(__name__)

CONTENT_PROFILE = "confidence-weighted mean of positive-history embeddings, L2-normalised"


@dataclass(frozen=True)
class TrainRecsConfig:
    """train-recs: interactions + embeddings -> recs/ (popularity, ALS, content, hybrid) and their evaluation."""

    common: CommonConfig = field(default_factory=CommonConfig)
    factors: int = option(64, "ALS latent factors per user and track (1..1024)")
    regularization: float = option(0.05, "ALS L2 regularisation of the factors (> 0)")
    iterations: int = option(15, "ALS alternating sweeps (1..1000)")
    alpha: float = option(
        2.0, "ALS confidence scale: a pair's confidence is alpha x its summed event weights (> 0)"
    )
    half_life_days: float = option(14.0, "trending: an event's weight halves every this many days (> 0)")
    k: int = option(20, "evaluation cut-off K of Recall@K and NDCG@K (1..500)")
    bootstrap_resamples: int = option(1000, "bootstrap resamples of the test users for the 95 % CIs (>= 10)")
    seed: int = option(0, "seed of the ALS initialisation, the bootstrap and the validation sample")
    cf_weights: str = option(
        "0,0.25,0.5,0.75,1",
        "hybrid: comma-separated grid of cf_weight (0..1) tried on the validation split (the middle one is used "
        "when it has no users)",
    )
    light_user_events: str = option(
        "2,5,10",
        "hybrid: comma-separated grid of light_user_events (>= 0): b_u = cf_weight n_u / (n_u + this)",
    )
    validation_users: int = option(2000, "hybrid grid search: most validation users scored (a seeded sample)")
    threads: int = option(0, "threads of the ALS solver and the scoring products (0: all cores)")

    def grid(self, name: str, low: float, high: float | None) -> tuple[float, ...]:
        """The parsed comma-separated grid option ``name``.

        Raises:
            ConfigError: a value that is not a number or out of [low, high], naming it.
        """
        raw = getattr(self, name)
        out: list[float] = []
        for part in str(raw).split(","):
            try:
                v = float(part.strip())
            except ValueError:
                raise ConfigError(f"{name}: {part.strip()!r} in {raw!r} is not a number") from None
            if not (low <= v and (high is None or v <= high)) or v != v:
                bound = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
                raise ConfigError(f"{name}: {v:g} in {raw!r} is outside {bound}")
            out.append(v)
        return tuple(dict.fromkeys(out))


def check(cfg: TrainRecsConfig) -> None:
    """Refuse hyper-parameters out of range, before anything is read.

    Raises:
        ConfigError: naming the option and the bad value.
    """
    bounds: list[tuple[str, float, float | None]] = [
        ("factors", 1, 1024),
        ("iterations", 1, 1000),
        ("k", 1, 500),
        ("bootstrap_resamples", 10, None),
        ("validation_users", 1, None),
        ("threads", 0, 1024),
    ]
    for name, low, high in bounds:
        v = getattr(cfg, name)
        if v < low or (high is not None and v > high):
            rng = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
            raise ConfigError(f"{name} must be {rng}, got {v!r}")
    for name in ("regularization", "alpha", "half_life_days"):
        v = getattr(cfg, name)
        if not v > 0 or v == float("inf"):
            raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
    cfg.grid("cf_weights", 0.0, 1.0)
    cfg.grid("light_user_events", 0.0, None)


def _params(cfg: TrainRecsConfig) -> als.AlsParams:
    return als.AlsParams(
        factors=cfg.factors,
        regularization=cfg.regularization,
        iterations=cfg.iterations,
        alpha=cfg.alpha,
        seed=cfg.seed,
        threads=cfg.threads,
    )


def run(cfg: TrainRecsConfig) -> dict[str, Any]:
    """Train and evaluate the recommenders; write ``recs/`` (recs_meta.json last) and return recs_meta.

    Raises:
        ConfigError: a bad option; ArtifactError: the embeddings or interactions are missing or inconsistent.
    """
    check(cfg)
    threads = cfg.threads or None
    with threadpool_limits(limits=threads, user_api="blas"):
        return _run(cfg)


def _run(cfg: TrainRecsConfig) -> dict[str, Any]:
    layout = cfg.common.layout
    t0 = time.perf_counter()
    vectors, track_ids, emeta = load_embeddings(layout)
    events = read_interactions(layout.path("interactions_csv"), track_ids)
    t_read = time.perf_counter()
    log.info(
        "train-recs: %d events of %d listeners on %d tracks (%d rows without an embedding skipped)",
        events.ts.size,
        events.n_users,
        len(track_ids),
        events.rows_unembedded,
    )
    params = _params(cfg)
    ecfg = evaluation.EvalConfig(
        k=cfg.k,
        resamples=cfg.bootstrap_resamples,
        seed=cfg.seed,
        half_life_days=cfg.half_life_days,
        cf_weights=cfg.grid("cf_weights", 0.0, 1.0),
        light_grid=cfg.grid("light_user_events", 0.0, None),
        validation_users=cfg.validation_users,
    )
    table = evaluation.evaluate(events, track_ids, vectors, params, ecfg)
    t_eval = time.perf_counter()
    sel = table["hybrid_selection"]
    fitted = fit_all(
        events, track_ids, vectors, params, cfg.half_life_days, sel["cf_weight"], sel["light_user_events"]
    )
    t_fit = time.perf_counter()
    version = layout.version_dir.name
    files = artifacts.write_binaries(layout, fitted.arts)
    files["recs_user_ids"] = artifacts.write_json(
        layout,
        "recs_user_ids",
        {"schema_version": "1.0", "count": events.n_users, "user_ids": events.user_ids},
    )
    files["recs_popularity"] = artifacts.write_json(
        layout,
        "recs_popularity",
        {
            "schema_version": "1.0",
            "as_of": iso(fitted.as_of),
            "half_life_days": cfg.half_life_days,
            "global": popularity.entries(fitted.global_scores, track_ids),
            "trending": popularity.entries(fitted.trending_scores, track_ids),
        },
    )
    provenance = {"created_at": utc_now(), "code_version": code_version()}
    write_artifact(
        layout.path("recs_eval"),
        "recs_eval",
        {"schema_version": "1.0", "artifact_version": version, **table, **provenance},
    )
    meta = {
        "schema_version": "1.0",
        "artifact_version": version,
        "data": {
            "interactions_sha256": sha256_file(layout.path("interactions_csv")),
            "rows": events.rows_read,
            "rows_used": int(events.ts.size),
            "rows_unembedded": events.rows_unembedded,
            "users": events.n_users,
            "tracks": len(track_ids),
            "tracks_with_events": int(len(set(events.tracks.tolist()))),
            "synthetic": events.synthetic,
        },
        "embeddings": {
            "track_ids_sha256": sha256_file(layout.track_ids_json),
            "embeddings_sha256": sha256_file(layout.embeddings_f32),
            "dim": int(emeta["dim"]),
        },
        "event_weights": dict(EVENT_WEIGHTS),
        "models": {
            "popularity": {"score": "positive-event count", "top_n": popularity.TOP_N},
            "trending": {"half_life_days": cfg.half_life_days, "top_n": popularity.TOP_N},
            "als": {
                "library": als.LIBRARY,
                "library_version": als.library_version(),
                "factors": cfg.factors,
                "regularization": cfg.regularization,
                "iterations": cfg.iterations,
                "alpha": cfg.alpha,
                "seed": cfg.seed,
            },
            "content": {"profile": CONTENT_PROFILE},
            "hybrid": {"cf_weight": sel["cf_weight"], "light_user_events": sel["light_user_events"]},
        },
        "files": files,
        "metrics": table["models"],
        "fit": {"served": "all events", "evaluated": table["split"]},
        "timings_sec": {
            "read": round(t_read - t0, 6),
            "evaluate": round(t_eval - t_read, 6),
            "fit": round(t_fit - t_eval, 6),
            "write": round(time.perf_counter() - t_fit, 6),
            "total": round(time.perf_counter() - t0, 6),
        },
        **provenance,
    }
    write_artifact(layout.path("recs_meta"), "recs_meta", meta)
    hy = table["models"]["hybrid"]
    log.info(
        "train-recs: %d test users; hybrid ndcg_at_%d %s (floor %s) -> %s",
        table["split"]["test_users"],
        cfg.k,
        None if hy[f"ndcg_at_{cfg.k}"] is None else round(hy[f"ndcg_at_{cfg.k}"]["mean"], 4),
        None
        if table["models"]["popularity"][f"ndcg_at_{cfg.k}"] is None
        else round(table["models"]["popularity"][f"ndcg_at_{cfg.k}"]["mean"], 4),
        layout.path("recs_meta").parent,
    )
    return meta


STEP = Step(
    name="train_recs",
    config=TrainRecsConfig,
    summary="Train and evaluate the recommenders (popularity, ALS, content, hybrid) -> recs/.",
    example="research-job train-recs --config configs/demo.yaml",
    run=run,
    check=check,
    pipeline=None,
)
