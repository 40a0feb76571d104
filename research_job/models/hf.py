"""Hugging Face ``transformers`` backends: ``mert-v1-95m``, ``clap-music`` and ``hf:<model id or local path>``.

Every backend cuts each track into fixed-length chunks (``chunk_sec``, 10 s by default), runs the chunks of all
tracks through the model in batches, pools each chunk to one vector and averages the chunk vectors of a track,
weighted by chunk duration (so a short tail counts for the audio it holds). Frame pooling inside a chunk:

* ``mert-v1-95m`` (``m-a-p/MERT-v1-95M``, 24 kHz, 768-d): hidden states of every layer (the CNN/embedding output
  and each transformer layer) averaged over time, then averaged over layers (``layer=all``, default), or one
  chosen layer (``layer=N``, 0 = embedding output, ``last``). Loaded with ``AutoModel`` + ``trust_remote_code``
  (MERT ships its own modelling code) and ``Wav2Vec2FeatureExtractor``.
* ``clap-music`` (``laion/larger_clap_music``, 48 kHz, 512-d): ``ClapModel.get_audio_features`` of each chunk
  (the projected audio embedding, L2-normalised per chunk), averaged over chunks.
* ``hf:<id-or-path>``: any encoder-only ``AutoModel`` + ``AutoFeatureExtractor``; the last hidden state (or
  ``layer=``) averaged over time; sample rate from the feature extractor.

Options (strings, from specs like ``mert-v1-95m?layer=6&device=cpu``): ``chunk_sec``, ``batch_size``,
``device`` (auto/cpu/cuda/mps), ``dtype`` (auto/float32/float16; float16 on CUDA only), ``revision``,
``cache_dir``, ``layer`` (not for CLAP), ``trust_remote_code`` (``hf:`` only), ``model_id`` (named backends:
point them at a local copy).

Inputs shorter than the model's minimum receptive field (from the config's conv kernels and strides) are
zero-padded to it; empty inputs raise :class:`~research_job.errors.AudioDecodeError`. Chunks are batched only
with chunks of the same length, so no attention mask or padding ever changes a result: batching is exact.

Hub ids are looked up in the local Hugging Face cache first; with no cached copy and no network the loader
fails within seconds (a bounded hub probe, no retries) with a :class:`~research_job.errors.ModelError` that says
how to point at a local copy.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from research_job.errors import AudioDecodeError, ModelError, unknown_choice
from research_job.models.device import dtype_name, resolve_device, resolve_dtype
from research_job.provenance import sha256_files

log = logging.getLogger(__name__)

MERT_ID = "m-a-p/MERT-v1-95M"
CLAP_ID = "laion/larger_clap_music"
DEFAULT_CHUNK_SEC = 10.0
DEFAULT_BATCH_SIZE = 8
#: seconds the hub probe may take before a missing model is reported as unreachable
HUB_PROBE_TIMEOUT_SEC = 5.0

_COMMON_OPTIONS = ("batch_size", "cache_dir", "chunk_sec", "device", "dtype", "model_id", "revision")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ---------------------------------------------------------------------------------------------------------------
# option parsing


def _check_options(backend: str, opts: dict[str, Any], allowed: Sequence[str]) -> None:
    for key in opts:
        if key not in allowed:
            raise ModelError(unknown_choice(f"option for {backend}", key, allowed))


def _float_opt(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"Option {name}={value!r} is not a number") from None
    if not np.isfinite(out) or out <= 0:
        raise ModelError(f"Option {name}={value!r} must be a positive number")
    return out


def _int_opt(name: str, value: Any) -> int:
    try:
        out = int(str(value))
    except ValueError:
        raise ModelError(f"Option {name}={value!r} is not an integer") from None
    if out < 1:
        raise ModelError(f"Option {name}={value!r} must be >= 1")
    return out


def _bool_opt(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ModelError(f"Option {name}={value!r} is not a boolean. Known: {', '.join(sorted(_TRUE | _FALSE))}")


def _layer_opt(value: Any) -> str | int:
    """``all`` | ``last`` | an integer index into the hidden states (negative counts from the end)."""
    text = str(value).strip().lower()
    if text in ("all", "last"):
        return text
    try:
        return int(text)
    except ValueError:
        raise ModelError(
            f"Option layer={value!r} is not 'all', 'last' or an integer hidden-state index"
        ) from None


# ---------------------------------------------------------------------------------------------------------------
# finding the checkpoint: local folder, local HF cache, or the hub (fail fast when unreachable)


@dataclass(frozen=True)
class _Source:
    """Where a checkpoint comes from."""

    ref: str  # what from_pretrained gets: a local folder or a hub id
    hub_id: str | None  # None for a local folder
    folder: Path | None  # the files on disk (local folder or hub snapshot), once known


def _offline_mode() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (not only at import time like huggingface_hub does)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _local_copy_hint(hub_id: str, spec_hint: str) -> str:
    generic = "hf:/path/to/local/checkpoint"
    where = spec_hint if spec_hint == generic else f"{spec_hint} or {generic}"
    return (
        f"Point at a local copy instead: {where} (a folder with config.json, the weights and "
        f"preprocessor_config.json, e.g. made with `hf download {hub_id} --local-dir DIR` on a machine with "
        "network), or pre-download it into the Hugging Face cache (HF_HOME / HF_HUB_CACHE, or cache_dir=) "
        "and run with HF_HUB_OFFLINE=1."
    )


def _looks_like_path(ref: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with separators is meant as a folder."""
    return (
        ref.startswith(("/", ".", "~")) or ref.count("/") > 1 or "\\" in ref or os.sep in ref.replace("/", "")
    )


