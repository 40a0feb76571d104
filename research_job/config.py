"""Configuration: one frozen dataclass per step, loaded from a YAML/TOML file, env vars and CLI flags.

Precedence (lowest to highest): dataclass defaults < config file < environment (``RESEARCH_JOB_<FIELD>``) <
CLI flags. A config file has one optional top-level section of common keys and one section per step::

    artifacts_root: artifacts
    model: musicnn-msd
    export_metadata:
      database_url: sqlite:///catalogue.sqlite
      table: tracks
    pull_audio:
      source: s3://my-bucket/catalogue

Unknown keys are an error naming the key and the valid ones (a typo never silently falls back to a default).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from research_job.errors import ConfigError, unknown_choice
from research_job.layout import ArtifactLayout
from research_job.models.registry import DEFAULT_MODEL

ENV_PREFIX = "RESEARCH_JOB_"


@dataclass(frozen=True)
class CommonConfig:
    """Keys every step shares."""

    artifacts_root: Path = Path("artifacts")
    model: str = DEFAULT_MODEL
    #: write a version folder somewhere else than ``<artifacts_root>/v1_model_<MODEL>`` (tests, comparisons)
    version_dir: Path | None = None

    @property
    def layout(self) -> ArtifactLayout:
        if self.version_dir is not None:
            return ArtifactLayout(Path(self.version_dir))
        return ArtifactLayout.for_model(self.artifacts_root, self.model)


@dataclass(frozen=True)
class ExportMetadataConfig:
    """export-metadata: catalogue database (or CSV) -> metadata/tracks_metadata.csv."""

    common: CommonConfig = field(default_factory=CommonConfig)
    #: ``postgresql://user:pass@host/db`` or ``sqlite:///path.sqlite``; exclusive with ``csv_path``
    database_url: str | None = None
    table: str = "tracks"
    #: a SELECT returning the seven columns; overrides ``table``
    query: str | None = None
    csv_path: Path | None = None
    #: YAML/JSON mapping of composer spelling -> canonical name
    composer_aliases: Path | None = None


@dataclass(frozen=True)
class PullAudioConfig:
    """pull-audio: object store -> audio_cache/<album_id>/<track_id>.<ext>."""

    common: CommonConfig = field(default_factory=CommonConfig)
    #: ``s3://bucket/prefix`` or a local directory used as the object store
    source: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    workers: int = 8
    max_attempts: int = 5
    #: first retry delay in seconds; doubles each attempt (with jitter)
    backoff_sec: float = 0.5
    #: AWS profile for S3 (None = the standard credential chain: env, shared files, instance/task role)
    aws_profile: str | None = None
    #: connect/read timeout of each S3 request, seconds
    timeout_sec: float = 60.0


@dataclass(frozen=True)
class StandardizeAudioConfig:
    """standardize-audio: audio_cache -> audio_wav/<track_id>.wav, mono float32 at the model's sample rate."""

    common: CommonConfig = field(default_factory=CommonConfig)
    #: target sample rate; None = the model's (looked up in the registry without loading weights when possible)
    sample_rate: int | None = None
    #: keep at most this many seconds per track (None = whole track)
    max_duration_sec: float | None = None
    workers: int = 2


