"""train-head: learn the catalogue's own similarity on top of the frozen backbone frames of a version folder.

The source is the backbone version folder (``--version-dir``, or ``<artifacts-root>/v1_model_<MODEL>``), embedded
with ``embed --frames <layers> [--views N]``. The result is a new head version folder (``--out-dir``, default
``<artifacts-root>/v1_model_<backbone>_head-<name>``) that build-index, evaluate, validate, publish, find-similar
and the Node API use like any other. The library does the work (:func:`research_job.heads.folder.train_head_folder`);
this module is its config, its checks and its summary. See docs/heads.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_job.config import CommonConfig, check_choices, option
from research_job.errors import ConfigError
from research_job.heads.meta import (
    ARCHITECTURES,
    DEVICES,
    LABEL_COLUMNS,
    MINERS,
    OBJECTIVES,
    POOLINGS,
    SPLITS,
    HeadParams,
    check_name,
)
from research_job.steps import Step

_DEFAULTS = HeadParams()


@dataclass(frozen=True)
class TrainHeadConfig:
    """train-head: backbone frames of a version folder -> a head version folder (head/ + the head's embeddings)."""

    common: CommonConfig = field(default_factory=CommonConfig)
    name: str | None = option(
        None, "name of the head (letters, digits, ._-); unset = <architecture>-<objective>"
    )
    out_dir: Path | None = option(
        None, "the head version folder to write; unset = <artifacts-root>/v1_model_<backbone>_head-<name>"
    )
    objective: str = option(
        _DEFAULTS.objective,
        "contrastive: two views of a track are positives (no labels); triplet: same label positives",
        choices=OBJECTIVES,
    )
    architecture: str = option(
        _DEFAULTS.architecture,
        "mlp over the mean frame, or a small transformer over the frame sequence",
        choices=ARCHITECTURES,
    )
    split: str = option(
        "album",
        "how val/test tracks are held out: random tracks, whole albums, or whole labels (new composers)",
        choices=SPLITS,
    )
    label: str = option(
        "composer",
        "metadata column of the labels, for the triplet objective and the label split",
        choices=LABEL_COLUMNS,
        kind="label column",
    )
    val_fraction: float = option(0.15, "share of the tracks held out for validation (early stopping)")
    test_fraction: float = option(0.25, "share of the tracks held out for testing (never trained on)")
    epochs: int = option(_DEFAULTS.epochs, "most epochs to train")
    patience: int = option(_DEFAULTS.patience, "stop after this many epochs without a better val metric")
    batch_size: int = option(
        _DEFAULTS.batch_size, "tracks per batch (triplet: capped at m_per_class x labels)"
    )
    lr: float = option(_DEFAULTS.lr, "AdamW learning rate (cosine-annealed over the epochs)")
    weight_decay: float = option(_DEFAULTS.weight_decay, "AdamW weight decay")
    out_dim: int = option(_DEFAULTS.out_dim, "dimension of the head's output vectors")
    hidden: int = option(_DEFAULTS.hidden, "mlp: width of the hidden layer")
    dropout: float = option(_DEFAULTS.dropout, "dropout in the head while training")
    d_model: int = option(_DEFAULTS.d_model, "sequence: transformer width")
    n_layers: int = option(_DEFAULTS.n_layers, "sequence: transformer layers")
    n_heads: int = option(_DEFAULTS.n_heads, "sequence: attention heads (must divide d_model)")
    pooling: str = option(
        _DEFAULTS.pooling, "sequence: pool the frames by learned attention or by their mean", choices=POOLINGS
    )
    max_frames: int = option(
        _DEFAULTS.max_frames,
        "sequence: longest crop trained on; longer tracks are embedded in chunks this long",
    )
    min_crop: float = option(
        _DEFAULTS.min_crop, "shortest random crop, as a share of a track's frames (also the val query crop)"
    )
    temperature: float = option(_DEFAULTS.temperature, "contrastive: NT-Xent temperature")
    margin: float = option(_DEFAULTS.margin, "triplet: margin of the loss and the miner (cosine)")
    m_per_class: int = option(
        _DEFAULTS.m_per_class, "triplet: tracks per label in each batch (MPerClassSampler m)"
    )
    miner: str = option(_DEFAULTS.miner, "triplet: which triplets the miner keeps", choices=MINERS)
    standardize: bool = option(
        _DEFAULTS.standardize,
        "standardise each feature with the train split's mean and std (kept in head.pt)",
    )
    use_views: bool = option(
        _DEFAULTS.use_views, "train and validate on the folder's augmented views when it has them"
    )
    seed: int = option(_DEFAULTS.seed, "seed of the split, the initialisation and every epoch's sampling")
    threads: int = option(
        _DEFAULTS.threads, "torch CPU threads (fixed, so a resumed run gives the same weights)"
    )
    device: str = option("cpu", "torch device: cpu, cuda, mps, or auto (the best available)", choices=DEVICES)
    force: bool = option(
        False, "retrain from scratch even when the folder holds a finished head (of this or another config)"
    )

    @property
    def head_name(self) -> str:
        return self.name or f"{self.architecture}-{self.objective}"

    def params(self) -> HeadParams:
        """The hyper-parameters as the library takes them."""
        return HeadParams(**{k: getattr(self, k) for k in HeadParams.__dataclass_fields__})


def check(cfg: TrainHeadConfig) -> None:
    """Refuse bad choices, counts, fractions, names and folders before anything is read or written.

    Raises:
        ConfigError: naming the bad value (and the valid ones for a closed set).
    """
    check_choices(cfg)
    check_name(cfg.head_name)
    cfg.params().check()
    v, t = cfg.val_fraction, cfg.test_fraction
    if not (0 < v < 1 and 0 <= t < 1 and v + t < 1):
        raise ConfigError(
            f"split fractions must satisfy 0 < val < 1, 0 <= test < 1, val + test < 1; got val {v}, test {t}"
        )
    if cfg.out_dir is not None and Path(cfg.out_dir).resolve() == cfg.common.layout.version_dir.resolve():
        raise ConfigError(f"out_dir {cfg.out_dir} must differ from the backbone folder")


def run(cfg: TrainHeadConfig, *, on_epoch_end: Any = None) -> dict[str, Any]:
    """Train the head and write its version folder; return ``head_meta.json``.

    Args:
        on_epoch_end: test hook, called with the number of finished epochs after each checkpoint.
    """
    from research_job.heads.folder import HeadJob, train_head_folder
    from research_job.layout import ArtifactLayout

    check(cfg)
    job = HeadJob(
        source=cfg.common.layout,
        name=cfg.head_name,
        params=cfg.params(),
        dest=ArtifactLayout(Path(cfg.out_dir)) if cfg.out_dir is not None else None,
        artifacts_root=Path(cfg.common.artifacts_root),
        split_by=cfg.split,
        label=cfg.label,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        device=cfg.device,
        force=cfg.force,
    )
    return train_head_folder(job, on_epoch_end=on_epoch_end)


def format_summary(meta: dict[str, Any]) -> str:
    """What the command prints: the head, its split, the best val metric beside the frozen one, the folder."""
    m, s = meta["metrics"], meta["split"]
    return "\n".join(
        [
            f"Head {meta['name']!r} ({meta['objective']}, {meta['architecture']}) on {meta['backbone']['model']['name']} "
            f"-> {meta['artifact_version']}",
            f"split by {s['by']}: {s['counts']['train']} train / {s['counts']['val']} val / {s['counts']['test']} test",
            f"val {m['name']}: head {m['best']:.4f} (epoch {m['best_epoch']} of {m['epochs_run']}), frozen {m['frozen']:.4f}",
            f"{meta['n_params']} parameters, head.pt {meta['files']['size_bytes']} bytes, trained in {meta['train_sec']:.1f} s",
        ]
    )


STEP = Step(
    name="train_head",
    config=TrainHeadConfig,
    summary="Train a head on a folder's frozen backbone frames; writes a head version folder (needs embed --frames).",
    example="research-job train-head --version-dir artifacts/v1_model_fusion-musicnn-msd_musicnn-mtt --objective contrastive "
    "--architecture mlp --split album --epochs 30",
    run=run,
    check=check,
    show=lambda cfg, meta: format_summary(meta),
    pipeline=None,
)