def _resolve_source(ref: str, *, revision: str | None, cache_dir: str | None, spec_hint: str) -> _Source:
    """Find a checkpoint locally (folder or HF cache); otherwise check quickly that the hub can serve it.

    Raises:
        ModelError: missing local folder, offline with no cached copy, hub unreachable, unknown repository.
    """
    path = Path(os.path.expanduser(ref))
    if path.is_dir():
        if not (path / "config.json").is_file():
            found = sorted(p.name for p in path.iterdir())[:20]
            raise ModelError(
                f"Local checkpoint {str(path)!r} has no config.json (found: {', '.join(found) or 'nothing'})"
            )
        return _Source(ref=str(path), hub_id=None, folder=path)
    if _looks_like_path(ref) or not _HUB_ID.match(ref):
        raise ModelError(
            f"Local checkpoint folder {ref!r} does not exist (and it is not a hub id like 'org/name'). "
            "Give hf:/path/to/local/checkpoint, a folder made with save_pretrained or `hf download --local-dir`."
        )
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref, "config.json", cache_dir=cache_dir, revision=revision)
    if isinstance(cached, str):
        return _Source(ref=ref, hub_id=ref, folder=Path(cached).parent)
    if _offline_mode():
        raise ModelError(
            f"Model {ref!r} is not in the local Hugging Face cache and the hub is off (HF_HUB_OFFLINE is set). "
            + _local_copy_hint(ref, spec_hint)
        )
    _probe_hub(ref, revision=revision, spec_hint=spec_hint)
    return _Source(ref=ref, hub_id=ref, folder=None)