@dataclass(frozen=True)
class EmbedConfig:
    """embed: standardised audio -> embeddings/embeddings.f32 + track_ids.json + embeddings_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    device: str = "cpu"
    batch_size: int = 8
    #: tracks decoded ahead by a background thread while the model runs (0 = decode inline). On 2 cores, where
    #: torch already uses both, 8 ahead was within noise of inline for musicnn-msd (-3.6 % and +1.4 % in two
    #: quiet runs); it pays with spare cores or slow storage
    decode_ahead: int = 0
    #: worker processes that decode and embed tracks in parallel, each with its own model copy (CPU only; 1 = in
    #: this process; not called ``workers``, whose environment variable the download steps share). Start-up costs
    #: ~3-5 s (spawn, import torch, load the weights), so it pays on catalogue-sized runs; see bench/findings.md
    processes: int = 1
    #: torch threads per worker process; None = usable CPUs // processes (at least 1)
    threads_per_process: int | None = None
    #: checkpoint partial results every this many tracks (resume after interruption)
    checkpoint_every: int = 16
    #: also write segment embeddings (window, hop) in seconds; None = off
    segment_window_sec: float | None = None
    segment_hop_sec: float | None = None
    #: corpus-level post-processing before L2 normalisation: none | center | standardize | pca_whiten
    postprocess: str = "none"


@dataclass(frozen=True)
class BuildIndexConfig:
    """build-index: embeddings -> index/faiss.index, faiss_hnsw.index, hnsw.index, neighbors.i32, index_meta.json."""

    common: CommonConfig = field(default_factory=CommonConfig)
    hnsw_m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    #: number of corpus vectors used as queries to measure ANN recall (all when N is smaller)
    recall_queries: int = 2000
    seed: int = 0
    #: K of index/neighbors.i32, every track's exact top-K neighbours (an exact all-pairs search, O(N^2 D));
    #: 0 = do not write the table
    neighbors_k: int = 20


@dataclass(frozen=True)
class EvaluateConfig:
    """evaluate: embeddings + metadata -> eval/eval_results.json, sample top-5 lists, a printed table."""

    common: CommonConfig = field(default_factory=CommonConfig)
    k: int = 5
    bootstrap_resamples: int = 1000
    n_samples: int = 10
    seed: int = 0
    batch_size: int = 1024


@dataclass(frozen=True)
class ValidateConfig:
    """validate: check a whole version folder."""

    common: CommonConfig = field(default_factory=CommonConfig)
    unit_norm_tol: float = 1e-4


PUBLISH_TARGETS = ("s3", "pgvector")


@dataclass(frozen=True)
class PublishConfig:
    """publish: a version folder -> S3 (manifest + latest pointer) or PostgreSQL + pgvector."""

    common: CommonConfig = field(default_factory=CommonConfig)
    #: where to publish: s3 | pgvector
    to: str = "s3"
    #: release name under ``v1_model_<MODEL>/``; None = from the embeddings' created_at (``20261122T040000Z``)
    release: str | None = None
    #: also upload ``audio_cache/`` and ``audio_wav/`` (S3 only)
    include_audio: bool = False
    #: overwrite a release that already holds different content
    force: bool = False
    #: move the ``latest`` pointer (S3) / flag (pgvector) to this release
    set_latest: bool = True

    # --- S3 ---
    bucket: str = ""
    prefix: str = "vector-artifacts"
    #: S3-compatible store (MinIO, moto, ...); None = AWS
    endpoint_url: str | None = None
    region: str | None = None
    #: files at least this large go up as multipart uploads
    multipart_threshold: int = 64 * 1024 * 1024
    multipart_chunksize: int = 16 * 1024 * 1024
    max_concurrency: int = 8
    #: also compare each object's ETag with the MD5 (single part) or multipart MD5 computed locally; turn
    #: off for stores whose ETag is not an MD5 (SSE-KMS)
    verify_etag: bool = True

    # --- pgvector ---
    #: ``postgresql://user@host:5432/db`` (password from PGPASSWORD or ~/.pgpass preferably)
    database_url: str | None = None
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64


STEP_SECTIONS: dict[str, type] = {
    "export_metadata": ExportMetadataConfig,
    "pull_audio": PullAudioConfig,
    "standardize_audio": StandardizeAudioConfig,
    "embed": EmbedConfig,
    "build_index": BuildIndexConfig,
    "evaluate": EvaluateConfig,
    "validate": ValidateConfig,
    "publish": PublishConfig,
}

#: commands whose config class lives in their own step module ("module:Class", imported only when used)
EXTRA_SECTIONS: dict[str, str] = {
    "embed_segments": "research_job.steps.embed_segments:EmbedSegmentsConfig",
    "compare_models": "research_job.steps.compare_models:CompareModelsConfig",
    "find_similar": "research_job.steps.find_similar:FindSimilarConfig",
}


def config_class(section: str) -> type:
    """The config dataclass of a config-file section / command.

    Raises:
        ConfigError: unknown section, listing the known ones.
    """
    if section in STEP_SECTIONS:
        return STEP_SECTIONS[section]
    if section in EXTRA_SECTIONS:
        module, name = EXTRA_SECTIONS[section].split(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    raise ConfigError(unknown_choice("step", section, [*STEP_SECTIONS, *EXTRA_SECTIONS]))


T = TypeVar("T")


def load_config_file(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file; ``None`` -> empty.

    Raises:
        ConfigError: missing file, unknown extension, parse error, or unknown top-level section.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}")
    try:
        if p.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"Config file {p} must end in .yaml, .yml or .toml, not {p.suffix!r}")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"Cannot parse config file {p}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {p} must hold a mapping, got {type(data).__name__}")
    common_keys = {f.name for f in dataclasses.fields(CommonConfig)}
    for key in data:
        if key not in STEP_SECTIONS and key not in EXTRA_SECTIONS and key not in common_keys:
            raise ConfigError(
                unknown_choice("config key", key, [*STEP_SECTIONS, *EXTRA_SECTIONS, *common_keys])
            )
    return data


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a file/env/CLI value to the field's declared type."""
    if value is None:
        return None
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    try:
        if hint is Path:
            return Path(value)
        if hint is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in {"1", "true", "yes", "on"}:
                return True
            if s in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if hint in (int, float, str):
            return hint(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"Bad value {value!r} for {name}: expected {getattr(hint, '__name__', hint)}"
        ) from e
    return value


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "common"}


