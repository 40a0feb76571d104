"""A head version folder: from a backbone folder with frames to a self-contained folder that serves the head.

:func:`train_head_folder` reads like its pipeline::

    _read_source -> _config (fingerprinted) -> _reusable? -> _claim -> _split -> training.train
        -> _write_folder: head.pt, embeddings (every row through the head), frozen.f32, frame links, metadata
           copy, audio links, curves.json + curves.png, head_meta.json last -> checkpoint removed

The folder (default ``<artifacts_root>/v1_model_<backbone>_head-<name>``) holds a copy of ``metadata/``,
symlinks to the backbone folder's ``audio_cache/`` and ``audio_wav/`` (the corpus is pulled once), hard links
(or copies, across file systems) of its frame files, and its own ``embeddings/`` written with
:func:`research_job.embeddings.write_embeddings`, so build-index, evaluate, validate, publish and the Node API
treat it as any version folder. A rerun with the same configuration and a verified finished head reuses it; a
finished head of another configuration is refused unless ``force``.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_job import schema
from research_job.embeddings import load_embeddings, write_embeddings
from research_job.errors import ArtifactError, ConfigError, ResearchJobError
from research_job.frames import Frames, load_frames
from research_job.heads.data import Split, labels_of, make_split
from research_job.heads.meta import (
    HeadParams,
    check_name,
    default_head_dir,
    differences,
    fingerprint,
    head_model_name,
    is_head_folder,
)
from research_job.io.atomic import write_bytes
from research_job.layout import ArtifactLayout, artifact_version
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import code_version, sha256_bytes, sha256_file, utc_now

LOG = logging.getLogger(__name__)
#: the frame files a head folder links from its backbone folder (layout keys)
FRAME_KEYS = ("frames_f16", "frames_offsets", "views_f16", "views_offsets", "frames_meta")


@dataclass(frozen=True)
class HeadJob:
    """What to train and where: the backbone folder, the head's name and parameters, the split, the device."""

    source: ArtifactLayout
    name: str
    params: HeadParams = HeadParams()
    dest: ArtifactLayout | None = None
    artifacts_root: Path = Path("artifacts")
    split_by: str = "album"
    label: str = "composer"
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    device: str = "cpu"
    force: bool = False

    @property
    def uses_label(self) -> bool:
        return self.params.objective == "triplet" or self.split_by == "label"


@dataclass(frozen=True)
class _Source:
    """The backbone folder, read and checked: its embeddings meta, rows, frames and metadata."""

    layout: ArtifactLayout
    meta: dict[str, Any]
    ids: list[str]
    frames: Frames
    rows: list[TrackRow]


def _read_source(layout: ArtifactLayout) -> _Source:
    """Read the backbone folder and check it can train a head.

    Raises:
        ArtifactError: no embeddings or frames, a head folder as the source, embeddings whose sha256 differs from
            their sidecar, or frames of another model.
    """
    if is_head_folder(layout):
        raise ArtifactError(
            f"{layout.version_dir} is itself a head folder; train on its backbone folder instead"
        )
    _, ids, meta = load_embeddings(layout)
    if sha256_file(layout.embeddings_f32) != meta["files"]["embeddings_sha256"]:
        raise ArtifactError(f"{layout.embeddings_f32}: sha256 differs from embeddings_meta.json")
    frames = load_frames(layout)
    fm, em = frames.meta["model"], meta["model"]
    if (fm["name"], fm["version"], fm["weights_sha256"]) != (em["name"], em["version"], em["weights_sha256"]):
        raise ArtifactError(
            f"{layout.frames_meta} records model {fm}, the embeddings {em['name']!r} {em['version']!r} "
            f"{em['weights_sha256']!r}: embed again with --frames"
        )
    if frames.n_tracks != len(ids):
        raise ArtifactError(f"{layout.frames_meta}: {frames.n_tracks} tracks, embeddings have {len(ids)}")
    return _Source(layout, meta, ids, frames, read_tracks_csv(layout.tracks_csv))


def _backbone(src: _Source) -> dict[str, Any]:
    """The ``backbone`` object of head_meta.json."""
    fm = src.frames.meta
    return {
        "version_dir": src.layout.version_dir.name,
        "model": {
            k: src.meta["model"][k]
            for k in ("name", "version", "weights_sha256", "layer", "pooling", "params")
        },
        "frame_layers": fm["layers"],
        "frame_dim": int(fm["dim"]),
        "frame_sec": float(fm["frame_sec"]),
        "hop_sec": float(fm["hop_sec"]),
        "n_views": src.frames.n_views,
        "dim": int(src.meta["dim"]),
        "sample_rate": int(src.meta["sample_rate"]),
        "embeddings_sha256": src.meta["files"]["embeddings_sha256"],
        "track_ids_sha256": src.meta["files"]["track_ids_sha256"],
        "frames_sha256": fm["files"]["frames_sha256"],
        "views_sha256": fm["views"]["files"]["views_sha256"] if fm.get("views") else None,
    }