def _probe_hub(hub_id: str, *, revision: str | None, spec_hint: str) -> None:
    """One bounded request to the hub (no retries) so that 'no network' fails in seconds, not minutes.

    transformers' own download path retries with back-off for about 45 s per file when the hub is unreachable;
    DNS look-ups are not covered by HTTP timeouts, hence the thread with a bounded join.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    endpoint = constants.ENDPOINT
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            HfApi(endpoint=endpoint).model_info(hub_id, revision=revision, timeout=HUB_PROBE_TIMEOUT_SEC)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller thread
            outcome["error"] = exc

    worker = threading.Thread(target=probe, name=f"hub-probe-{hub_id}", daemon=True)
    worker.start()
    worker.join(HUB_PROBE_TIMEOUT_SEC + 2.0)
    if worker.is_alive():
        raise ModelError(
            f"Model {hub_id!r} is not in the local cache and the hub ({endpoint}) did not answer within "
            f"{HUB_PROBE_TIMEOUT_SEC + 2.0:.0f} s. " + _local_copy_hint(hub_id, spec_hint)
        )
    error = outcome.get("error")
    if error is None:
        return
    if isinstance(error, GatedRepoError):
        raise ModelError(
            f"Model {hub_id!r} is gated on {endpoint}: accept its licence and set HF_TOKEN. "
            + _local_copy_hint(hub_id, spec_hint)
        )
    if isinstance(error, RepositoryNotFoundError):
        raise ModelError(
            f"Model {hub_id!r} was not found on {endpoint} (a typo, or a private repository needing HF_TOKEN). "
            + _local_copy_hint(hub_id, spec_hint)
        )
    if isinstance(error, RevisionNotFoundError):
        raise ModelError(f"Model {hub_id!r} has no revision {revision!r} on {endpoint}")
    raise ModelError(
        f"Model {hub_id!r} is not in the local cache and the hub ({endpoint}) is unreachable "
        f"({type(error).__name__}: {error}). " + _local_copy_hint(hub_id, spec_hint)
    )


def _pretrained_kwargs(source: _Source, *, revision: str | None, cache_dir: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if source.hub_id is None or source.folder is not None:
        kwargs["local_files_only"] = True  # local folder or cached snapshot: never touch the network
    if source.hub_id is not None:
        kwargs["revision"] = revision
        kwargs["cache_dir"] = cache_dir
    return kwargs


def _load(
    what: str,
    source: _Source,
    load: Callable[[str, dict[str, Any]], Any],
    kwargs: dict[str, Any],
) -> Any:
    try:
        return load(source.ref, kwargs)
    except ModelError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ImportError, ...
        hint = ""
        if "trust_remote_code" in str(exc):
            hint = " (it ships its own modelling code: add trust_remote_code=1 to the spec if you trust it)"
        elif source.hub_id is not None and source.folder is not None:
            hint = f" (the cached copy in {source.folder} may be incomplete: download it again)"
        raise ModelError(
            f"Cannot load the {what} of {source.ref!r}{hint}: {type(exc).__name__}: {exc}"
        ) from exc


def _weights_and_commit(
    source: _Source, revision: str | None, cache_dir: str | None
) -> tuple[str | None, str | None]:
    """sha256 over the weight files that were loaded, and the hub commit (None for a plain local folder)."""
    folder = source.folder
    if folder is None and source.hub_id is not None:  # downloaded just now: find the snapshot
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.hub_id, "config.json", cache_dir=cache_dir, revision=revision)
        folder = Path(cached).parent if isinstance(cached, str) else None
    if folder is None:
        return None, None
    commit = folder.name if folder.parent.name == "snapshots" else None
    files = sorted(folder.glob("*.safetensors")) or sorted(
        p for pattern in ("*.bin", "*.pt", "*.pth") for p in folder.glob(pattern)
    )
    if not files:
        log.warning("no weight files found in %s; weights_sha256 is null", folder)
        return None, commit
    return sha256_files(files), commit


# ---------------------------------------------------------------------------------------------------------------
# the encoders


class _ChunkedEncoder:
    """Shared chunking, batching and pooling; subclasses embed one batch of equal-length chunks."""

    name: str
    dim: int
    sample_rate: int

    def __init__(
        self,
        *,
        name: str,
        model: Any,
        feature_extractor: Any,
        dim: int,
        sample_rate: int,
        chunk_sec: float,
        batch_size: int,
        device: str,
        dtype: Any,
        min_samples: int,
        source: _Source,
        revision: str | None,
        cache_dir: str | None,
        layer: str | int | None,
        extra_params: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.feature_extractor = feature_extractor
        self.dim = int(dim)
        self.sample_rate = int(sample_rate)
        self.chunk_sec = chunk_sec
        self.chunk_samples = max(1, round(chunk_sec * self.sample_rate))
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.min_samples = max(1, int(min_samples))
        if self.chunk_samples < self.min_samples:
            raise ModelError(
                f"chunk_sec={chunk_sec} gives {self.chunk_samples} samples, below the model's minimum input of "
                f"{self.min_samples} samples at {self.sample_rate} Hz"
            )
        self.layer = layer
        self._source = source
        self._revision = revision
        self._cache_dir = cache_dir
        self._extra_params = dict(extra_params or {})
        self._weights: tuple[str | None, str | None] | None = None
        # feature-extractor outputs the forward does not take (e.g. an attention_mask) are left out
        params = list(inspect.signature(self._forward_callable()).parameters.values())
        self._accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        self._accepted = {p.name for p in params}

    # -- subclass hooks ------------------------------------------------------------------------------------
    def _forward_callable(self) -> Callable[..., Any]:
        return self.model.forward  # type: ignore[no-any-return]

    def _embed_chunks(self, inputs: dict[str, Any]) -> Any:
        """Return a float32 torch tensor [batch, dim] for one batch of featurised chunks."""
        raise NotImplementedError

    def _pooling_params(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- chunking -----------------------------------------------------------------------------------------
    def chunks(self, wave: np.ndarray) -> list[np.ndarray]:
        """Cut one waveform into chunks of ``chunk_samples``; the tail is its own chunk unless it is shorter
        than the model's minimum input (then it is dropped); a whole track shorter than that is zero-padded.

        Raises:
            AudioDecodeError: empty, non-mono or non-finite waveform.
        """
        wave = np.asarray(wave)
        if wave.ndim != 1:
            raise AudioDecodeError(f"{self.name}: expected a mono 1-D waveform, got shape {wave.shape}")
        if wave.size == 0:
            raise AudioDecodeError(f"{self.name}: empty waveform (0 samples); nothing to embed")
        wave = wave.astype(np.float32, copy=False)
        if not np.isfinite(wave).all():
            raise AudioDecodeError(f"{self.name}: waveform contains NaN or infinite samples")
        if wave.size < self.min_samples:
            return [np.pad(wave, (0, self.min_samples - wave.size))]
        out = [wave[i : i + self.chunk_samples] for i in range(0, wave.size, self.chunk_samples)]
        if len(out) > 1 and out[-1].size < self.min_samples:
            out.pop()
        return out

    # -- embedding ----------------------------------------------------------------------------------------
    def _featurise(self, chunks: Sequence[np.ndarray]) -> dict[str, Any]:
        feats = self.feature_extractor(list(chunks), sampling_rate=self.sample_rate, return_tensors="pt")
        inputs: dict[str, Any] = {}
        for key, value in feats.items():
            if not (self._accepts_any or key in self._accepted):
                continue
            if hasattr(value, "to"):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            inputs[key] = value
        return inputs

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Embed whole tracks: float32 [len(batch), dim], duration-weighted mean of the chunk vectors.

        Raises:
            AudioDecodeError: an empty or malformed waveform (named by its index in the batch).
        """
        import torch

        per_track: list[list[np.ndarray]] = []
        for i, wave in enumerate(batch):
            try:
                per_track.append(self.chunks(wave))
            except AudioDecodeError as exc:
                raise AudioDecodeError(f"waveform #{i} of the batch: {exc}") from None
        # bucket chunks by length so a batch never needs padding or an attention mask
        buckets: dict[int, list[tuple[int, np.ndarray]]] = {}
        for track, chunks in enumerate(per_track):
            for chunk in chunks:
                buckets.setdefault(chunk.size, []).append((track, chunk))
        sums = np.zeros((len(per_track), self.dim), dtype=np.float64)
        weights = np.zeros(len(per_track), dtype=np.float64)
        with torch.inference_mode():
            for length in sorted(buckets, reverse=True):
                items = buckets[length]
                for start in range(0, len(items), self.batch_size):
                    part = items[start : start + self.batch_size]
                    vectors = self._embed_chunks(self._featurise([c for _, c in part]))
                    vectors = vectors.detach().to("cpu", torch.float32).numpy().astype(np.float64)
                    if vectors.shape != (len(part), self.dim):
                        raise ModelError(
                            f"{self.name}: model returned shape {tuple(vectors.shape)}, expected "
                            f"({len(part)}, {self.dim})"
                        )
                    for (track, _), vec in zip(part, vectors, strict=True):
                        sums[track] += length * vec
                        weights[track] += length
        out = (sums / weights[:, None]) if len(per_track) else sums
        return out.astype(np.float32).reshape(len(per_track), self.dim)

    # -- metadata -----------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Name, version (transformers + model commit), weights checksum, pooling, layer and parameters."""
        import transformers

        if self._weights is None:
            self._weights = _weights_and_commit(self._source, self._revision, self._cache_dir)
        sha, commit = self._weights
        source = self._source.hub_id or str(self._source.ref)
        version = f"transformers {transformers.__version__}; {source}" + (f"@{commit}" if commit else "")
        params = {
            "model_id": source,
            "revision": commit or self._revision,
            "chunk_sec": self.chunk_sec,
            "chunk_samples": self.chunk_samples,
            "min_samples": self.min_samples,
            "sample_rate": self.sample_rate,
            "batch_size": self.batch_size,
            "dtype": dtype_name(self.dtype),
            "device": self.device,
            "transformers_version": transformers.__version__,
            "chunk_pooling": "duration-weighted mean over chunks",
            **self._pooling_params(),
            **self._extra_params,
        }
        return {
            "name": self.name,
            "version": version,
            "weights_sha256": sha,
            "pooling": "mean",
            "layer": None if self.layer is None else str(self.layer),
            "params": params,
        }


