"""find-similar: query-by-audio over one artifact version folder.

Decode the query file, embed it exactly as the corpus was embedded (:mod:`research_job.query`: recorded model
spec, checked ``info()``, recorded post-processing, L2 norm), search the track embeddings and return the ranked
tracks with their metadata and cosine score. Search is exact (:func:`research_job.search.search`) unless
``index='hnswlib'`` asks for the approximate ``index/hnsw.index`` built by build-index.

A query that *is* one of the corpus tracks returns that track first with a score of about 1.0: that is the
right answer for query-by-audio. ``exclude_track_id`` removes one track id from the results.

``by_segment`` searches the segment embeddings of embed-segments instead (exact): a track scores the best of its
segments, and each result names that best segment's start and end (useful for an excerpt as the query).

A head folder (train-head) is queried through its head: the backbone recorded in ``head/head_meta.json`` computes
the query's frames and the head maps them to the folder's space; a backbone or ``head.pt`` that differs from the
record is refused, naming both values (:func:`research_job.query.load_query_encoder`). ``--model`` may then name
the backbone spec.

The folder searched follows the rule of every command: ``--version-dir`` when given, else
``<artifacts-root>/v1_model_<MODEL>``. The model is the one recorded in that folder; a ``--model`` given
explicitly (flag, environment or config file) must be that one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.config import CommonConfig, option
from research_job.embeddings import load_embeddings
from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from research_job.models.base import Encoder
from research_job.query import embed_query_file, load_query_encoder
from research_job.steps import Step

INDEXES = ("exact", "hnswlib")


@dataclass(frozen=True)
class FindSimilarConfig:
    """find-similar: one query audio file -> the k most similar tracks of an artifact version folder."""

    common: CommonConfig = field(default_factory=CommonConfig)
    query: Path | None = option(None, "the query audio file (any codec the pipeline decodes)")
    k: int = option(10, "number of tracks to return")
    exclude_track_id: str | None = option(
        None, "leave this track id out of the results (e.g. the query's own)"
    )
    index: str = option("exact", "exact search, or the approximate index/hnsw.index", choices=INDEXES)
    by_segment: bool = option(
        False, "search the segment embeddings (embed-segments): a track scores its best one"
    )
    json: bool = option(False, "print JSON instead of a table")


def check(cfg: FindSimilarConfig) -> None:
    """Refuse a missing query, a bad k, or segment search with an ANN index.

    Raises:
        ConfigError: naming the bad value.
    """
    if cfg.query is None:
        raise ConfigError("find-similar needs a query audio file (--query PATH)")
    if cfg.k < 1:
        raise ConfigError(f"k must be >= 1, got {cfg.k}")
    if cfg.index not in INDEXES:
        raise ConfigError(unknown_choice("index", cfg.index, INDEXES))
    if cfg.by_segment and cfg.index != "exact":
        raise ConfigError("Segment search is exact only; leave index at 'exact' with by_segment")


def _exact(
    vectors: np.ndarray, ids: list[str], q: np.ndarray, k: int, exclude: str | None
) -> list[tuple[int, float]]:
    from research_job.search import search

    top = search(vectors, ids, q, [exclude] if exclude is not None else None, k)
    return [(int(r), float(s)) for r, s in zip(top.rows[0], top.scores[0], strict=True) if r >= 0]


def _hnswlib(
    layout: ArtifactLayout, vectors: np.ndarray, ids: list[str], q: np.ndarray, k: int, exclude: str | None
) -> list[tuple[int, float]]:
    from research_job import hnsw_file
    from research_job.index.hnswlib_index import HnswlibIndex

    path = layout.hnsw_index
    if not path.is_file():
        raise ArtifactError(f"Missing {path} (run build-index first, or use index 'exact')")
    # hnswlib trusts every link in the file: a crafted graph would crash this process, so check it first
    hnsw_file.check_file(path, vectors.shape[0], vectors.shape[1])
    index = HnswlibIndex.load(path, vectors.shape[1])
    if index.ntotal != vectors.shape[0]:
        raise ArtifactError(f"{path} holds {index.ntotal} vectors, embeddings.f32 has {vectors.shape[0]}")
    if layout.index_meta.is_file():
        meta = schema.read_artifact(layout.index_meta, "index_meta")
        for entry in meta["indexes"]:
            if entry["name"] == "hnswlib" and "ef_search" in entry["params"]:
                index.set_ef(int(entry["params"]["ef_search"]))
    extra = 1 if exclude is not None else 0
    scores, rows = index.search(q, min(k + extra, vectors.shape[0]))
    hits = [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]
    if exclude is not None:
        hits = [(r, s) for r, s in hits if ids[r] != exclude]
    # re-score the shortlist exactly (float64) so scores are comparable with the exact path
    q64 = q[0].astype(np.float64)
    hits = [(r, float(vectors[r].astype(np.float64) @ q64)) for r, _ in hits]
    hits.sort(key=lambda h: (-h[1], h[0]))
    return hits[:k]


def _by_segment(
    layout: ArtifactLayout, meta: dict[str, Any], q: np.ndarray, k: int, exclude: str | None
) -> tuple[list[tuple[str, float]], dict[str, dict[str, Any]]]:
    """Exact scores of every segment; best segment per track; top-k tracks (ties: first segment row)."""
    from research_job.query import check_same_model, recorded_model
    from research_job.segments import load_segments

    seg, rows, smeta = load_segments(layout)
    seg_model = {key: smeta["model"].get(key) for key in ("name", "version", "weights_sha256", "layer")}
    check_same_model(recorded_model(meta), seg_model, layout.segments_meta)
    if smeta["postprocess"]["type"] != meta["postprocess"]["type"] or (
        smeta["postprocess"]["sha256"] != meta["postprocess"]["sha256"]
    ):
        raise ArtifactError(
            f"Segments in {layout.embeddings_dir} were post-processed with {smeta['postprocess']}, the track "
            f"embeddings with {meta['postprocess']['type']!r}: run embed-segments again"
        )
    q64 = q[0].astype(np.float64)
    scores = np.concatenate(
        [seg[i : i + 65536].astype(np.float64) @ q64 for i in range(0, seg.shape[0], 65536)]
    )
    best: dict[str, int] = {}
    for i, r in enumerate(rows):
        tid = r["track_id"]
        if tid != exclude and (tid not in best or scores[i] > scores[best[tid]]):
            best[tid] = i
    order = sorted(best.items(), key=lambda kv: (-scores[kv[1]], kv[1]))[:k]
    segs = {
        tid: {"segment_row": i, "start_sec": rows[i]["start_sec"], "end_sec": rows[i]["end_sec"]}
        for tid, i in order
    }
    return [(tid, float(scores[i])) for tid, i in order], segs


def find_similar(
    query: str | Path,
    layout: ArtifactLayout,
    *,
    k: int = 10,
    model: str | None = None,
    exclude_track_id: str | None = None,
    index: str = "exact",
    by_segment: bool = False,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Embed ``query`` like the corpus of ``layout`` and return its ``k`` nearest tracks.

    Args:
        query: audio file path.
        layout: the artifact version folder (embeddings + metadata).
        k: number of results.
        model: the model spec the caller expects; refused when it is not the recorded one.
        exclude_track_id: a track id left out of the results.
        index: ``exact`` or ``hnswlib`` (track search only).
        by_segment: search the segment embeddings; each result then also names its best ``segment``.
        encoder: an already loaded encoder (tests); checked against the record like a loaded one.

    Returns:
        ``{"query", "artifact_version", "model", "k", "index", "results": [{rank, track_id, title, composer,
        album_id, score}], "timings": {load_sec, embed_sec, search_sec, total_sec}}``.

    Raises:
        ConfigError: bad ``k`` or ``index``; ArtifactError: missing/inconsistent artifacts; ModelError: model
            mismatch; AudioDecodeError: the query cannot be decoded.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if index not in INDEXES:
        raise ConfigError(unknown_choice("index", index, INDEXES))
    t0 = time.perf_counter()
    vectors, ids, meta = load_embeddings(layout)
    qe = load_query_encoder(layout, model=model, encoder=encoder)
    rows = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    t1 = time.perf_counter()
    q = embed_query_file(query, qe)
    t2 = time.perf_counter()
    segments: dict[str, dict[str, Any]] = {}
    if by_segment:
        if index != "exact":
            raise ConfigError("Segment search is exact only; leave index at 'exact' with by_segment")
        hits, segments = _by_segment(layout, meta, q, k, exclude_track_id)
    elif index == "exact":
        hits = [(ids[r], s) for r, s in _exact(vectors, ids, q, k, exclude_track_id)]
    else:
        hits = [(ids[r], s) for r, s in _hnswlib(layout, vectors, ids, q, k, exclude_track_id)]
    t3 = time.perf_counter()
    results = []
    for rank, (tid, score) in enumerate(hits, start=1):
        r = rows.get(tid)
        hit: dict[str, Any] = {
            "rank": rank,
            "track_id": tid,
            "title": r.title if r is not None else "",
            "composer": r.composer_display if r is not None else None,
            "composer_key": r.composer if r is not None else None,
            "album_id": r.album_id if r is not None else None,
            "score": round(score, 6),
        }
        if by_segment:
            hit["segment"] = segments[tid]
        results.append(hit)
    return {
        "query": str(query),
        "artifact_version": layout.version_dir.name,
        "model": meta["model"]["name"],
        "postprocess": meta["postprocess"]["type"],
        "head": qe.head.name if qe.head is not None else None,
        "k": k,
        "index": "segments" if by_segment else index,
        "excluded_track_id": exclude_track_id,
        "results": results,
        "timings": {
            "load_sec": round(t1 - t0, 4),
            "embed_sec": round(t2 - t1, 4),
            "search_sec": round(t3 - t2, 4),
            "total_sec": round(t3 - t0, 4),
        },
    }


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`find_similar` result for the terminal."""

    def cell(v: Any, width: int) -> str:
        s = "" if v is None else str(v)
        return s if len(s) <= width else s[: width - 1] + "…"

    # ids are never cut (two albums that differ after 16 characters must not look the same): the id columns
    # are as wide as their longest value
    album_w = max([5, *(len(str(h["album_id"] or "")) for h in result["results"])])
    out = [
        f"Tracks most similar to {result['query']} ({result['model']}, {result['artifact_version']}, "
        f"{result['index']} search)",
        f"{'rank':>4}  {'score':>7}  {'title':<32}  {'composer':<24}  {'album':<{album_w}}  track_id",
    ]
    for h in result["results"]:
        seg = h.get("segment")
        where = f"  [{seg['start_sec']:.1f}-{seg['end_sec']:.1f} s]" if seg else ""
        out.append(
            f"{h['rank']:>4}  {h['score']:>7.4f}  {cell(h['title'] or h['track_id'], 32):<32}  "
            f"{cell(h['composer'], 24):<24}  {str(h['album_id'] or ''):<{album_w}}  {h['track_id']}{where}"
        )
    t = result["timings"]
    out.append(
        f"load {t['load_sec']:.3f}s, embed {t['embed_sec']:.3f}s, search {t['search_sec']:.4f}s, "
        f"total {t['total_sec']:.3f}s"
    )
    return "\n".join(out)


def run(cfg: FindSimilarConfig) -> dict[str, Any]:
    """Run :func:`find_similar` from a config; a model named explicitly must be the folder's recorded one."""
    check(cfg)
    assert cfg.query is not None
    return find_similar(
        cfg.query,
        cfg.common.layout,
        k=cfg.k,
        model=cfg.common.model if "model" in cfg.common.explicit else None,
        exclude_track_id=cfg.exclude_track_id,
        index=cfg.index,
        by_segment=cfg.by_segment,
    )


STEP = Step(
    name="find_similar",
    config=FindSimilarConfig,
    summary="Query by audio: the tracks most similar to one audio file, embedded like the corpus was.",
    example="research-job find-similar --query .cache/demo_corpus/store/audio/mozart-quartet-k458/mozart-k458-mvt4.ogg "
    "--version-dir artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt --k 5",
    run=run,
    check=check,
    show=lambda cfg, result: json.dumps(result, indent=2) if cfg.json else format_table(result),
    log_phase=False,
)