def config_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of a head_meta dict that decides the result (fingerprinted; compared on a rerun)."""
    b = meta["backbone"]
    return {
        "name": meta["name"],
        "hyperparameters": meta["hyperparameters"],
        "label": meta["label"],
        "split": {k: meta["split"][k] for k in ("by", "seed", "fractions")},
        "backbone": {
            k: b[k] for k in ("embeddings_sha256", "track_ids_sha256", "frames_sha256", "views_sha256")
        },
        "device": meta["device"],
    }


def _skeleton(job: HeadJob, src: _Source, device: str) -> dict[str, Any]:
    """The head_meta fields known before training (those :func:`config_of` reads)."""
    return {
        "name": job.name,
        "model_name": head_model_name(src.meta["model"]["name"], job.name),
        "backbone": _backbone(src),
        "objective": job.params.objective,
        "architecture": job.params.architecture,
        "label": job.label if job.uses_label else None,
        "hyperparameters": job.params.to_json(),
        "split": {
            "by": job.split_by,
            "seed": job.params.seed,
            "fractions": {"val": job.val_fraction, "test": job.test_fraction},
        },
        "device": device,
    }


def _reusable(dest: ArtifactLayout, config: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The finished head of this configuration (verified), None to train; refuses another config's head.

    Raises:
        ConfigError: ``dest`` holds a finished head of another configuration and ``force`` is off.
    """
    if force or not is_head_folder(dest):
        return None
    from research_job.heads.apply import load_module

    try:
        meta = schema.read_artifact(dest.head_meta, "head_meta")
    except ResearchJobError as e:
        LOG.warning("Retraining: %s is unreadable (%s)", dest.head_meta, e)
        return None
    old = config_of(meta)
    if old != config:
        raise ConfigError(
            f"{dest.version_dir} holds a head trained with another configuration (differs in "
            f"{', '.join(differences(old, config))}); choose another --name or --out-dir, or --force to replace it"
        )
    try:
        load_module(dest, meta)
        emeta = schema.read_artifact(dest.embeddings_meta, "embeddings_meta")
        ok = sha256_file(dest.embeddings_f32) == emeta["files"]["embeddings_sha256"]
        ok = ok and sha256_file(dest.head_frozen) == meta["files"]["frozen_sha256"]
    except (OSError, ResearchJobError) as e:
        LOG.warning("Retraining: the finished head in %s does not verify (%s)", dest.version_dir, e)
        return None
    if not ok:
        LOG.warning("Retraining: the files of %s differ from their records", dest.version_dir)
        return None
    LOG.info("Head in %s is complete for this configuration: reusing it", dest.version_dir)
    return meta


def _claim(dest: ArtifactLayout, source: ArtifactLayout, force: bool) -> None:
    """Make ``dest`` ready to (re)train into: refuse a foreign folder, drop what a new head makes stale.

    Raises:
        ConfigError: ``dest`` is the source, or a non-empty folder that is not a head folder.
    """
    if dest.version_dir.resolve() == source.version_dir.resolve():
        raise ConfigError(f"The head folder {dest.version_dir} must differ from the backbone folder")
    head_dir = dest.head_meta.parent
    if dest.version_dir.is_dir() and any(dest.version_dir.iterdir()) and not head_dir.is_dir():
        raise ConfigError(
            f"{dest.version_dir} exists and is not a head folder (no {head_dir.name}/); choose another "
            "--out-dir or remove it"
        )
    dest.head_meta.unlink(missing_ok=True)  # not a finished head until head_meta.json is written again
    if force:
        dest.head_checkpoint.unlink(missing_ok=True)
    for stale in (dest.index_dir, dest.eval_dir):
        shutil.rmtree(stale, ignore_errors=True)
    head_dir.mkdir(parents=True, exist_ok=True)


def _split(job: HeadJob, src: _Source) -> tuple[Split, list[str | None] | None]:
    """The seeded split of the rows and, when the objective or the split uses one, each row's label."""
    labels = labels_of(src.rows, src.ids, job.label) if job.uses_label else None
    if job.split_by == "album":
        groups: list[str | None] = list(labels_of(src.rows, src.ids, "album_id"))
    elif job.split_by == "label":
        assert labels is not None
        groups = list(labels)
    else:
        groups = [None] * len(src.ids)
    split = make_split(
        groups,
        job.split_by,
        val_fraction=job.val_fraction,
        test_fraction=job.test_fraction,
        seed=job.params.seed,
    )
    return split, labels