class HiddenStateEncoder(_ChunkedEncoder):
    """Encoder-only audio model: a hidden-state layer (or the mean of all of them) averaged over time."""

    def _embed_chunks(self, inputs: dict[str, Any]) -> Any:
        import torch

        want_all = self.layer != "last"
        out = self.model(**inputs, output_hidden_states=want_all)
        if self.layer == "last":
            hidden = getattr(out, "last_hidden_state", None)
            if hidden is None:
                raise ModelError(f"{self.name}: the model output has no last_hidden_state")
            return hidden.float().mean(dim=1)
        states = getattr(out, "hidden_states", None)
        if not states:
            raise ModelError(f"{self.name}: the model does not return hidden states (output_hidden_states)")
        if self.layer == "all":
            # mean over time of each layer, then over layers (the same as over layers then time: both linear)
            return torch.stack([h.float().mean(dim=1) for h in states]).mean(dim=0)
        assert isinstance(self.layer, int)
        if not -len(states) <= self.layer < len(states):
            raise ModelError(
                f"{self.name}: layer={self.layer} out of range; the model has {len(states)} hidden states "
                f"(0 = embedding output .. {len(states) - 1}, or negative from the end, 'all', 'last')"
            )
        return states[self.layer].float().mean(dim=1)

    def _pooling_params(self) -> dict[str, Any]:
        layer = {"all": "mean of all hidden states", "last": "last hidden state"}.get(str(self.layer))
        return {"frame_pooling": "mean over time", "layer_pooling": layer or f"hidden_states[{self.layer}]"}