def build_config(
    cls: type[T],
    *,
    file_data: dict[str, Any] | None = None,
    section: str | None = None,
    overrides: dict[str, Any] | None = None,
    env: typing.Mapping[str, str] | None = None,
) -> T:
    """Build a step config from defaults, a config file section, env vars and CLI overrides.

    Args:
        cls: a step config class (e.g. :class:`EmbedConfig`).
        file_data: what :func:`load_config_file` returned.
        section: the file section of this step (default: looked up from ``STEP_SECTIONS``).
        overrides: CLI values; ``None`` values are ignored (flag not given).
        env: environment (default ``os.environ``); ``RESEARCH_JOB_<FIELD>`` in upper case.

    Raises:
        ConfigError: unknown key in the step's section, or a value of the wrong type.
    """
    file_data = file_data or {}
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if section is None:
        section = next((s for s, c in STEP_SECTIONS.items() if c is cls), None)
    step_fields = _fields(cls)
    common_fields = {
        f.name: typing.get_type_hints(CommonConfig)[f.name] for f in dataclasses.fields(CommonConfig)
    }

    def layered(name: str, annotation: Any, section_data: dict[str, Any]) -> tuple[bool, Any]:
        value: Any = None
        found = False
        if name in section_data:
            value, found = section_data[name], True
        env_key = ENV_PREFIX + name.upper()
        if env_key in env:
            value, found = env[env_key], True
        if name in overrides:
            value, found = overrides[name], True
        return found, _coerce(name, value, annotation) if found else None

    step_data = file_data.get(section, {}) if section else {}
    if not isinstance(step_data, dict):
        raise ConfigError(f"Config section {section!r} must be a mapping")
    for key in step_data:
        if key not in step_fields and key not in common_fields:
            raise ConfigError(
                unknown_choice(f"key in section {section!r}", key, [*step_fields, *common_fields])
            )
    top = {k: v for k, v in file_data.items() if k in common_fields}
    common_kwargs: dict[str, Any] = {}
    for name, ann in common_fields.items():
        found, value = layered(
            name, ann, {**top, **{k: v for k, v in step_data.items() if k in common_fields}}
        )
        if found:
            common_kwargs[name] = value
    kwargs: dict[str, Any] = {}
    for name, ann in step_fields.items():
        found, value = layered(name, ann, step_data)
        if found:
            kwargs[name] = value
    return cls(common=CommonConfig(**common_kwargs), **kwargs)  # type: ignore[call-arg]
