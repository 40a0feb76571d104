"""The versioned artifact layout: every path a step reads or writes, in one place.

``<root>/v1_model_<MODEL_NAME>/``::

    metadata/tracks_metadata.csv         export-metadata
    metadata/export_report.json
    audio_cache/<album_id>/<track_id>.<ext>   pull-audio (the raw objects, original codec)
    audio_cache/pull_report.json
    audio_wav/<track_id>.wav             standardize-audio (mono float32 at the model's sample rate, optional)
    audio_wav/standardize_report.json
    embeddings/embeddings.f32            embed: row-major little-endian float32 N x D, L2-normalised
    embeddings/track_ids.json            row i of embeddings.f32 is track_ids[i]
    embeddings/embeddings_meta.json
    index/faiss.index  index/faiss_hnsw.index  index/hnsw.index  index/neighbors.i32  index/index_meta.json   build-index
    eval/eval_results.json  eval/sample_top5.json  eval/sample_top5.md                     evaluate
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from research_job.errors import ConfigError

LAYOUT_VERSION = "v1"
_SAFE_MODEL = re.compile(r"[^A-Za-z0-9._-]+")


def model_dir_name(model_name: str) -> str:
    """Folder-safe name of a model spec: ``hf:m-a-p/MERT-v1-95M`` -> ``hf-m-a-p--MERT-v1-95M``."""
    if not model_name or not model_name.strip():
        raise ConfigError("Model name is empty")
    name = model_name.strip().replace("/", "--").replace(":", "-")
    name = _SAFE_MODEL.sub("_", name)
    if name in {".", ".."}:
        raise ConfigError(f"Model name {model_name!r} cannot be used as a folder name")
    return name


@dataclass(frozen=True)
class ArtifactLayout:
    """Paths of one artifact version folder ``<root>/v1_model_<MODEL_NAME>``."""

    version_dir: Path

    @classmethod
    def for_model(cls, root: str | Path, model_name: str) -> ArtifactLayout:
        """Layout of the version folder of ``model_name`` under ``root`` (usually ``artifacts/``)."""
        return cls(Path(root) / f"{LAYOUT_VERSION}_model_{model_dir_name(model_name)}")

    # metadata
    @property
    def metadata_dir(self) -> Path:
        return self.version_dir / "metadata"

    @property
    def tracks_csv(self) -> Path:
        return self.metadata_dir / "tracks_metadata.csv"

    @property
    def export_report(self) -> Path:
        return self.metadata_dir / "export_report.json"

    # raw audio
    @property
    def audio_cache_dir(self) -> Path:
        return self.version_dir / "audio_cache"

    def cached_audio(self, album_id: str, track_id: str, ext: str) -> Path:
        """Path of a pulled object: ``audio_cache/<album_id>/<track_id>.<ext>`` (ids already checked safe)."""
        return self.audio_cache_dir / album_id / f"{track_id}.{ext.lstrip('.').lower()}"

    @property
    def pull_report(self) -> Path:
        return self.audio_cache_dir / "pull_report.json"

    # standardised audio
    @property
    def audio_wav_dir(self) -> Path:
        return self.version_dir / "audio_wav"

    def wav(self, track_id: str) -> Path:
        return self.audio_wav_dir / f"{track_id}.wav"

    @property
    def standardize_report(self) -> Path:
        return self.audio_wav_dir / "standardize_report.json"

    # embeddings
    @property
    def embeddings_dir(self) -> Path:
        return self.version_dir / "embeddings"

    @property
    def embeddings_f32(self) -> Path:
        return self.embeddings_dir / "embeddings.f32"

    @property
    def track_ids_json(self) -> Path:
        return self.embeddings_dir / "track_ids.json"

    @property
    def embeddings_meta(self) -> Path:
        return self.embeddings_dir / "embeddings_meta.json"

    @property
    def embed_checkpoint_dir(self) -> Path:
        """Per-track partial results of an unfinished embed run (resume support); removed when complete."""
        return self.embeddings_dir / "partial"

    # indexes
    @property
    def index_dir(self) -> Path:
        return self.version_dir / "index"

    @property
    def faiss_index(self) -> Path:
        return self.index_dir / "faiss.index"

    @property
    def faiss_hnsw_index(self) -> Path:
        return self.index_dir / "faiss_hnsw.index"

    @property
    def hnsw_index(self) -> Path:
        return self.index_dir / "hnsw.index"

    @property
    def neighbors_table(self) -> Path:
        """Every track's exact top-K neighbour rows (int32 [count, K]), see research_job.neighbors."""
        return self.index_dir / "neighbors.i32"

    @property
    def index_meta(self) -> Path:
        return self.index_dir / "index_meta.json"

    # evaluation
    @property
    def eval_dir(self) -> Path:
        return self.version_dir / "eval"

    @property
    def eval_results(self) -> Path:
        return self.eval_dir / "eval_results.json"

    @property
    def sample_top5_json(self) -> Path:
        return self.eval_dir / "sample_top5.json"

    @property
    def sample_top5_md(self) -> Path:
        return self.eval_dir / "sample_top5.md"