class ClapEncoder(_ChunkedEncoder):
    """CLAP audio tower: ``get_audio_features`` per chunk (L2-normalised), averaged over chunks."""

    def _forward_callable(self) -> Callable[..., Any]:
        return self.model.get_audio_features  # type: ignore[no-any-return]

    def _featurise(self, chunks: Sequence[np.ndarray]) -> dict[str, Any]:
        inputs = super()._featurise(chunks)
        feats = inputs.get("input_features")
        fused = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        if feats is not None and not fused and feats.ndim == 4 and feats.shape[1] > 1:
            # a "fusion" feature extractor stacks 4 copies of the mel of a short input; an unfused model takes
            # one channel (the fused model's "global" channel 0 is the same full-chunk mel)
            inputs["input_features"] = feats[:, :1]
        return inputs

    def _embed_chunks(self, inputs: dict[str, Any]) -> Any:
        import torch

        out = self.model.get_audio_features(**inputs)
        # transformers 4.x returns the projected tensor; 5.x a model output whose pooler_output holds it
        vectors = out if isinstance(out, torch.Tensor) else getattr(out, "pooler_output", None)
        if vectors is None:
            raise ModelError(
                f"{self.name}: get_audio_features returned {type(out).__name__} without pooler_output"
            )
        vectors = vectors.float()
        # 5.x already normalises; 4.x does not: normalise so both give the same chunk vectors
        return torch.nn.functional.normalize(vectors, dim=-1)

    def _pooling_params(self) -> dict[str, Any]:
        return {"frame_pooling": "CLAP audio projection (HTSAT pooled output), L2-normalised per chunk"}


# ---------------------------------------------------------------------------------------------------------------
# helpers shared by the loaders


def _config_dim(config: Any, *names: str) -> int:
    for attr in names:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelError(f"Cannot read the embedding size from the model config (none of {', '.join(names)})")


def _min_samples(config: Any) -> int:
    """Receptive field (samples) of a wav2vec2-style conv front end; 1 when the config has none."""
    kernels = getattr(config, "conv_kernel", None)
    strides = getattr(config, "conv_stride", None)
    if not kernels or not strides or len(kernels) != len(strides):
        return 1
    field = 1
    for kernel, stride in zip(reversed(list(kernels)), reversed(list(strides)), strict=True):
        field = (field - 1) * int(stride) + int(kernel)
    return field


