"""compare-models: embed + evaluate several registry entries on one corpus and write one comparison table.

Each entry is ``SPEC[#POSTPROCESS]`` (e.g. ``musicnn-msd?layer=penultimate``, ``musicnn-msd#pca_whiten``,
``dsp-stats``, ``random``); the DSP baseline (``dsp-stats``) and the random floor (``random``) are always added
when missing. ``musly[?method=timbre|mandelellis&...]`` adds the classic music-similarity baseline (Musly, see
:mod:`research_job.models.musly`) when asked: it yields a distance matrix, not vectors, so it writes
``similarity/`` instead of ``embeddings/`` and is evaluated from the matrix by
:func:`research_job.similarity_matrix.evaluate_matrix` (the same metrics, tie-break and query policy). Every entry gets its own version folder ``<out_dir>/v1_model_<MODEL>[__<POSTPROCESS>]`` whose
``metadata/tracks_metadata.csv`` is a copy of the source folder's and whose ``audio_cache`` (and ``audio_wav``,
when present) are symlinks to the source folder's, so the corpus is exported and pulled once.

Peak memory: with ``isolate`` (default) each entry runs in its own spawned child process and the figure is that
child's RSS high-water mark (``getrusage(RUSAGE_SELF).ru_maxrss``: interpreter + imports + model + data); without
it the entry runs in this process and the figure is the ``tracemalloc`` peak (Python and NumPy allocations only;
torch's CPU allocator is not seen; on CUDA ``torch.cuda.max_memory_allocated`` is added). The method is recorded.
Tracing also slows allocation-heavy code: Musly's analysis (a Python list per waveform) runs ~15x slower in
process than isolated, so its time is only comparable to the others' with ``isolate``.

A failing entry (unknown model, missing weights, every track failing, a crashed child) becomes a ``failed`` row
with its error; the run goes on. Writes ``<out_dir>/comparison.json`` (schema ``model_comparison``) and
``<out_dir>/comparison.md``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_job import schema
from research_job.config import CommonConfig, option
from research_job.embeddings import POSTPROCESS
from research_job.errors import ArtifactError, ConfigError, ResearchJobError, unknown_choice
from research_job.io.atomic import write_json, write_text
from research_job.layout import ArtifactLayout, artifact_version, version_name
from research_job.provenance import code_version, sha256_file, utc_now
from research_job.steps import Step

LOG = logging.getLogger(__name__)

METRICS = ("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr")
DSP_BASELINE = "dsp-stats"
RANDOM_FLOOR = "random"
CLASSIC_BASELINE = "musly"
ROLES = {DSP_BASELINE: "dsp_baseline", RANDOM_FLOOR: "random_floor", CLASSIC_BASELINE: "classic_baseline"}
PEAK_CHILD = "child_ru_maxrss"
PEAK_TRACEMALLOC = "tracemalloc"


@dataclass(frozen=True)
class CompareModelsConfig:
    """compare-models: several models on one exported + pulled corpus -> comparison.json + comparison.md.

    ``common`` names the *source* version folder (``--version-dir``, or ``--model`` under ``artifacts_root``)
    holding ``metadata/tracks_metadata.csv`` and ``audio_cache/``.
    """

    common: CommonConfig = field(default_factory=CommonConfig)
    entries: str | tuple[str, ...] = option(
        "dsp-stats,random",
        "comma-separated SPEC[#POSTPROCESS] (a list in a config file); dsp-stats and random are always added; "
        "musly[?method=timbre|mandelellis] adds the Musly baseline (needs pymusly)",
    )
    out_dir: Path | None = option(
        None, "where the entries' version folders and the table go; unset = <artifacts-root>/comparison"
    )
    k: int = option(5, "cut-off of the retrieval metrics")
    bootstrap_resamples: int = option(1000, "bootstrap resamples for the 95% confidence intervals")
    seed: int = option(0, "seed of the bootstrap")
    batch_size: int = option(8, "tracks per call of each model")
    device: str = option("cpu", "torch device of the models: cpu, cuda, cuda:N, mps or auto")
    isolate: bool = option(
        True, "run each entry in its own child process (its peak RSS); off = in this process"
    )
    entry_timeout_sec: float | None = option(
        None, "give up on an entry after this many seconds (isolate only)"
    )
    reuse_embeddings: bool = option(
        False,
        "keep an entry's complete embeddings from an earlier run; off = embed afresh (times and memory measured)",
    )


def _out_dir(cfg: CompareModelsConfig) -> Path:
    return Path(cfg.out_dir) if cfg.out_dir is not None else Path(cfg.common.artifacts_root) / "comparison"


def _check_folders(cfg: CompareModelsConfig) -> list[Entry]:
    """The parsed entries, after refusing a bad k and any entry folder that would land on the source folder.

    Raises:
        ConfigError: naming the bad value or the clashing entry.
    """
    if not 1 <= cfg.k <= 100:
        raise ConfigError(f"k must be in 1..100, got {cfg.k}")
    entries = parse_entries(cfg.entries)
    source, out_dir = cfg.common.layout.version_dir.resolve(), _out_dir(cfg).resolve()
    if out_dir == source:
        raise ConfigError(f"out_dir {out_dir} must differ from the source version folder")
    for entry in entries:
        if out_dir / entry.folder == source:
            raise ConfigError(
                f"Entry {entry.label!r} would be written into the source folder {cfg.common.layout.version_dir}; "
                "choose another out_dir (e.g. <artifacts_root>/comparison)"
            )
    return entries


def check(cfg: CompareModelsConfig) -> None:
    """Refuse a bad k, clashing folders and malformed entries (unknown model, option or post-processing) before
    any model runs. (The library's :func:`run` keeps an entry that fails at run time as a failed row.)

    Raises:
        ConfigError / ModelError: naming the bad entry and the valid values.
    """
    from research_job.models import musly
    from research_job.models.registry import check_spec

    for e in _check_folders(cfg):
        if e.is_matrix:
            musly.check_spec(e.model)
        else:
            check_spec(e.model)


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: a registry spec, a post-processing and its role."""

    model: str
    postprocess: str = "none"
    role: str = "candidate"

    @property
    def label(self) -> str:
        return self.model if self.postprocess == "none" else f"{self.model}#{self.postprocess}"

    @property
    def is_matrix(self) -> bool:
        """Whether the entry yields a track-to-track matrix (Musly) instead of embeddings."""
        return self.role == "classic_baseline"

    @property
    def folder(self) -> str:
        base = version_name(self.model)
        return base if self.postprocess == "none" else f"{base}__{self.postprocess}"


def parse_entries(value: str | list[str] | tuple[str, ...]) -> list[Entry]:
    """Parse ``SPEC[#POSTPROCESS]`` items and add the DSP baseline and random floor when missing.

    Raises:
        ConfigError: empty spec, unknown post-processing (listing the valid ones), post-processing of a matrix
            entry (Musly) or a duplicate entry.
    """
    from research_job.models.registry import split_options

    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Entry] = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            continue
        spec, _, pp = item.partition("#")
        spec, pp = spec.strip(), (pp.strip() or "none")
        if not spec:
            raise ConfigError(f"Entry {item!r} has no model spec; expected SPEC[#POSTPROCESS]")
        if pp not in POSTPROCESS:
            raise ConfigError(unknown_choice(f"postprocess of entry {item!r}", pp, POSTPROCESS))
        name = split_options(spec)[0]
        role = ROLES.get(name, "candidate")
        if role == "classic_baseline" and pp != "none":
            raise ConfigError(
                f"Entry {item!r}: {name} yields a distance matrix; post-processing applies to embeddings only"
            )
        e = Entry(spec, pp, role)
        if any(o.model == e.model and o.postprocess == e.postprocess for o in out):
            raise ConfigError(f"Entry {e.label!r} is listed twice")
        out.append(e)
    if not any(e.role == "dsp_baseline" for e in out):
        out.append(Entry(DSP_BASELINE, "none", "dsp_baseline"))
    if not any(e.role == "random_floor" for e in out):
        out.append(Entry(RANDOM_FLOOR, "none", "random_floor"))
    folders = [e.folder for e in out]
    dup = sorted({f for f in folders if folders.count(f) > 1})
    if dup:
        raise ConfigError(f"Entries map to the same version folder {dup}; use distinct model specs")
    return out


