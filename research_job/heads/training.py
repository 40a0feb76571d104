"""Train a head on frozen frames: pytorch-metric-learning objectives, validation, early stopping, exact resume.

Objectives (pytorch-metric-learning; nothing hand-written):

* ``contrastive`` (no labels): a batch of training tracks, two views of each: a random crop of its clean frames
  and a random crop of one of its augmented views (``Frames.view``; another clean crop when the folder has none,
  or ``use_views`` is off). ``losses.NTXentLoss(temperature)`` with the batch's track index as the label, each
  view scored against the other views (``ref_emb``), both ways and averaged: the other view of the same track is
  the positive, the other tracks' views are the in-batch negatives. (Over all 2B embeddings at once pml forms
  every positive pair x negative, 8 B^3 terms, 0.5 s a batch at B = 128 on 2 cores; this form is 2 B^3.)
* ``triplet`` (a metadata label): ``samplers.MPerClassSampler(labels, m)`` fills each batch with m crops of each
  of batch/m labels, ``miners.TripletMarginMiner(margin, type_of_triplets=miner)`` picks the triplets and
  ``losses.TripletMarginLoss(margin)``, both on ``distances.CosineSimilarity()``, scores them. Unlabelled tracks
  are left out.

Validation after each epoch drives early stopping (``patience`` epochs without improvement; the best epoch's
weights are the result): contrastive -> excerpt-style Recall@1 among the val tracks (query: view 0 of each val
track, or its centred ``min_crop`` crop without views; candidates: the val tracks' clean frames through the
head); triplet -> Precision@5 by label among the labelled val tracks. The same figures on the frozen pooled
features (mean frame, L2) are computed once, for comparison.

Reproducible and resumable: ``torch.set_num_threads(threads)``; epoch e draws everything (batch order, crops,
views, the sampler, dropout) from generators seeded by ``(seed, e)``. After every epoch the checkpoint
(``head/checkpoint.pt``: model, optimiser, scheduler, epoch, history, best weights, patience count, RNG states,
the configuration and its fingerprint) is written atomically; a rerun with the same fingerprint resumes after
the last finished epoch and ends with the same weights as an uninterrupted run. A checkpoint of another
configuration is discarded (logged, naming the keys that differ) and training starts fresh.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from research_job.errors import ArtifactError
from research_job.frames import Frames
from research_job.heads.apply import embed_frames, forward_batch
from research_job.heads.arch import Standardize, build
from research_job.heads.data import PartFrames, Split, crop, fixed_crop
from research_job.heads.meta import HeadParams, differences
from research_job.io.atomic import write_bytes

LOG = logging.getLogger(__name__)
#: the validation figure of each objective
METRIC_OF = {"contrastive": "recall_at_1", "triplet": "precision_at_5"}
P_AT = 5


# ---------------------------------------------------------------- metrics (validation, tests, bench)


def excerpt_recall_at_1(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Share of queries i whose best candidate (float64 cosine of unit rows, ties to the lower row) is row i."""
    scores = np.asarray(queries, np.float64) @ np.asarray(candidates, np.float64).T
    return float(np.mean(np.argmax(scores, axis=1) == np.arange(scores.shape[0])))


def label_precision_at_k(vectors: np.ndarray, labels: Sequence[str], k: int = P_AT) -> float:
    """Mean over rows of the share of same-label rows among its top ``k`` other rows (cosine, ties by row)."""
    x = np.asarray(vectors, np.float64)
    n = x.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return 0.0
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    lab = np.asarray(labels)
    hits = []
    for i in range(n):
        top = np.lexsort((np.arange(n), -scores[i]))[:k]
        hits.append(float(np.mean(lab[top] == lab[i])))
    return float(np.mean(hits))