def _sample_rate(feature_extractor: Any, ref: str) -> int:
    rate = getattr(feature_extractor, "sampling_rate", None)
    if not isinstance(rate, int) or rate <= 0:
        raise ModelError(f"The feature extractor of {ref!r} has no sampling_rate; it is not an audio model")
    return rate


@dataclass(frozen=True)
class _Common:
    chunk_sec: float
    batch_size: int
    device: str
    dtype: Any
    revision: str | None
    cache_dir: str | None


def _common(opts: dict[str, Any]) -> _Common:
    device = resolve_device(str(opts.get("device", "auto")))
    revision = opts.get("revision") or None
    cache_dir = opts.get("cache_dir") or None
    return _Common(
        chunk_sec=_float_opt("chunk_sec", opts.get("chunk_sec", DEFAULT_CHUNK_SEC)),
        batch_size=_int_opt("batch_size", opts.get("batch_size", DEFAULT_BATCH_SIZE)),
        device=device,
        dtype=resolve_dtype(str(opts.get("dtype", "auto")), device),
        revision=None if revision is None else str(revision),
        cache_dir=None if cache_dir is None else os.path.expanduser(str(cache_dir)),
    )


def _finish(model: Any, common: _Common) -> Any:
    model = model.to(device=common.device, dtype=common.dtype)
    model.eval()
    return model


def _load_hidden_state_encoder(
    backend: str,
    ref: str,
    opts: dict[str, Any],
    *,
    default_layer: str,
    trust_remote_code: bool,
    spec_hint: str,
    feature_extractor_cls: str,
) -> HiddenStateEncoder:
    start = time.monotonic()
    common = _common(opts)
    layer = _layer_opt(opts.get("layer", default_layer))
    source = _resolve_source(ref, revision=common.revision, cache_dir=common.cache_dir, spec_hint=spec_hint)
    kwargs = _pretrained_kwargs(source, revision=common.revision, cache_dir=common.cache_dir)
    import transformers

    fe_cls = getattr(transformers, feature_extractor_cls)
    # always pass trust_remote_code to the Auto classes: left as None, transformers asks on stdin and waits
    fe_kwargs = (
        {**kwargs, "trust_remote_code": trust_remote_code}
        if feature_extractor_cls.startswith("Auto")
        else kwargs
    )
    feature_extractor = _load(
        "feature extractor", source, lambda r, kw: fe_cls.from_pretrained(r, **kw), fe_kwargs
    )
    model = _load(
        "model",
        source,
        lambda r, kw: transformers.AutoModel.from_pretrained(r, trust_remote_code=trust_remote_code, **kw),
        kwargs,
    )
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise ModelError(
            f"{ref!r} is an encoder-decoder model ({config.model_type}); {backend} needs an encoder-only audio model"
        )
    n_layers = getattr(config, "num_hidden_layers", None)
    if isinstance(layer, int) and isinstance(n_layers, int) and not -(n_layers + 1) <= layer <= n_layers:
        raise ModelError(
            f"layer={layer} out of range for {ref!r}: valid 0..{n_layers} (0 = embedding output), "
            f"-{n_layers + 1}..-1, 'all' or 'last'"
        )
    log.info("loaded %s from %s in %.1f s (%s, %s)", backend, source.ref, time.monotonic() - start,
             common.device, dtype_name(common.dtype))  # fmt: skip
    return HiddenStateEncoder(
        name=backend,
        model=_finish(model, common),
        feature_extractor=feature_extractor,
        dim=_config_dim(config, "hidden_size", "d_model"),
        sample_rate=_sample_rate(feature_extractor, ref),
        chunk_sec=common.chunk_sec,
        batch_size=common.batch_size,
        device=common.device,
        dtype=common.dtype,
        min_samples=_min_samples(config),
        source=source,
        revision=common.revision,
        cache_dir=common.cache_dir,
        layer=layer,
        extra_params={"trust_remote_code": trust_remote_code, "model_type": config.model_type},
    )


# ---------------------------------------------------------------------------------------------------------------
# loaders (the registry's entry points)