def _link(target: Path, link: Path) -> None:
    """Make ``link`` a symlink to ``target`` (replacing an old link; refusing to replace a real folder)."""
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        raise ArtifactError(f"{link} exists and is not a link to the source {target}; remove it first")
    link.symlink_to(target, target_is_directory=True)


def prepare_entry_dir(source: ArtifactLayout, dest: ArtifactLayout) -> None:
    """Point ``dest`` at the source corpus: copy the metadata CSV (+ export report), symlink the audio folders.

    Raises:
        ArtifactError: the source has no metadata CSV or no audio at all.
    """
    if not source.tracks_csv.is_file():
        raise ArtifactError(
            f"Source {source.version_dir} has no {source.tracks_csv.name} (run export-metadata)"
        )
    if not source.audio_cache_dir.is_dir() and not source.audio_wav_dir.is_dir():
        raise ArtifactError(
            f"Source {source.version_dir} has neither audio_cache/ nor audio_wav/ (run pull-audio)"
        )
    dest.metadata_dir.mkdir(parents=True, exist_ok=True)
    for src, dst in ((source.tracks_csv, dest.tracks_csv), (source.export_report, dest.export_report)):
        if src.is_file():
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    for src, dst in (
        (source.audio_cache_dir, dest.audio_cache_dir),
        (source.audio_wav_dir, dest.audio_wav_dir),
    ):
        if src.is_dir():
            _link(src.resolve(), dst)


