"""Registry of embedding backends: a name or prefix -> a loader, heavy imports inside the loader.

``load_model("musicnn-msd")``, ``load_model("hf:/path/to/checkpoint")``. Unknown names raise
:class:`~research_job.errors.ModelError` listing the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from research_job.errors import ModelError, unknown_choice
from research_job.models.base import Encoder

#: option name -> its closed set of values, or None for a free value (a number, a path); an entry whose options
#: are None leaves every option to its loader
Options = dict[str, tuple[str, ...] | None]
_HF_COMMON: Options = dict.fromkeys(
    ("batch_size", "cache_dir", "chunk_sec", "device", "dtype", "model_id", "revision")
)
_MUSICNN: Options = {
    "layer": ("penultimate", "mean_pool", "max_pool", "taggram"),
    "batch_size": None,
    "device": None,
    "weights_dir": None,
    "runtime": ("torch", "onnx"),
    "precision": ("fp32", "int8"),
}


@dataclass(frozen=True)
class Entry:
    """A registry entry: ``module:function`` of the loader, fixed keyword arguments, and the spec's options.

    ``options`` lets :func:`check_spec` refuse a bad spec before anything is loaded; the loader still checks
    the values it understands (numbers, devices, paths).
    """

    loader: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    options: Options | None = None

    def resolve(self) -> Callable[..., Encoder]:
        module, func = self.loader.split(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


#: exact names
MODELS: dict[str, Entry] = {
    "musicnn-msd": Entry(
        "research_job.models.musicnn:load",
        {"checkpoint": "MSD_musicnn"},
        "musicnn trained on the Million Song Dataset tags (weights from the musicnn wheel)",
        _MUSICNN,
    ),
    "musicnn-mtt": Entry(
        "research_job.models.musicnn:load",
        {"checkpoint": "MTT_musicnn"},
        "musicnn trained on MagnaTagATune tags",
        _MUSICNN,
    ),
    "dsp-stats": Entry(
        "research_job.models.dsp:load",
        {},
        "DSP baseline: MFCC, chroma and spectral statistics (no weights)",
        {},
    ),
    "random": Entry(
        "research_job.models.random_encoder:load",
        {},
        "floor: a seeded random vector per track (content-independent)",
        {"seed": None, "dim": None},
    ),
    "mert-v1-95m": Entry(
        "research_job.models.hf:load_mert",
        {"model_id": "m-a-p/MERT-v1-95M"},
        "MERT-v1-95M via transformers (24 kHz, all-layer average)",
        {**_HF_COMMON, "layer": None},
    ),
    "clap-music": Entry(
        "research_job.models.hf:load_clap",
        {"model_id": "laion/larger_clap_music"},
        "LAION CLAP music via transformers (48 kHz, 10 s chunks)",
        _HF_COMMON,
    ),
}

#: prefixes: ``<prefix><rest>`` -> loader(rest, **kwargs)
PREFIXES: dict[str, Entry] = {
    "fusion:": Entry(
        "research_job.models.fusion:load",
        {},
        "several models side by side, one L2-normalised block each: fusion:<spec>+<spec> (use #block_standardize)",
        {},
    ),
    "hf:": Entry(
        "research_job.models.hf:load_auto",
        {},
        "any transformers audio encoder: hf:<model id or local path>",
        {**_HF_COMMON, "layer": None, "trust_remote_code": None},
    ),
}

#: the default pipeline's model, with the default post-processing ``center`` (research_job.embeddings): chosen on
#: both corpora of bench/quality.py. On recorded music (151 tracks, 9 soundtracks) it beats every single musicnn
#: checkpoint and Musly on same-soundtrack and same-artist P@5 beyond the paired-bootstrap CI; on the demo it ties
#: (docs/quality.md).
DEFAULT_MODEL = "fusion:musicnn-msd+musicnn-mtt"
#: what follows each prefix, as known_models() shows it
PREFIX_ARGS = {"fusion:": "<spec>+<spec>", "hf:": "<id-or-path>"}


def known_models() -> list[str]:
    """Names and prefixes the registry accepts."""
    return sorted(MODELS) + [f"{p}{PREFIX_ARGS.get(p, '<id-or-path>')}" for p in PREFIXES]


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``name?key=value&key=value`` into the name and its options (e.g. ``musicnn-msd?layer=penultimate``)."""
    name, _, query = spec.partition("?")
    opts: dict[str, str] = {}
    if query:
        for part in query.split("&"):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ModelError(f"Bad model option {part!r} in {spec!r}: expected key=value")
            opts[key] = value
    return name, opts


def _entry(spec: str) -> tuple[str, Entry, dict[str, str]]:
    """(name, registry entry, options) of a spec, without loading anything.

    Raises:
        ModelError: unknown name, or a malformed option.
    """
    if spec.strip().startswith("fusion:"):  # the members carry their own options: nothing to split here
        return spec.strip(), PREFIXES["fusion:"], {}
    name, opts = split_options(spec.strip())
    if name in MODELS:
        return name, MODELS[name], opts
    for prefix, entry in PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return name, entry, opts
    raise ModelError(unknown_choice("model", spec.strip() or spec, known_models()))


def check_spec(spec: str) -> str:
    """Return ``spec`` if it names a registry entry with options it takes; nothing is imported or loaded.

    Raises:
        ModelError: unknown model (listing the known ones), an option the model does not take (listing the
            ones it does), or a value outside an option's closed set (listing those).
    """
    name, entry, opts = _entry(spec)
    if name.startswith("fusion:"):
        from research_job.models.fusion import split_members

        for member in split_members(name[len("fusion:") :]):
            check_spec(member)
        return spec
    if entry.options is None:
        return spec
    if opts and not entry.options:
        raise ModelError(f"{name} takes no options, got {sorted(opts)} in {spec!r}")
    for key, value in opts.items():
        if key not in entry.options:
            raise ModelError(unknown_choice(f"option for {name}", key, entry.options))
        allowed = entry.options[key]
        if allowed is not None and value not in allowed:
            raise ModelError(unknown_choice(f"value of {name}?{key}", value, allowed))
    return spec


def load_model(spec: str, **overrides: Any) -> Encoder:
    """Load the encoder named by ``spec`` (``name``, ``name?opt=v`` or ``prefix:rest``).

    Raises:
        ModelError: unknown name, or the backend cannot load (missing weights, offline hub, ...).
    """
    check_spec(spec)
    name, entry, opts = _entry(spec)
    kwargs = {**entry.kwargs, **opts, **overrides}
    if name in MODELS:
        encoder = entry.resolve()(**kwargs)
    else:
        prefix = next(p for p in PREFIXES if name.startswith(p))
        encoder = entry.resolve()(name[len(prefix) :], **kwargs)
    encoder.name = spec.strip()
    return encoder
