"""The excerpt task (S000): can a degraded excerpt of a catalogue track find its own track?

Queries are seeded augmented excerpts of catalogue tracks (``seconds`` long, augmentation chain ``chain`` of
:mod:`research_job.augment`: by default band-limited to 4 kHz, noise at 20 dB SNR, a gain change), embedded
exactly as a query-by-audio would be (:mod:`research_job.query`: the recorded model, its post-processing, a trained
head when the folder has one). The target is the source track; candidates are every track of the folder (the
source included: that is what the query should find). Reported: Recall@1/10/100 and MRR with seeded bootstrap
95% CIs and their exact values under a random ranking (Recall@k = k/N, MRR = H_N / N).

For a head folder the same queries also go through the frozen backbone against ``head/frozen.f32`` (the
backbone's own vectors of the same tracks), so frozen and head are compared on identical queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from research_job import metrics as M
from research_job.augment import augmented, describe, seed_for
from research_job.embeddings import embed_waveforms, l2_normalize, load_embeddings
from research_job.errors import ArtifactError, ResearchJobError
from research_job.io.audio import load_track_audio
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import read_tracks_csv
from research_job.provenance import code_version, utc_now

CUTOFFS = (1, 10, 100)
METRICS = ("recall_at_1", "recall_at_10", "recall_at_100", "mrr")


def target_ranks(queries: np.ndarray, corpus: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target row in the exact ranking of ``corpus`` (float64 score descending,
    ties by ascending row): 1 + the rows scoring above the target + the lower rows scoring equal."""
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(corpus, dtype=np.float64)
    scores = q @ c.T
    t = scores[np.arange(len(targets)), targets][:, None]
    rows = np.arange(c.shape[0])[None, :]
    ahead = (scores > t) | ((scores == t) & (rows < targets[:, None]))
    return 1 + ahead.sum(axis=1)


def per_query(ranks: np.ndarray) -> np.ndarray:
    """[Q, 4] Recall@1, @10, @100 and reciprocal rank of each query."""
    r = np.asarray(ranks, dtype=np.float64)[:, None]
    return np.concatenate([(r <= np.array(CUTOFFS)).astype(np.float64), 1.0 / r], axis=1)


def random_baseline(n: int) -> dict[str, float]:
    """The exact expectation of each metric when the target is at a uniformly random rank among ``n``."""
    return {
        **{f"recall_at_{k}": min(1.0, k / n) for k in CUTOFFS},
        "mrr": float(sum(1.0 / i for i in range(1, n + 1)) / n),
    }


def summary(ranks: np.ndarray, n_candidates: int, resamples: int, seed: int) -> dict[str, Any]:
    """Means, bootstrap 95% CIs and the random floor of the per-query metrics."""
    values = per_query(ranks)
    ci = M.bootstrap_ci(values, n_resamples=resamples, seed=seed, names=METRICS)
    return {
        "n_queries": int(len(ranks)),
        "metrics": {m: float(v) for m, v in zip(METRICS, values.mean(axis=0), strict=True)},
        "confidence_intervals": ci,
        "random_baseline": random_baseline(n_candidates),
        "median_rank": float(np.median(ranks)),
    }


def make_queries(
    layout: ArtifactLayout,
    track_ids: Sequence[str],
    rows: Sequence[int],
    sample_rate: int,
    *,
    seconds: float,
    chain: str,
    per_track: int,
    seed: int,
) -> tuple[list[np.ndarray], np.ndarray, list[dict[str, str]]]:
    """(query waveforms, their target rows, the tracks that could not be decoded) for the chosen rows."""
    by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    waves: list[np.ndarray] = []
    targets: list[int] = []
    failed: list[dict[str, str]] = []
    for row in rows:
        tid = track_ids[row]
        try:
            wav = load_track_audio(layout, by_id[tid], sample_rate)
        except ResearchJobError as e:
            failed.append({"track_id": tid, "reason": str(e)})
            continue
        for j in range(per_track):
            waves.append(augmented(wav, sample_rate, chain, seed_for("excerpt", tid, j, seed), seconds))
            targets.append(row)
    return waves, np.asarray(targets, dtype=np.int64), failed


#: query excerpts per call of the model
BATCH = 8


def _embedded(waves: Sequence[np.ndarray], embed: Callable[[list[np.ndarray]], np.ndarray]) -> np.ndarray:
    """``embed`` over batches of :data:`BATCH` waveforms, stacked."""
    return np.concatenate([embed(list(waves[i : i + BATCH])) for i in range(0, len(waves), BATCH)])