# ---------------------------------------------------------------- writing the folder


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _hard_link(src: Path, dst: Path) -> None:
    """``dst`` = the same file as ``src`` (a hard link; a copy across file systems), replaced atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _link_dir(target: Path, link: Path) -> None:
    """``link`` -> ``target`` (a symlink; an old link replaced, a real folder refused)."""
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        raise ArtifactError(f"{link} exists and is not a link to the backbone's {target}; remove it first")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def prepare_derived_dir(source: ArtifactLayout, dest: ArtifactLayout) -> None:
    """Point ``dest`` at the source corpus: copy ``metadata/`` (CSV + export report), symlink the audio folders.

    Raises:
        ArtifactError: the source has no metadata CSV, or ``dest`` holds a real audio folder.
    """
    if not source.tracks_csv.is_file():
        raise ArtifactError(f"Source {source.version_dir} has no {source.tracks_csv.name}")
    for src, dst in ((source.tracks_csv, dest.tracks_csv), (source.export_report, dest.export_report)):
        if src.is_file():
            _copy_atomic(src, dst)
    for src, dst in (
        (source.audio_cache_dir, dest.audio_cache_dir),
        (source.audio_wav_dir, dest.audio_wav_dir),
    ):
        if src.is_dir():
            _link_dir(src.resolve(), dst)


def _link_frames(source: ArtifactLayout, dest: ArtifactLayout) -> None:
    """Hard-link the frame files (same track rows: the two track_ids.json are byte-equal, checked)."""
    if sha256_file(dest.track_ids_json) != sha256_file(source.track_ids_json):
        raise ArtifactError(
            f"{dest.track_ids_json} differs from {source.track_ids_json}: the frames would not fit"
        )
    for key in FRAME_KEYS:
        src, dst = source.path(key), dest.path(key)
        if src.is_file():
            _hard_link(src, dst)
        else:
            dst.unlink(missing_ok=True)


def _curves(dest: ArtifactLayout, meta: dict[str, Any], result: Any) -> dict[str, Any]:
    """Write ``curves.png`` (train loss and val metric per epoch; Agg, no pyplot state) then ``curves.json``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in result.history]
    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [h["train_loss"] for h in result.history], marker=".")
    ax1.set(title=f"{meta['objective']} loss (train)", xlabel="epoch", ylabel="loss")
    ax2.plot(epochs, [h["val_metric"] for h in result.history], marker=".", label="head")
    ax2.axhline(result.frozen_metric, color="grey", linestyle="--", label="frozen")
    ax2.axvline(
        result.best_epoch, color="tab:green", linestyle=":", label=f"best (epoch {result.best_epoch})"
    )
    ax2.set(title=f"val {result.metric}", xlabel="epoch", ylim=(0, 1.02))
    ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"head {meta['name']} on {meta['backbone']['model']['name']}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    png = buf.getvalue()
    write_bytes(dest.head_curves_png, png)
    curves = {
        "schema_version": "1.0",
        "name": meta["name"],
        "metric": result.metric,
        "best_epoch": result.best_epoch,
        "frozen_metric": result.frozen_metric,
        "epochs": [
            {k: h[k] for k in ("epoch", "train_loss", "val_metric", "lr", "sec")} for h in result.history
        ],
        "png": dest.head_curves_png.name,
        "png_sha256": sha256_bytes(png),
    }
    schema.write_artifact(dest.head_curves_json, "head_curves", curves)
    return curves


def _write_embeddings(
    dest: ArtifactLayout, src: _Source, meta: dict[str, Any], head_sha: str, module: Any
) -> None:
    from research_job.heads.apply import embed_frames

    t0 = time.perf_counter()
    vectors = embed_frames(
        module,
        [src.frames.of(r) for r in range(len(src.ids))],
        max_frames=int(meta["hyperparameters"]["max_frames"]),
        device=meta["device"],
    )
    pooling = (
        "none"
        if meta["architecture"] == "sequence" and meta["hyperparameters"]["pooling"] == "attention"
        else "mean"
    )
    write_embeddings(
        dest,
        vectors,
        src.ids,
        model_name=meta["model_name"],
        info={
            "version": src.meta["model"]["version"],
            "weights_sha256": head_sha,
            "pooling": pooling,
            "layer": ",".join(b["name"] for b in meta["backbone"]["frame_layers"]),
            "params": {
                "backbone": src.meta["model"]["name"],
                "backbone_weights_sha256": src.meta["model"]["weights_sha256"],
                "head": meta["name"],
                "objective": meta["objective"],
                "architecture": meta["architecture"],
                "head_sha256": head_sha,
            },
        },
        dim=int(vectors.shape[1]),
        sample_rate=int(src.meta["sample_rate"]),
        stats={
            "n_input_tracks": len(src.ids),
            "n_embedded": len(src.ids),
            "n_failed": 0,
            "audio_sec": float(src.meta["stats"]["audio_sec"]),
            "wall_sec": round(time.perf_counter() - t0, 3),
        },
    )