def _musly_and_evaluate(version_dir: str, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Musly's distance matrix of the entry folder's corpus (kept when complete and asked to reuse), evaluated."""
    from research_job import similarity_matrix as sm
    from research_job.metadata import read_tracks_csv
    from research_job.models import musly

    layout = ArtifactLayout(Path(version_dir))
    rows = read_tracks_csv(layout.tracks_csv)
    csv_sha = sha256_file(layout.tracks_csv)
    if not (params["reuse_embeddings"] and _matrix_is_current(layout, model, csv_sha)):
        res = musly.compute_distances(layout, rows, model)
        sm.write_matrix(
            layout,
            res.distances,
            res.track_ids,
            {
                "schema_version": "1.0",
                "artifact_version": artifact_version(layout, model),
                "model": model,
                "kind": "distance",
                "backend": res.backend,
                "metadata_sha256": csv_sha,
                "stats": res.stats,
                "failures": res.failures,
                "created_at": utc_now(),
                "code_version": code_version(),
            },
        )
    matrix, ids, meta = sm.read_matrix(layout)
    return sm.evaluate_matrix(
        matrix,
        ids,
        rows,
        kind=meta["kind"],
        k=params["k"],
        bootstrap_resamples=params["bootstrap_resamples"],
        seed=params["seed"],
    )


def _matrix_is_current(layout: ArtifactLayout, model: str, csv_sha: str) -> bool:
    """A complete, verified matrix of the same spec over the same metadata is already in the folder."""
    from research_job import similarity_matrix as sm

    try:
        _, _, meta = sm.read_matrix(layout)
    except ResearchJobError:
        return False
    return bool(meta["model"] == model and meta["metadata_sha256"] == csv_sha)


def _run_entry(
    version_dir: str, model: str, postprocess: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """Run one entry in its folder: Musly -> its matrix evaluation (returned); a model -> embed + evaluate."""
    from research_job.models import musly

    if musly.is_musly(model):
        return _musly_and_evaluate(version_dir, model, params)
    _embed_and_evaluate(version_dir, model, postprocess, params)
    return None


def _embed_and_evaluate(version_dir: str, model: str, postprocess: str, params: dict[str, Any]) -> None:
    from research_job.steps import embed, evaluate

    common = CommonConfig(model=model, version_dir=Path(version_dir))
    embed.run(
        embed.EmbedConfig(
            common=common, postprocess=postprocess, batch_size=params["batch_size"], device=params["device"]
        )
    )
    evaluate.run(
        evaluate.EvaluateConfig(
            common=common,
            k=params["k"],
            bootstrap_resamples=params["bootstrap_resamples"],
            seed=params["seed"],
        )
    )


def _error_text(e: BaseException) -> str:
    msg = " ".join((str(e) or type(e).__name__).split())
    return msg if isinstance(e, ResearchJobError) else f"{type(e).__name__}: {msg}"


def _child_main(version_dir: str, model: str, postprocess: str, params: dict[str, Any], report: str) -> None:
    """Entry point of a spawned child: run one entry, write ``{ok, error, peak_rss_bytes, matrix_eval}``."""
    import resource

    from research_job.logging_setup import setup_logging

    setup_logging(False)
    out: dict[str, Any] = {"ok": True, "error": None, "matrix_eval": None}
    try:
        out["matrix_eval"] = _run_entry(version_dir, model, postprocess, params)
    except BaseException as e:  # noqa: BLE001 - reported to the parent as this entry's failure
        out = {"ok": False, "error": _error_text(e), "matrix_eval": None}
        LOG.debug("entry %s failed:\n%s", model, traceback.format_exc())
    # Linux reports ru_maxrss in KiB
    out["peak_rss_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    write_json(report, out)


#: what running an entry gives: (error, peak memory bytes, the matrix evaluation of a matrix entry)
Outcome = tuple[str | None, int | None, dict[str, Any] | None]


def _run_isolated(
    entry: Entry, dest: ArtifactLayout, params: dict[str, Any], timeout: float | None
) -> Outcome:
    import multiprocessing as mp

    report = dest.version_dir / ".compare_entry.json"
    report.unlink(missing_ok=True)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=_child_main,
        args=(str(dest.version_dir), entry.model, entry.postprocess, params, str(report)),
        daemon=False,
    )
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
        return f"timed out after {timeout:g} s", None, None
    if not report.is_file():
        return f"child process exited with code {proc.exitcode} without a report", None, None
    out = json.loads(report.read_text(encoding="utf-8"))
    report.unlink(missing_ok=True)
    return (None if out["ok"] else out["error"]), out.get("peak_rss_bytes"), out.get("matrix_eval")


def _run_in_process(entry: Entry, dest: ArtifactLayout, params: dict[str, Any]) -> Outcome:
    import sys
    import tracemalloc

    torch: Any = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_available() and params["device"].startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    matrix_eval = None
    try:
        matrix_eval = _run_entry(str(dest.version_dir), entry.model, entry.postprocess, params)
        error = None
    except Exception as e:  # noqa: BLE001 - one failing entry must not end the comparison
        error = _error_text(e)
        LOG.debug("entry %s failed", entry.label, exc_info=True)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if cuda:
        peak += int(torch.cuda.max_memory_allocated())
    return error, int(peak), matrix_eval


def _created_at(layout: ArtifactLayout, entry: Entry) -> str | None:
    """``created_at`` of the entry's embeddings or matrix (to tell whether they were reused), None when absent."""
    meta = layout.path("similarity_meta") if entry.is_matrix else layout.embeddings_meta
    try:
        return str(json.loads(meta.read_text(encoding="utf-8"))["created_at"])
    except (OSError, ValueError, KeyError):
        return None


def _metric_block(ev: dict[str, Any], block: str) -> dict[str, Any] | None:
    b = ev[block]
    if b["metrics"] is None:
        return None
    ci = b["confidence_intervals"]
    return {
        m: {
            "value": b["metrics"][m],
            "random": b["random_baseline"][m],
            "ci_low": ci[m]["low"] if ci else None,
            "ci_high": ci[m]["high"] if ci else None,
        }
        for m in METRICS
    }


def _row(
    entry: Entry,
    dest: ArtifactLayout,
    out_dir: Path,
    outcome: Outcome,
    wall: float,
) -> dict[str, Any]:
    error, peak, matrix_eval = outcome
    row: dict[str, Any] = {
        "rank": None,
        "label": entry.label,
        "model": entry.model,
        "postprocess": entry.postprocess,
        "role": entry.role,
        "status": "failed" if error else "ok",
        "error": error,
        "version_dir": os.path.relpath(dest.version_dir, out_dir),
        "model_info": None,
        "dim": None,
        "n_embedded": None,
        "n_failed_tracks": None,
        "n_queries": None,
        "metrics": None,
        "exclude_same_album": None,
        "sec_per_track": None,
        "x_realtime": None,
        "peak_memory_bytes": peak,
        "embed_sec": None,
        "evaluate_sec": None,
        "wall_sec": round(wall, 3),
        "embeddings_reused": False,
    }
    if error:
        return row
    if entry.is_matrix:
        if matrix_eval is None:
            raise ArtifactError(f"Entry {entry.label!r} finished without its matrix evaluation")
        row.update(_matrix_fields(dest, matrix_eval))
        return row
    meta = schema.read_artifact(dest.embeddings_meta, "embeddings_meta")
    ev = schema.read_artifact(dest.eval_results, "eval_results")
    st = meta["stats"]
    album = _metric_block(ev, "exclude_same_album")
    row.update(
        {
            "model_info": {k: meta["model"][k] for k in ("version", "weights_sha256", "layer")},
            "dim": meta["dim"],
            "n_embedded": meta["count"],
            "n_failed_tracks": st["n_failed"],
            "n_queries": ev["overall"]["n_queries"],
            "metrics": _metric_block(ev, "overall"),
            "exclude_same_album": None
            if album is None
            else {
                "n_queries": ev["exclude_same_album"]["n_queries"],
                "precision_at_k": album["precision_at_k"],
            },
            "sec_per_track": round(st["wall_sec"] / max(1, st["n_input_tracks"]), 6),
            "x_realtime": st.get("x_realtime"),
            "embed_sec": st["wall_sec"],
            "evaluate_sec": ev["timings"]["total_sec"],
        }
    )
    return row


def _matrix_fields(dest: ArtifactLayout, ev: dict[str, Any]) -> dict[str, Any]:
    """The row fields of a matrix entry (Musly): its sidecar's facts and its matrix evaluation."""
    meta = schema.read_artifact(dest.path("similarity_meta"), "similarity_meta")
    st, b = meta["stats"], meta["backend"]
    album = _metric_block(ev, "exclude_same_album")
    return {
        "model_info": {
            "version": f"{b['name']} {b['version']} ({b['binding']})",
            "weights_sha256": None,
            "layer": None,
        },
        "similarity_info": {
            "kind": meta["kind"],
            "backend": b["name"],
            "version": b["version"],
            "method": b["method"],
            "normalization": b["normalization"],
            "params": b["params"],
            "matrix_sha256": meta["files"]["matrix_sha256"],
        },
        "n_embedded": meta["count"],
        "n_failed_tracks": st["n_failed"],
        "n_queries": ev["overall"]["n_queries"],
        "metrics": _metric_block(ev, "overall"),
        "exclude_same_album": None
        if album is None
        else {"n_queries": ev["exclude_same_album"]["n_queries"], "precision_at_k": album["precision_at_k"]},
        "sec_per_track": round(st["wall_sec"] / max(1, st["n_input_tracks"]), 6),
        "x_realtime": st["x_realtime"],
        "embed_sec": st["wall_sec"],
        "evaluate_sec": ev["timings"]["total_sec"],
    }


def order_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Successful rows by P@k descending (entry order on ties, rows without a score after), then failed rows."""

    def key(ir: tuple[int, dict[str, Any]]) -> tuple[int, float, int]:
        i, r = ir
        if r["status"] != "ok":
            return (2, 0.0, i)
        if r["metrics"] is None:
            return (1, 0.0, i)
        return (0, -r["metrics"]["precision_at_k"]["value"], i)

    ordered = [r for _, r in sorted(enumerate(rows), key=key)]
    rank = 0
    for r in ordered:
        if r["status"] == "ok":
            rank += 1
            r["rank"] = rank
    return ordered


def run(cfg: CompareModelsConfig) -> dict[str, Any]:
    """Run every entry (embed + evaluate) over the source corpus and write the comparison table.

    Returns:
        the ``comparison.json`` dict.

    Raises:
        ConfigError: bad entries / k; ArtifactError: the source folder lacks metadata or audio, or every
            entry failed (the table is written first).
    """

    entries = _check_folders(cfg)
    source = cfg.common.layout
    out_dir = _out_dir(cfg)
    if not source.tracks_csv.is_file():
        raise ArtifactError(
            f"Source {source.version_dir} has no {source.tracks_csv.name} (run export-metadata)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {
        "k": cfg.k,
        "bootstrap_resamples": cfg.bootstrap_resamples,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
        "reuse_embeddings": cfg.reuse_embeddings,
    }
    from research_job.metadata import read_tracks_csv

    n_tracks = len(read_tracks_csv(source.tracks_csv))
    t_start = time.perf_counter()
    rows = []
    for entry in entries:
        dest = ArtifactLayout(out_dir / entry.folder)
        LOG.info("compare-models: %s -> %s", entry.label, dest.version_dir)
        t0 = time.perf_counter()
        before = _created_at(dest, entry)
        outcome: Outcome
        try:
            prepare_entry_dir(source, dest)
            if not cfg.reuse_embeddings:
                for old in (dest.embeddings_dir, dest.eval_dir, dest.path("similarity_meta").parent):
                    shutil.rmtree(old, ignore_errors=True)
            if cfg.isolate:
                outcome = _run_isolated(entry, dest, params, cfg.entry_timeout_sec)
            else:
                outcome = _run_in_process(entry, dest, params)
        except (ResearchJobError, OSError) as e:
            outcome = (_error_text(e), None, None)
        error = outcome[0]
        if error:
            LOG.warning("compare-models: %s failed: %s", entry.label, error)
        row = _row(entry, dest, out_dir, outcome, time.perf_counter() - t0)
        row["embeddings_reused"] = bool(
            not error and before is not None and before == _created_at(dest, entry)
        )
        rows.append(row)
    rows = order_rows(rows)
    result = {
        "schema_version": "1.0",
        "k": cfg.k,
        "relevance": "same_standardized_composer",
        "source_version_dir": str(source.version_dir),
        "metadata_sha256": sha256_file(source.tracks_csv),
        "n_tracks": n_tracks,
        "bootstrap_resamples": cfg.bootstrap_resamples,
        "seed": cfg.seed,
        "device": cfg.device,
        "reuse_embeddings": cfg.reuse_embeddings,
        "peak_memory_method": PEAK_CHILD if cfg.isolate else PEAK_TRACEMALLOC,
        "n_entries": len(rows),
        "n_failed": sum(r["status"] != "ok" for r in rows),
        "rows": rows,
        "wall_sec": round(time.perf_counter() - t_start, 3),
        "created_at": utc_now(),
        "code_version": code_version(),
    }
    schema.write_artifact(out_dir / "comparison.json", "model_comparison", result)
    write_text(out_dir / "comparison.md", to_markdown(result))
    if result["n_failed"] == len(rows):
        raise ArtifactError(
            f"Every entry failed (see {out_dir / 'comparison.md'}): "
            + "; ".join(f"{r['label']}: {r['error']}" for r in rows[:3])
        )
    return result


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def to_markdown(result: dict[str, Any]) -> str:
    """The comparison table as Markdown (metric, 95% CI and random-ranking expectation per cell)."""
    k = result["k"]
    method = {
        PEAK_CHILD: "RSS high-water mark of a child process per model",
        PEAK_TRACEMALLOC: "tracemalloc peak in-process (Python + NumPy; torch CPU tensors not counted)",
    }[result["peak_memory_method"]]
    lines = [
        f"# Model comparison: composer retrieval @ {k}",
        "",
        f"{result['n_tracks']} tracks from `{result['source_version_dir']}`; cells are "
        f"`value [95% CI] (random expectation)`; peak memory = {method}.",
        "",
        f"| rank | model | post | P@{k} | HitRate@{k} | NDCG@{k} | MRR | P@{k} no album | dim | s/track "
        f"| x real time | peak MiB | status |",
        "|---:|---|---|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]

    def cell(block: dict[str, Any] | None) -> str:
        if block is None:
            return "n/a"
        ci = f" [{block['ci_low']:.3f}, {block['ci_high']:.3f}]" if block["ci_low"] is not None else ""
        return f"{block['value']:.3f}{ci} ({block['random']:.3f})"

    for r in result["rows"]:
        m = r["metrics"] or {}
        album = (r["exclude_same_album"] or {}).get("precision_at_k")
        peak = None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / 2**20
        status = "ok" if r["status"] == "ok" else "failed: " + (r["error"] or "").replace("|", "\\|")[:160]
        lines.append(
            f"| {r['rank'] or '-'} | `{r['model']}` | {r['postprocess']} | {cell(m.get('precision_at_k'))} "
            f"| {cell(m.get('hit_rate_at_k'))} | {cell(m.get('ndcg_at_k'))} | {cell(m.get('mrr'))} "
            f"| {cell(album)} | {r['dim'] or ('matrix' if r.get('similarity_info') else 'n/a')} "
            f"| {_fmt(r['sec_per_track'], '.4f')} "
            f"| {_fmt(r['x_realtime'], '.1f')} | {_fmt(peak, '.0f')} | {status} |"
        )
    lines += ["", f"Total wall time {result['wall_sec']:.1f} s; {result['n_failed']} failed entries.", ""]
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    """What the CLI prints: the Markdown table."""
    return to_markdown(result)


STEP = Step(
    name="compare_models",
    config=CompareModelsConfig,
    summary="Embed + evaluate several models on one exported corpus; writes comparison.json and comparison.md.",
    example="research-job compare-models --version-dir artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt "
    "--entries 'musicnn-msd,musicnn-msd#center' --out-dir artifacts/comparison",
    run=run,
    check=check,
    show=lambda cfg, result: format_table(result),
)
