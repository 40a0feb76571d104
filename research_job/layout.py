"""The versioned artifact layout: every path a step reads or writes, from the one list of artifacts.

``artifact_schema/artifacts.json`` names every file and folder a version folder ``<root>/v1_model_<MODEL>/``
may hold, once, with its format, schema, sidecar, writing step and publish rule. :class:`ArtifactLayout` turns
its keys into paths; validate and publish iterate over :func:`artifacts`; the Node API reads the same file.
Adding an artifact is one entry in that list (plus the code that writes it)::

    metadata/tracks_metadata.csv, export_report.json                     export-metadata
    audio_cache/<album_id>/<track_id>.<ext>, pull_report.json            pull-audio (original codec)
    audio_wav/<track_id>.wav, standardize_report.json                    standardize-audio (mono float32)
    embeddings/embeddings.f32, track_ids.json, embeddings_meta.json      embed (row i is track_ids[i])
    embeddings/raw.f32, sources.json                                     embed (raw rows, audio fingerprints)
    head/head.pt, frozen.f32, head_meta.json, curves.json, curves.png    train-head (a head version folder)
    index/faiss.index, faiss_hnsw.index, hnsw.index, neighbors.i32, index_meta.json   build-index
    index/tracks_columns.json, tracks_columns.bin                        build-index (metadata for the API)
    eval/eval_results.json, sample_top5.json, sample_top5.md             evaluate
    eval/report.json, report.html, clusters.json, figures/<name>.png     report
    previews/<name>.ogg, previews.json                                   previews (Ogg/Opus excerpts)

Per-track and per-album names (``<album_id>``, ``<track_id>`` above) come from :func:`id_file_name`: the id
itself while it fits a file name, else a stable hashed name.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_job.errors import ArtifactError, ConfigError, unknown_choice
from research_job.provenance import sha256_bytes

LAYOUT_VERSION = "v1"
ARTIFACT_LIST = "artifacts.json"
_SAFE_MODEL = re.compile(r"[^A-Za-z0-9._-]+")
_ARTIFACT_VERSION = re.compile(r"^v[0-9]+_model_[A-Za-z0-9._-]+$")
#: the longest file name, in bytes, that Linux file systems (ext4, xfs, btrfs, tmpfs) and APFS accept
NAME_MAX = 255
#: the longest id kept verbatim as a file name: NAME_MAX less room for ``.<extension of up to 11 characters>``
#: and the ``.tmp`` an atomic write adds (io/atomic.py)
ID_NAME_BYTES = NAME_MAX - 16
#: UTF-8 bytes of the id kept, readable, in front of the hash of an id too long for a file name
_HASHED_PREFIX_BYTES = 64


@dataclass(frozen=True)
class Artifact:
    """One entry of ``artifact_schema/artifacts.json`` (see its schema ``artifact_list`` for each field)."""

    key: str
    path: str
    format: str
    step: str
    publish: str
    required: bool
    schema: str | None = None
    described_by: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.path.endswith("/")

    def holds(self, rel: str) -> bool:
        """Whether the POSIX path ``rel`` is this file, or lies inside this folder."""
        return rel.startswith(self.path) if self.is_folder else rel == self.path


@functools.cache
def artifacts() -> dict[str, Artifact]:
    """Every artifact of a version folder by key, in the list's order (validated against ``artifact_list``).

    Raises:
        SchemaValidationError: the list does not match its schema; ArtifactError: a key or path repeats.
    """
    from research_job import schema

    path = schema.SCHEMA_DIR / ARTIFACT_LIST
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    schema.validate("artifact_list", data, source=path)
    out: dict[str, Artifact] = {}
    paths: set[str] = set()
    for entry in data["artifacts"]:
        a = Artifact(**entry)
        if a.key in out or a.path in paths:
            raise ArtifactError(f"{path}: artifact key {a.key!r} or path {a.path!r} is listed twice")
        out[a.key] = a
        paths.add(a.path)
    return out


def artifact_of(rel: str) -> Artifact | None:
    """The listed file ``rel`` (POSIX, relative to the version folder), else the listed folder holding it."""
    files = [a for a in artifacts().values() if not a.is_folder and a.holds(rel)]
    if files:
        return files[0]
    folders = sorted(
        (a for a in artifacts().values() if a.is_folder and a.holds(rel)), key=lambda a: -len(a.path)
    )
    return folders[0] if folders else None


def id_file_name(ident: str, ext: str | None = None) -> str:
    """The file name of a per-track file (``ext`` given) or the folder name of a per-album folder (``ext=None``).

    Every per-track or per-album path (``audio_cache/<album>/<track>.<ext>``, ``audio_wav/<track>.wav``) is
    made here. The name is the id verbatim, ``<id>.<ext>``, when the id takes at most :data:`ID_NAME_BYTES`
    bytes of UTF-8 (ids are up to 256 *characters*, up to 1024 bytes); a longer one becomes ``<first 64 bytes of
    the id>-<sha256 hex of the id>.<ext>``, stable across runs and machines. The choice depends on the id alone,
    never on the extension, so two ids that get the same name for one extension get it for every extension
    (what :func:`research_job.metadata.normalize_records` checks). Short ids keep their names, so folders
    written before this rule stay valid. Ids are checked safe as path components before they get here
    (:func:`research_job.metadata.unsafe_id_reason`).
    """
    suffix = "" if ext is None else "." + ext.lstrip(".").lower()
    raw = ident.encode("utf-8")
    if len(raw) <= ID_NAME_BYTES:
        return ident + suffix
    prefix = raw[:_HASHED_PREFIX_BYTES].decode("utf-8", errors="ignore")
    return f"{prefix}-{sha256_bytes(raw)}{suffix}"


def model_dir_name(model_name: str) -> str:
    """Folder-safe name of a model spec: ``hf:m-a-p/MERT-v1-95M`` -> ``hf-m-a-p--MERT-v1-95M``."""
    if not model_name or not model_name.strip():
        raise ConfigError("Model name is empty")
    name = model_name.strip().replace("/", "--").replace(":", "-")
    name = _SAFE_MODEL.sub("_", name)
    if name in {".", ".."}:
        raise ConfigError(f"Model name {model_name!r} cannot be used as a folder name")
    return name


def version_name(model_name: str) -> str:
    """The canonical version folder name of a model spec: ``v1_model_<MODEL>``."""
    return f"{LAYOUT_VERSION}_model_{model_dir_name(model_name)}"


def artifact_version(layout: ArtifactLayout, model: str) -> str:
    """The version folder's name when it follows ``v<N>_model_<MODEL>``, else the canonical one for ``model``."""
    name = layout.version_dir.name
    return name if _ARTIFACT_VERSION.match(name) else version_name(model)