def evaluate_excerpts(
    layout: ArtifactLayout,
    *,
    seconds: float = 10.0,
    chain: str = "query",
    per_track: int = 1,
    max_tracks: int | None = None,
    seed: int = 0,
    resamples: int = 1000,
    rows: Sequence[int] | None = None,
    encoder: Any = None,
) -> dict[str, Any]:
    """Run the excerpt task on ``layout`` and return the ``excerpt_results`` dict (nothing written).

    Args:
        seconds, chain, per_track: each query track gives ``per_track`` excerpts of ``seconds`` with ``chain``.
        max_tracks: query at most this many tracks (a seeded sample), None = all (or all of ``rows``).
        rows: the track rows to query (e.g. a head's test split); default every row.
        encoder: an already loaded backbone (tests); default the recorded model.

    Raises:
        ArtifactError: no track could be decoded, or the folder has no embeddings.
    """
    from research_job.query import QueryEncoder, embed_query_waveforms, load_query_encoder

    t0 = time.perf_counter()
    vectors, ids, meta = load_embeddings(layout)
    qe: QueryEncoder = load_query_encoder(layout, encoder=encoder)
    chosen = np.arange(len(ids)) if rows is None else np.asarray(sorted(rows), dtype=np.int64)
    if max_tracks is not None and chosen.size > max_tracks:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=max_tracks, replace=False))
    sr = int(qe.encoder.sample_rate)
    waves, targets, failed = make_queries(
        layout, ids, chosen.tolist(), sr, seconds=seconds, chain=chain, per_track=per_track, seed=seed
    )
    if not waves:
        raise ArtifactError(f"No query could be made: every chosen track failed to decode ({failed[:3]})")
    t1 = time.perf_counter()
    q = _embedded(waves, lambda batch: embed_query_waveforms(batch, qe))
    result: dict[str, Any] = {
        "schema_version": "1.0",
        "task": "excerpt",
        "artifact_version": artifact_version(layout, meta["model"]["name"]),
        "model": meta["model"]["name"],
        "embeddings_sha256": meta["files"]["embeddings_sha256"],
        "query": {
            "seconds": float(seconds),
            "chain": chain,
            "augmentation": describe(chain),
            "per_track": int(per_track),
            "seed": int(seed),
            "n_tracks": int(chosen.size),
            "failed": failed,
        },
        "n_candidates": len(ids),
        **summary(target_ranks(q, vectors, targets), len(ids), resamples, seed),
        "frozen": None,
    }
    frozen = _frozen_vectors(layout, len(ids))
    if frozen is not None:
        fq = l2_normalize(_embedded(waves, lambda batch: embed_waveforms(qe.encoder, batch)))
        result["frozen"] = summary(target_ranks(fq, frozen, targets), len(ids), resamples, seed)
    result["timings"] = {
        "queries_sec": round(t1 - t0, 3),
        "embed_and_rank_sec": round(time.perf_counter() - t1, 3),
        "total_sec": round(time.perf_counter() - t0, 3),
    }
    result["created_at"] = utc_now()
    result["code_version"] = code_version()
    return result


def _frozen_vectors(layout: ArtifactLayout, n: int) -> np.ndarray | None:
    """The frozen backbone's vectors of a head folder (``head/frozen.f32``, same rows), else None."""
    try:
        from research_job.heads import is_head_folder
    except ImportError:  # the heads package is optional for folders without one
        return None
    if not is_head_folder(layout):
        return None
    raw = np.fromfile(layout.path("head_frozen"), dtype="<f4")
    if raw.size % n:
        raise ArtifactError(f"{layout.path('head_frozen')}: {raw.size} floats is not {n} rows")
    return raw.reshape(n, -1)


def format_excerpt(result: dict[str, Any]) -> str:
    """Plain-text table of an excerpt result (frozen beside it for a head folder)."""
    q = result["query"]
    cols = [("model", result)] + ([("frozen", result["frozen"])] if result.get("frozen") else [])
    head = f"{'metric':<14}" + "".join(f"{name:>10}{'95% CI':>17}" for name, _ in cols) + f"{'random':>9}"
    out = [
        f"Excerpt task, model {result['model']}: {result['n_queries']} queries of {q['seconds']:g} s "
        f"({q['chain']} chain) among {result['n_candidates']} tracks",
        head,
    ]
    for m in METRICS:
        line = f"{m:<14}"
        for _, block in cols:
            ci = block["confidence_intervals"][m]
            interval = f"[{ci['low']:.3f}, {ci['high']:.3f}]"
            line += f"{block['metrics'][m]:>10.4f}{interval:>17}"
        out.append(line + f"{result['random_baseline'][m]:>9.4f}")
    return "\n".join(out)