def _write_folder(
    dest: ArtifactLayout, src: _Source, skeleton: dict[str, Any], split: Split, labels: Any, result: Any
) -> dict[str, Any]:
    """Every file of the head folder, ``head_meta.json`` last; returns it."""
    from research_job.heads.apply import save_head
    from research_job.heads.arch import n_params

    meta = {**skeleton}
    head_sha = save_head(dest, skeleton["architecture"], result.module_params, result.module)
    _write_embeddings(dest, src, meta, head_sha, result.module)
    frozen = src.layout.embeddings_f32.read_bytes()
    write_bytes(dest.head_frozen, frozen)
    prepare_derived_dir(src.layout, dest)
    _link_frames(src.layout, dest)
    split_json = split.to_json(src.ids)
    split_json["n_unlabelled"] = 0 if labels is None else sum(v is None for v in labels)
    split_json["n_train_used"], split_json["n_val_used"] = result.n_train_used, result.n_val_used
    meta.update(
        {
            "schema_version": "1.0",
            "artifact_version": artifact_version(dest, skeleton["model_name"]),
            "split": {**skeleton["split"], **split_json},
            "batch_size_used": result.batch_size,
            "in_dim": int(result.module_params["in_dim"]),
            "out_dim": int(result.module_params["out_dim"]),
            "n_params": n_params(result.module),
            "metrics": {
                "name": result.metric,
                "best": result.best_metric,
                "best_epoch": result.best_epoch,
                "frozen": result.frozen_metric,
                "epochs_run": len(result.history),
                "stopped_early": result.stopped_early,
                "resumed_at_epoch": result.resumed_at,
            },
            "train_sec": result.train_sec,
            "files": {
                "head": dest.head_pt.name,
                "head_sha256": head_sha,
                "size_bytes": dest.head_pt.stat().st_size,
                "frozen": dest.head_frozen.name,
                "frozen_sha256": sha256_bytes(frozen),
                "frozen_dim": int(src.meta["dim"]),
                "curves": dest.head_curves_json.name,
            },
            "created_at": utc_now(),
            "code_version": code_version(),
        }
    )
    meta["fingerprint"] = fingerprint(config_of(meta))
    _curves(dest, meta, result)
    schema.write_artifact(dest.head_meta, "head_meta", meta)
    return meta


def train_head_folder(job: HeadJob, *, on_epoch_end: Any = None) -> dict[str, Any]:
    """Train the head ``job`` describes on its backbone folder's frames and write the head version folder.

    Args:
        on_epoch_end: called with the number of finished epochs after each checkpoint (tests: raise from it to
            simulate an interruption; the rerun resumes).

    Returns:
        the ``head_meta.json`` dict (of the reused head when the folder already holds this configuration's).

    Raises:
        ConfigError: bad parameters, the folder clashes with the source or another configuration's head;
        ArtifactError: the backbone folder lacks embeddings or frames, or a split part would be empty.
    """
    from research_job.heads import training
    from research_job.models.device import resolve_device

    check_name(job.name)
    job.params.check()
    src = _read_source(job.source)
    dest = job.dest or default_head_dir(job.artifacts_root, src.meta["model"]["name"], job.name)
    device = resolve_device(job.device)
    skeleton = _skeleton(job, src, device)
    config = config_of(skeleton)
    reused = _reusable(dest, config, job.force)
    if reused is not None:
        return reused
    _claim(dest, src.layout, job.force)
    split, labels = _split(job, src)
    LOG.info(
        "Training head %r (%s, %s) on %s: %d train / %d val / %d test tracks (split by %s)",
        job.name, job.params.objective, job.params.architecture, src.layout.version_dir.name,
        len(split.train), len(split.val), len(split.test), job.split_by,
    )  # fmt: skip
    result = training.train(
        src.frames,
        split,
        labels,
        job.params,
        checkpoint=dest.head_checkpoint,
        fingerprint=fingerprint(config),
        config=config,
        device=device,
        on_epoch_end=on_epoch_end,
    )
    meta = _write_folder(dest, src, skeleton, split, labels, result)
    dest.head_checkpoint.unlink(missing_ok=True)
    LOG.info(
        "Head %r: best val %s %.4f at epoch %d (frozen %.4f), %.1f s; folder %s",
        job.name, result.metric, result.best_metric, result.best_epoch, result.frozen_metric,
        result.train_sec, dest.version_dir,
    )  # fmt: skip
    return meta
