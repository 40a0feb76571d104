"""Trained heads: small models over frozen backbone frames that learn the catalogue's own similarity.

A head reads the per-frame backbone features ``embed --frames <layers> [--views N]`` keeps
(:mod:`research_job.frames`) and maps a track's frames to one L2-normalised vector. ``research-job train-head``
trains one and writes a *head version folder*: a version folder like any other (its ``embeddings/`` are the
head's vectors, so build-index, evaluate, validate, publish and the Node API work on it unchanged) plus
``head/`` (``head.pt``, ``frozen.f32``, ``head_meta.json``, ``curves.json``, ``curves.png``).

Modules, one concern each:

* :mod:`~research_job.heads.meta` - names, choices, :class:`HeadParams`, reading ``head_meta.json`` (no torch);
* :mod:`~research_job.heads.arch` - the ``mlp`` and ``sequence`` modules;
* :mod:`~research_job.heads.data` - seeded splits (track / album / label), labels, split-fenced frame access;
* :mod:`~research_job.heads.training` - objectives (pytorch-metric-learning), validation, checkpoints, resume;
* :mod:`~research_job.heads.apply` - loading ``head.pt`` verified against its record, embedding frames;
* :mod:`~research_job.heads.folder` - the head version folder, end to end.

Public API (what query-by-audio, the excerpt evaluation and others call; importing this package does not import
torch, :func:`load_head` does)::

    from research_job.heads import is_head_folder, load_head, test_rows

    is_head_folder(layout) -> bool            # the folder holds a finished head (head/head_meta.json)
    head = load_head(layout, device="cpu")    # head.pt checked against head_meta.json (sha256, format, dims)
    head.meta                                 # the head_meta.json dict
    head.layers                               # backbone frame layers to compute: encoder.embed_frames(w, head.layers)
    head.backbone                             # recorded backbone {name, version, weights_sha256, layer, ...}
    head.embed(frames)                        # list of float32 [T_i, D] -> float32 [n, head.dim], unit rows
    test_rows(layout) -> list[int]            # rows of the test split (tracks whose frames never reached training)
    split_rows(layout, "train" | "val" | "test")

Errors: :class:`~research_job.errors.ArtifactError` for a folder without a head or with missing files,
:class:`~research_job.errors.ModelError` when ``head.pt`` is not the head ``head_meta.json`` records (both
sha256 values named).
"""

from __future__ import annotations

from research_job.heads.apply import Head, load_head
from research_job.heads.meta import (
    HeadParams,
    head_model_name,
    is_head_folder,
    read_head_meta,
    split_rows,
    test_rows,
)

__all__ = [
    "Head",
    "HeadParams",
    "head_model_name",
    "is_head_folder",
    "load_head",
    "read_head_meta",
    "split_rows",
    "test_rows",
]
