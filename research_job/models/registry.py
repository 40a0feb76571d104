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


@dataclass(frozen=True)
class Entry:
    """A registry entry: ``module:function`` of the loader and fixed keyword arguments for it."""

    loader: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def resolve(self) -> Callable[..., Encoder]:
        module, func = self.loader.split(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


#: exact names
MODELS: dict[str, Entry] = {
    "musicnn-msd": Entry(
        "research_job.models.musicnn:load",
        {"checkpoint": "MSD_musicnn"},
        "musicnn trained on the Million Song Dataset tags (default; weights from the musicnn wheel)",
    ),
    "musicnn-mtt": Entry(
        "research_job.models.musicnn:load",
        {"checkpoint": "MTT_musicnn"},
        "musicnn trained on MagnaTagATune tags",
    ),
    "dsp-stats": Entry(
        "research_job.models.dsp:load", {}, "DSP baseline: MFCC, chroma and spectral statistics (no weights)"
    ),
    "random": Entry(
        "research_job.models.random_encoder:load",
        {},
        "floor: a seeded random vector per track (content-independent)",
    ),
    "mert-v1-95m": Entry(
        "research_job.models.hf:load_mert",
        {"model_id": "m-a-p/MERT-v1-95M"},
        "MERT-v1-95M via transformers (24 kHz, all-layer average)",
    ),
    "clap-music": Entry(
        "research_job.models.hf:load_clap",
        {"model_id": "laion/larger_clap_music"},
        "LAION CLAP music via transformers (48 kHz, 10 s chunks)",
    ),
}

#: prefixes: ``<prefix><rest>`` -> loader(rest, **kwargs)
PREFIXES: dict[str, Entry] = {
    "hf:": Entry(
        "research_job.models.hf:load_auto", {}, "any transformers audio encoder: hf:<model id or local path>"
    ),
}

DEFAULT_MODEL = "musicnn-msd"


def known_models() -> list[str]:
    """Names and prefixes the registry accepts."""
    return sorted(MODELS) + [f"{p}<id-or-path>" for p in PREFIXES]


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


def load_model(spec: str, **overrides: Any) -> Encoder:
    """Load the encoder named by ``spec`` (``name``, ``name?opt=v`` or ``prefix:rest``).

    Raises:
        ModelError: unknown name, or the backend cannot load (missing weights, offline hub, ...).
    """
    name, opts = split_options(spec.strip())
    kwargs: dict[str, Any]
    if name in MODELS:
        entry = MODELS[name]
        kwargs = {**entry.kwargs, **opts, **overrides}
        encoder = entry.resolve()(**kwargs)
    else:
        for prefix, entry in PREFIXES.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                kwargs = {**entry.kwargs, **opts, **overrides}
                encoder = entry.resolve()(name[len(prefix) :], **kwargs)
                break
        else:
            raise ModelError(unknown_choice("model", spec, known_models()))
    encoder.name = spec.strip()
    return encoder