def pooled_unit(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The frozen reference: each array's mean frame, L2-normalised (float32 [n, D])."""
    x = np.stack([np.asarray(f, np.float64).mean(axis=0) for f in frames])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- reproducibility


def epoch_seed(seed: int, epoch: int) -> int:
    """The 32-bit seed of epoch ``epoch``'s generators (torch, numpy, the sampler)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@contextlib.contextmanager
def _pml_numpy(seed: int) -> Iterator[None]:
    """Seed the numpy generator pytorch-metric-learning's samplers draw from, and put the old one back."""
    from pytorch_metric_learning.utils import common_functions as c_f

    old = c_f.NUMPY_RANDOM
    c_f.NUMPY_RANDOM = np.random.RandomState(seed)
    try:
        yield
    finally:
        c_f.NUMPY_RANDOM = old


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- the objectives


@dataclass
class _Data:
    """What an epoch reads: the train and val parts, labels as ints, the fixed validation queries."""

    train: PartFrames
    val: PartFrames
    train_rows: list[int]
    val_rows: list[int]
    train_labels: np.ndarray | None
    val_labels: list[str] | None
    crop_limit: int


def _second_view(d: _Data, row: int, rng: np.random.Generator, p: HeadParams) -> np.ndarray:
    if p.use_views and d.train.n_views:
        return crop(d.train.view(row, int(rng.integers(d.train.n_views))), rng, p.min_crop, d.crop_limit)
    return crop(d.train.of(row), rng, p.min_crop, d.crop_limit)


def _contrastive_batches(
    d: _Data, rng: np.random.Generator, p: HeadParams
) -> Iterator[tuple[list[np.ndarray], Any]]:
    order = rng.permutation(np.asarray(d.train_rows))
    for s in range(0, order.size, p.batch_size):
        batch = [int(r) for r in order[s : s + p.batch_size]]
        if len(batch) < 2:
            continue  # a lone track has no negative
        a = [crop(d.train.of(r), rng, p.min_crop, d.crop_limit) for r in batch]
        b = [_second_view(d, r, rng, p) for r in batch]
        yield a + b, torch.arange(len(batch))


def triplet_batch_size(p: HeadParams, n_classes: int) -> int:
    """The batch size MPerClassSampler can fill: at most m x classes, a multiple of m.

    Raises:
        ArtifactError: fewer than two training labels (no negatives).
    """
    if n_classes < 2:
        raise ArtifactError(f"triplet training needs at least 2 labels in the train split, found {n_classes}")
    return min(p.batch_size, p.m_per_class * n_classes) // p.m_per_class * p.m_per_class


def _triplet_batches(
    d: _Data, rng: np.random.Generator, p: HeadParams, epoch_seed_: int
) -> Iterator[tuple[list[np.ndarray], Any]]:
    from pytorch_metric_learning import samplers

    assert d.train_labels is not None
    n_classes = int(np.unique(d.train_labels).size)
    bs = triplet_batch_size(p, n_classes)
    sampler = samplers.MPerClassSampler(
        d.train_labels, m=p.m_per_class, batch_size=bs, length_before_new_iter=max(len(d.train_rows), bs)
    )
    with _pml_numpy(epoch_seed_):
        picks = list(iter(sampler))
    for s in range(0, len(picks) - bs + 1, bs):
        idx = picks[s : s + bs]
        seqs = []
        for i in idx:
            row = d.train_rows[int(i)]
            use_view = p.use_views and d.train.n_views and rng.random() < 0.5
            seqs.append(
                _second_view(d, row, rng, p)
                if use_view
                else crop(d.train.of(row), rng, p.min_crop, d.crop_limit)
            )
        yield seqs, torch.as_tensor(d.train_labels[np.asarray(idx)])


class _Objective:
    """The loss (and miner) of an objective, from pytorch-metric-learning."""

    def __init__(self, p: HeadParams) -> None:
        from pytorch_metric_learning import distances, losses, miners

        self.p = p
        if p.objective == "contrastive":
            self.loss = losses.NTXentLoss(temperature=p.temperature)
            self.miner = None
        else:
            self.loss = losses.TripletMarginLoss(margin=p.margin, distance=distances.CosineSimilarity())
            self.miner = miners.TripletMarginMiner(
                margin=p.margin, type_of_triplets=p.miner, distance=distances.CosineSimilarity()
            )

    def __call__(self, emb: Any, labels: Any) -> Any:
        labels = labels.to(emb.device)
        if self.miner is None:
            # each view against the other view of every track (ref_emb), both ways: 2 B^3 pair terms where
            # the 2B-embedding form costs 8 B^3 (pml forms every positive pair x negative)
            # ref_labels must be another tensor object: pml drops the diagonal (here: every positive) when
            # ``ref_labels is labels``, taking it for a self-comparison
            a, b, ref = emb[: labels.numel()], emb[labels.numel() :], labels.clone()
            there = self.loss(a, labels, ref_emb=b, ref_labels=ref)
            return 0.5 * (there + self.loss(b, labels, ref_emb=a, ref_labels=ref))
        return self.loss(emb, labels, self.miner(emb, labels))

    def batches(
        self, d: _Data, rng: np.random.Generator, seed: int
    ) -> Iterator[tuple[list[np.ndarray], Any]]:
        if self.p.objective == "contrastive":
            return _contrastive_batches(d, rng, self.p)
        return _triplet_batches(d, rng, self.p, seed)


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Validation:
    """The fixed validation set of an objective: query and candidate frames (or labelled tracks)."""

    metric: str
    candidates: list[np.ndarray]
    queries: list[np.ndarray] | None
    labels: list[str] | None

    def score(self, embed: Callable[[list[np.ndarray]], np.ndarray]) -> float:
        cand = embed(self.candidates)
        if self.queries is not None:
            return excerpt_recall_at_1(embed(self.queries), cand)
        assert self.labels is not None
        return label_precision_at_k(cand, self.labels, P_AT)


def _validation(d: _Data, p: HeadParams) -> _Validation:
    cands = [d.val.of(r) for r in d.val_rows]
    if p.objective == "triplet":
        return _Validation(METRIC_OF["triplet"], cands, None, d.val_labels)
    if p.use_views and d.val.n_views:
        queries = [d.val.view(r, 0) for r in d.val_rows]
    else:
        queries = [fixed_crop(d.val.of(r), p.min_crop, d.crop_limit) for r in d.val_rows]
    return _Validation(METRIC_OF["contrastive"], cands, queries, None)


# ---------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, fingerprint: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of this configuration, or None (another configuration's is discarded, saying why)."""
    if not path.is_file():
        return None
    try:
        ck: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable checkpoint is discarded, with the reason
        LOG.warning("Discarding %s: unreadable (%s); training from the start", path, e)
        path.unlink(missing_ok=True)
        return None
    if ck.get("fingerprint") != fingerprint:
        diff = differences(ck.get("config", {}), config) or ["fingerprint"]
        LOG.warning(
            "Discarding %s: made with another configuration (differs in %s); training from the start",
            path,
            ", ".join(diff),
        )
        path.unlink(missing_ok=True)
        return None
    return ck


# ---------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What training produced: the best epoch's module and everything head_meta.json and curves.json record."""

    module: Any
    module_params: dict[str, Any]
    metric: str
    best_metric: float
    best_epoch: int
    frozen_metric: float
    history: list[dict[str, Any]]
    stopped_early: bool
    resumed_at: int | None
    train_sec: float
    batch_size: int
    n_train_used: int
    n_val_used: int
    train_rows_read: set[int] = field(default_factory=set)
    val_rows_read: set[int] = field(default_factory=set)


def _prepare(frames: Frames, split: Split, labels: Sequence[str | None] | None, p: HeadParams) -> _Data:
    """The parts the objective uses (triplet: labelled tracks only) and the labels as integers.

    Raises:
        ArtifactError: a part is empty for this objective.
    """
    train_rows, val_rows = list(split.train), list(split.val)
    train_labels = val_labels = None
    if p.objective == "triplet":
        assert labels is not None
        train_rows = [r for r in train_rows if labels[r] is not None]
        val_rows = [r for r in val_rows if labels[r] is not None]
        names = sorted({str(labels[r]) for r in train_rows})
        code = {n: i for i, n in enumerate(names)}
        train_labels = np.asarray([code[str(labels[r])] for r in train_rows], np.int64)
        val_labels = [str(labels[r]) for r in val_rows]
    if len(train_rows) < 2 or len(val_rows) < 2:
        raise ArtifactError(
            f"{p.objective} training needs >= 2 train and >= 2 val tracks (labelled, for triplet); "
            f"got {len(train_rows)} and {len(val_rows)}"
        )
    limit = p.max_frames if p.architecture == "sequence" else 1 << 30
    return _Data(
        PartFrames(frames, frozenset(train_rows), "train"),
        PartFrames(frames, frozenset(val_rows), "val"),
        train_rows,
        val_rows,
        train_labels,
        val_labels,
        limit,
    )


def train(
    frames: Frames,
    split: Split,
    labels: Sequence[str | None] | None,
    params: HeadParams,
    *,
    checkpoint: Path,
    fingerprint: str,
    config: dict[str, Any],
    device: str = "cpu",
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a head on ``frames`` (rows of ``split.train`` only), validating on ``split.val``.

    Args:
        labels: per row its label (triplet; None = unlabelled), or None for contrastive.
        checkpoint: where the epoch checkpoint lives (resumed when its fingerprint is ``fingerprint``).
        config: the configuration the fingerprint covers (named in the log when a checkpoint is discarded).
        device: a resolved torch device.
        on_epoch_end: called with the number of finished epochs after each checkpoint (tests: raise to
            simulate an interruption).

    Raises:
        ArtifactError: too few train / val tracks or labels.
    """
    params.check()
    with _threads(params.threads):
        return _train(frames, split, labels, params, checkpoint, fingerprint, config, device, on_epoch_end)


@dataclass
class _Run:
    """One training run's objects and the state a checkpoint carries (``st``)."""

    p: HeadParams
    d: _Data
    module: Any
    module_params: dict[str, Any]
    opt: Any
    sched: Any
    objective: _Objective
    val: _Validation
    device: str
    st: dict[str, Any] = field(
        default_factory=lambda: {
            "epoch": 0,
            "history": [],
            "best_metric": -1.0,
            "best_epoch": 0,
            "bad_epochs": 0,
            "best_state": None,
            "finished": False,
        }  # fmt: skip
    )
    resumed_at: int | None = None

    def embed(self, seqs: list[np.ndarray]) -> np.ndarray:
        return embed_frames(self.module, seqs, max_frames=self.p.max_frames, device=self.device)


def _setup(d: _Data, in_dim: int, p: HeadParams, device: str) -> _Run:
    """The seeded module (standardised on the train frames), AdamW, the cosine schedule, loss and validation."""
    torch.manual_seed(p.seed)
    module_params = p.module_params(in_dim)
    module = build(p.architecture, module_params)
    if p.standardize:
        standardize = module.get_submodule("standardize")
        assert isinstance(standardize, Standardize)
        standardize.fit(*d.train.standardization())
    module = module.to(device)
    opt = torch.optim.AdamW(module.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p.epochs)
    return _Run(p, d, module, module_params, opt, sched, _Objective(p), _validation(d, p), device)


def _restore(run: _Run, ck: dict[str, Any]) -> None:
    """Continue from a checkpoint of this configuration: weights, optimiser, schedule, RNG, loop state."""
    run.module.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    run.sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"]["torch"])
    run.st = {k: ck[k] for k in run.st}
    run.resumed_at = int(run.st["epoch"])


def _epoch(run: _Run, e: int) -> dict[str, Any]:
    """Train epoch ``e`` (every draw seeded by ``(seed, e)``), step the schedule, validate; its history entry."""
    t0 = time.perf_counter()
    seed = epoch_seed(run.p.seed, e)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    run.module.train()
    losses, n = 0.0, 0
    for seqs, lab in run.objective.batches(run.d, rng, seed):
        loss = run.objective(forward_batch(run.module, seqs, run.device), lab)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        losses += float(loss.detach())
        n += 1
    lr = float(run.opt.param_groups[0]["lr"])
    run.sched.step()
    metric = run.val.score(run.embed)
    return {"epoch": e + 1, "train_loss": losses / max(n, 1), "val_metric": metric, "lr": lr, "batches": n,
            "sec": round(time.perf_counter() - t0, 4), "seed": seed}  # fmt: skip


def _record(
    run: _Run, entry: dict[str, Any], checkpoint: Path, fingerprint: str, config: dict[str, Any]
) -> None:
    """Fold an epoch into the state (best weights, patience) and write the checkpoint atomically."""
    st, seed = run.st, entry.pop("seed")
    st["epoch"] = entry["epoch"]
    st["history"].append(entry)
    if entry["val_metric"] > st["best_metric"] + 1e-9:
        st.update(best_metric=entry["val_metric"], best_epoch=entry["epoch"], bad_epochs=0)
        st["best_state"] = copy.deepcopy({k: v.detach().cpu() for k, v in run.module.state_dict().items()})
    else:
        st["bad_epochs"] += 1
    st["finished"] = st["bad_epochs"] >= run.p.patience or st["epoch"] >= run.p.epochs
    _save_checkpoint(
        checkpoint,
        {
            **st,
            "fingerprint": fingerprint,
            "config": config,
            "model": run.module.state_dict(),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "epoch_seed": seed},
        },  # fmt: skip
    )


def _result(run: _Run, frozen: float) -> TrainResult:
    """The best epoch's module and the figures of the run."""
    st, d, p = run.st, run.d, run.p
    run.module.load_state_dict(st["best_state"])
    run.module.eval()
    hist = st["history"]
    return TrainResult(
        module=run.module,
        module_params=run.module_params,
        metric=run.val.metric,
        best_metric=float(st["best_metric"]),
        best_epoch=int(st["best_epoch"]),
        frozen_metric=float(frozen),
        history=hist,
        stopped_early=int(st["epoch"]) < p.epochs,
        resumed_at=run.resumed_at,
        train_sec=round(float(sum(h["sec"] for h in hist)), 3),
        batch_size=p.batch_size
        if d.train_labels is None
        else triplet_batch_size(p, int(np.unique(d.train_labels).size)),
        n_train_used=len(d.train_rows),
        n_val_used=len(d.val_rows),
        train_rows_read=set(d.train.touched),
        val_rows_read=set(d.val.touched),
    )


def _train(
    frames: Frames,
    split: Split,
    labels: Sequence[str | None] | None,
    p: HeadParams,
    checkpoint: Path,
    fingerprint: str,
    config: dict[str, Any],
    device: str,
    on_epoch_end: Callable[[int], None] | None,
) -> TrainResult:
    run = _setup(_prepare(frames, split, labels, p), int(frames.meta["dim"]), p, device)
    frozen = run.val.score(pooled_unit)
    ck = _load_checkpoint(checkpoint, fingerprint, config)
    if ck is not None:
        _restore(run, ck)
        LOG.info("Resuming train-head from %s after epoch %d", checkpoint, run.resumed_at)
    bar = tqdm(total=p.epochs, initial=int(run.st["epoch"]), desc="train-head", unit="epoch", disable=None)
    try:
        while not run.st["finished"] and run.st["epoch"] < p.epochs:
            entry = _epoch(run, int(run.st["epoch"]))
            _record(run, entry, checkpoint, fingerprint, config)
            bar.update(1)
            bar.set_postfix(
                loss=f"{entry['train_loss']:.4f}", **{run.val.metric: f"{entry['val_metric']:.4f}"}
            )
            if on_epoch_end is not None:
                on_epoch_end(entry["epoch"])
    finally:
        bar.close()
    return _result(run, frozen)