@dataclass(frozen=True)
class ArtifactLayout:
    """Paths of one artifact version folder ``<root>/v1_model_<MODEL_NAME>``."""

    version_dir: Path

    @classmethod
    def for_model(cls, root: str | Path, model_name: str) -> ArtifactLayout:
        """Layout of the version folder of ``model_name`` under ``root`` (usually ``artifacts/``)."""
        return cls(Path(root) / version_name(model_name))

    def path(self, key: str) -> Path:
        """Where the artifact ``key`` of :func:`artifacts` lives in this version folder.

        Raises:
            ArtifactError: unknown key, listing the known ones.
        """
        entry = artifacts().get(key)
        if entry is None:
            raise ArtifactError(unknown_choice("artifact", key, artifacts()))
        return self.version_dir / entry.path.rstrip("/")

    def rel(self, path: Path) -> str:
        """``path`` relative to the version folder, POSIX style."""
        return path.relative_to(self.version_dir).as_posix()

    # metadata
    @property
    def metadata_dir(self) -> Path:
        return self.tracks_csv.parent

    @property
    def tracks_csv(self) -> Path:
        return self.path("tracks_csv")

    @property
    def export_report(self) -> Path:
        return self.path("export_report")

    # raw audio
    @property
    def audio_cache_dir(self) -> Path:
        return self.path("audio_cache_dir")

    def cached_audio(self, album_id: str, track_id: str, ext: str) -> Path:
        """Path of a pulled object: ``audio_cache/<album_id>/<track_id>.<ext>``, names by :func:`id_file_name`
        (ids already checked safe)."""
        return self.audio_cache_dir / id_file_name(album_id) / id_file_name(track_id, ext)

    @property
    def pull_report(self) -> Path:
        return self.path("pull_report")

    # standardised audio
    @property
    def audio_wav_dir(self) -> Path:
        return self.path("audio_wav_dir")

    def wav(self, track_id: str) -> Path:
        """Path of a standardised track: ``audio_wav/<track_id>.wav``, named by :func:`id_file_name`."""
        return self.audio_wav_dir / id_file_name(track_id, "wav")

    @property
    def standardize_report(self) -> Path:
        return self.path("standardize_report")

    # embeddings
    @property
    def embeddings_dir(self) -> Path:
        return self.embeddings_f32.parent

    @property
    def embeddings_f32(self) -> Path:
        return self.path("embeddings_f32")

    @property
    def track_ids_json(self) -> Path:
        return self.path("track_ids_json")

    @property
    def embeddings_meta(self) -> Path:
        return self.path("embeddings_meta")

    @property
    def postprocess(self) -> Path:
        """The fitted corpus post-processing (``embeddings_meta.json`` names it and records its sha256)."""
        return self.path("postprocess")

    @property
    def raw_f32(self) -> Path:
        """The raw pooled vectors before post-processing (rows of ``track_ids.json``): an incremental run's base."""
        return self.path("raw_f32")

    @property
    def embed_sources(self) -> Path:
        """Where embed read the audio and each track's fingerprint (:mod:`research_job.incremental`)."""
        return self.path("embed_sources")

    @property
    def embed_checkpoint_dir(self) -> Path:
        """Per-track partial results of an unfinished embed run (resume support); removed when complete."""
        return self.path("embed_checkpoint_dir")

    @property
    def segments_f32(self) -> Path:
        return self.path("segments_f32")

    @property
    def segments_csv(self) -> Path:
        return self.path("segments_csv")

    @property
    def segments_meta(self) -> Path:
        return self.path("segments_meta")

    @property
    def frames_f16(self) -> Path:
        """Per-frame backbone features (see :mod:`research_job.frames`)."""
        return self.path("frames_f16")

    @property
    def frames_offsets(self) -> Path:
        return self.path("frames_offsets")

    @property
    def views_f16(self) -> Path:
        return self.path("views_f16")

    @property
    def views_offsets(self) -> Path:
        return self.path("views_offsets")

    @property
    def frames_meta(self) -> Path:
        return self.path("frames_meta")

    # trained head (train-head; see research_job.heads)
    @property
    def head_pt(self) -> Path:
        """The head's weights and what rebuilds its module (a torch ``state_dict`` dict, loaded weights_only)."""
        return self.path("head_pt")

    @property
    def head_frozen(self) -> Path:
        """The backbone folder's ``embeddings.f32`` rows (same row order), for frozen-vs-head comparisons."""
        return self.path("head_frozen")

    @property
    def head_meta(self) -> Path:
        return self.path("head_meta")

    @property
    def head_curves_json(self) -> Path:
        return self.path("head_curves_json")

    @property
    def head_curves_png(self) -> Path:
        return self.path("head_curves_png")

    @property
    def head_checkpoint(self) -> Path:
        """The epoch checkpoint of an unfinished train-head run (resume support); removed when complete."""
        return self.path("head_checkpoint")

    # indexes
    @property
    def index_dir(self) -> Path:
        return self.index_meta.parent

    @property
    def faiss_index(self) -> Path:
        return self.path("faiss_index")

    @property
    def faiss_hnsw_index(self) -> Path:
        return self.path("faiss_hnsw_index")

    @property
    def hnsw_index(self) -> Path:
        return self.path("hnsw_index")

    @property
    def neighbors_table(self) -> Path:
        """Every track's exact top-K neighbour rows (int32 [count, K]), see research_job.neighbors."""
        return self.path("neighbors_table")

    @property
    def tracks_columns(self) -> Path:
        """Header of the columnar metadata of the embedded tracks (see research_job.metadata_columns)."""
        return self.path("tracks_columns")

    @property
    def tracks_columns_bin(self) -> Path:
        """The typed arrays ``tracks_columns`` describes."""
        return self.path("tracks_columns_bin")

    @property
    def index_meta(self) -> Path:
        return self.path("index_meta")

    # evaluation
    @property
    def eval_dir(self) -> Path:
        return self.eval_results.parent

    @property
    def eval_results(self) -> Path:
        return self.path("eval_results")

    @property
    def sample_top5_json(self) -> Path:
        return self.path("sample_top5_json")

    @property
    def sample_top5_md(self) -> Path:
        return self.path("sample_top5_md")

    # audio previews (research_job.previews)
    @property
    def previews_dir(self) -> Path:
        return self.path("previews_dir")

    @property
    def previews_json(self) -> Path:
        return self.path("previews_json")