def load_mert(model_id: str = MERT_ID, **opts: Any) -> HiddenStateEncoder:
    """Load MERT (``m-a-p/MERT-v1-95M`` by default; ``model_id=`` may be a local folder).

    Options: layer (all | last | N), chunk_sec, batch_size, device, dtype, revision, cache_dir.

    Raises:
        ModelError: bad option, weights not available (offline, not cached), or a load failure.
    """
    _check_options("mert-v1-95m", opts, (*_COMMON_OPTIONS, "layer"))
    return _load_hidden_state_encoder(
        "mert-v1-95m",
        str(model_id),
        opts,
        default_layer="all",
        trust_remote_code=True,
        spec_hint="mert-v1-95m?model_id=/path/to/MERT-v1-95M",
        feature_extractor_cls="Wav2Vec2FeatureExtractor",
    )


def load_auto(id_or_path: str, **opts: Any) -> HiddenStateEncoder:
    """Load any encoder-only transformers audio model: ``hf:<model id or local path>``.

    Options: layer (last | all | N; default last), chunk_sec, batch_size, device, dtype, revision, cache_dir,
    trust_remote_code (default false).

    Raises:
        ModelError: bad option, weights not available (offline, not cached), or a load failure.
    """
    _check_options(f"hf:{id_or_path}", opts, (*_COMMON_OPTIONS, "layer", "trust_remote_code"))
    opts = dict(opts)
    ref = str(opts.pop("model_id", id_or_path))
    trust = _bool_opt("trust_remote_code", opts.pop("trust_remote_code", False))
    return _load_hidden_state_encoder(
        f"hf:{ref}",
        ref,
        opts,
        default_layer="last",
        trust_remote_code=trust,
        spec_hint="hf:/path/to/local/checkpoint",
        feature_extractor_cls="AutoFeatureExtractor",
    )


def load_clap(model_id: str = CLAP_ID, **opts: Any) -> ClapEncoder:
    """Load LAION CLAP (``laion/larger_clap_music`` by default; ``model_id=`` may be a local folder).

    Options: chunk_sec (at most the feature extractor's max_length_s, 10 s), batch_size, device, dtype,
    revision, cache_dir.

    Raises:
        ModelError: bad option, weights not available (offline, not cached), or a load failure.
    """
    _check_options("clap-music", opts, _COMMON_OPTIONS)
    start = time.monotonic()
    common = _common(opts)
    ref = str(model_id)
    source = _resolve_source(
        ref,
        revision=common.revision,
        cache_dir=common.cache_dir,
        spec_hint="clap-music?model_id=/path/to/larger_clap_music",
    )
    kwargs = _pretrained_kwargs(source, revision=common.revision, cache_dir=common.cache_dir)
    from transformers import ClapFeatureExtractor, ClapModel

    feature_extractor = _load(
        "feature extractor", source, lambda r, kw: ClapFeatureExtractor.from_pretrained(r, **kw), kwargs
    )
    model = _load("model", source, lambda r, kw: ClapModel.from_pretrained(r, **kw), kwargs)
    max_sec = float(getattr(feature_extractor, "max_length_s", DEFAULT_CHUNK_SEC))
    if common.chunk_sec > max_sec:
        # longer inputs are randomly cropped / fused by the feature extractor: non-deterministic embeddings
        raise ModelError(
            f"chunk_sec={common.chunk_sec} exceeds CLAP's input length of {max_sec} s; use <= {max_sec}"
        )
    log.info("loaded clap-music from %s in %.1f s (%s, %s)", source.ref, time.monotonic() - start,
             common.device, dtype_name(common.dtype))  # fmt: skip
    return ClapEncoder(
        name="clap-music",
        model=_finish(model, common),
        feature_extractor=feature_extractor,
        dim=_config_dim(model.config, "projection_dim"),
        sample_rate=_sample_rate(feature_extractor, ref),
        chunk_sec=common.chunk_sec,
        batch_size=common.batch_size,
        device=common.device,
        dtype=common.dtype,
        min_samples=1,
        source=source,
        revision=common.revision,
        cache_dir=common.cache_dir,
        layer=None,
        extra_params={
            "truncation": getattr(feature_extractor, "truncation", None),
            "padding": getattr(feature_extractor, "padding", None),
        },
    )
