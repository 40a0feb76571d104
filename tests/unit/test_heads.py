"""train-head on seeded synthetic frame folders: each head beats the frozen features where they are weak by design,
splits never leak, an interrupted run resumes to the same weights, and the head folder validates and indexes.

Data (tests/helpers/head_factory.py): tracks as mixtures of shared sources plus a strong shared nuisance whose
views are offset, noisier crops (contrastive), and labelled tracks whose label signal is dominated by a per-album
offset with albums mixing labels (triplet). Every figure is compared with the frozen pooled features of the same
tracks in the same test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from research_job import artifact_checks
from research_job.cli import cli
from research_job.config import CommonConfig
from research_job.errors import ArtifactError, ConfigError, ModelError
from research_job.frames import load_frames
from research_job.heads import is_head_folder, load_head, read_head_meta, split_rows
from research_job.heads import test_rows as head_test_rows
from research_job.heads.data import PartFrames, labels_of, make_split
from research_job.heads.folder import HeadJob, train_head_folder
from research_job.heads.meta import HeadParams
from research_job.heads.training import excerpt_recall_at_1, label_precision_at_k, pooled_unit, train
from research_job.layout import ArtifactLayout
from research_job.metadata import read_tracks_csv
from tests.helpers.head_factory import labelled_set, mixture_set, write_frame_folder

SMALL = {"hidden": 128, "out_dim": 32, "batch_size": 64, "threads": 1}


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory: pytest.TempPathFactory) -> ArtifactLayout:
    return write_frame_folder(
        tmp_path_factory.mktemp("mix") / "v1_model_fake-frames", mixture_set(240, seed=1)
    )


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> ArtifactLayout:
    data = labelled_set(288, seed=2, missing_every=23)
    return write_frame_folder(tmp_path_factory.mktemp("lab") / "v1_model_fake-frames", data)


@pytest.fixture(scope="module")
def contrastive_head(mixtures: ArtifactLayout) -> ArtifactLayout:
    params = HeadParams(objective="contrastive", epochs=30, patience=5, **SMALL)
    meta = train_head_folder(
        HeadJob(
            source=mixtures,
            name="mix",
            params=params,
            artifacts_root=mixtures.version_dir.parent,
            split_by="track",
        )
    )
    return ArtifactLayout(mixtures.version_dir.parent / meta["artifact_version"])


# ---------------------------------------------------------------- (1) contrastive beats frozen on excerpts


def test_contrastive_head_raises_excerpt_recall_over_frozen(contrastive_head: ArtifactLayout) -> None:
    head = load_head(contrastive_head)
    frames = load_frames(contrastive_head)
    rows = head_test_rows(contrastive_head)
    assert len(rows) == 60
    queries = [frames.view(r, 1) for r in rows]  # view 1: never a validation query (those are view 0)
    clean = [frames.of(r) for r in rows]
    frozen = excerpt_recall_at_1(pooled_unit(queries), pooled_unit(clean))
    trained = excerpt_recall_at_1(head.embed(queries), head.embed(clean))
    assert trained >= 0.75 and trained >= frozen + 0.2, (trained, frozen)
    meta = head.meta
    assert meta["metrics"]["best"] > meta["metrics"]["frozen"] and meta["metrics"]["name"] == "recall_at_1"
    assert meta["model_name"] == "fake-frames+head:mix" and contrastive_head.version_dir.name == (
        "v1_model_fake-frames_head-mix"
    )


# ---------------------------------------------------------------- (2) triplet beats frozen on new labels


def test_triplet_head_raises_held_out_precision_on_new_labels(
    labelled: ArtifactLayout, tmp_path: Path
) -> None:
    params = HeadParams(objective="triplet", epochs=40, patience=8, **SMALL)
    dest = ArtifactLayout(tmp_path / "v1_model_trip")
    meta = train_head_folder(
        HeadJob(source=labelled, name="trip", params=params, dest=dest, split_by="label", label="composer")
    )
    assert (
        meta["label"] == "composer" and meta["split"]["by"] == "label" and meta["split"]["n_unlabelled"] > 0
    )
    rows = head_test_rows(dest)
    labels = labels_of(read_tracks_csv(dest.tracks_csv), load_frames_ids(dest), "composer")
    frames = load_frames(dest)
    clean = [frames.of(r) for r in rows]
    lab = [str(labels[r]) for r in rows]
    frozen = label_precision_at_k(pooled_unit(clean), lab)
    trained = label_precision_at_k(load_head(dest).embed(clean), lab)
    assert trained >= 0.55 and trained >= frozen + 0.2, (trained, frozen)
    # the unlabelled tracks went to train and were left out of triplet training
    assert meta["split"]["n_train_used"] == meta["split"]["counts"]["train"] - meta["split"]["n_unlabelled"]


def load_frames_ids(layout: ArtifactLayout) -> list[str]:
    from research_job.embeddings import load_embeddings

    return load_embeddings(layout)[1]


# ---------------------------------------------------------------- (3) no leak


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_split_keeps_labels_disjoint(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups: list[str | None] = [None if i % 11 == 0 else f"c{int(rng.integers(0, 20))}" for i in range(300)]
    s = make_split(groups, "label", val_fraction=0.15, test_fraction=0.25, seed=seed)
    parts = {p: set(s.part(p)) for p in ("train", "val", "test")}
    assert set().union(*parts.values()) == set(range(300)) and sum(len(p) for p in parts.values()) == 300
    lab = {p: {groups[r] for r in rows} for p, rows in parts.items()}
    assert (
        not (lab["test"] & lab["train"])
        and not (lab["val"] & lab["train"])
        and not (lab["val"] & lab["test"])
    )
    assert None not in lab["test"] | lab["val"], "unlabelled tracks go to train only"
    assert abs(len(parts["test"]) - 75) < 30 and len(parts["val"]) >= 30
    assert make_split(groups, "label", val_fraction=0.15, test_fraction=0.25, seed=seed) == s, "seeded"
    albums = [f"a{i // 7}" for i in range(300)]
    a = make_split(albums, "album", val_fraction=0.15, test_fraction=0.25, seed=seed)
    assert not ({albums[r] for r in a.test} & {albums[r] for r in a.train})


def test_split_refuses_what_cannot_be_filled() -> None:
    with pytest.raises(ArtifactError, match="cannot fill every part"):
        make_split(["a", "a", "b", "b"], "label", val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(ConfigError, match="val \\+ test < 1"):
        make_split(["a"] * 9, "track", val_fraction=0.5, test_fraction=0.5, seed=0)
    with pytest.raises(ConfigError, match="Unknown split 'composer'. Known: album, label, track"):
        make_split(["a"] * 9, "composer", val_fraction=0.2, test_fraction=0.2, seed=0)


def test_training_reads_no_frame_of_a_val_or_test_track(labelled: ArtifactLayout, tmp_path: Path) -> None:
    frames = load_frames(labelled)
    labels = labels_of(read_tracks_csv(labelled.tracks_csv), load_frames_ids(labelled), "composer")
    split = make_split(labels, "label", val_fraction=0.15, test_fraction=0.25, seed=3)
    params = HeadParams(objective="triplet", epochs=2, **SMALL)
    res = train(frames, split, labels, params, checkpoint=tmp_path / "ck.pt", fingerprint="x", config={})
    assert res.train_rows_read and res.train_rows_read <= set(split.train)
    assert res.val_rows_read <= set(split.val)
    assert not (res.train_rows_read & (set(split.test) | set(split.val)))
    fence = PartFrames(frames, frozenset(split.train), "train")
    with pytest.raises(ArtifactError, match=f"row {split.test[0]} is not in the train split"):
        fence.view(split.test[0], 0) if frames.n_views else fence.of(split.test[0])


# ---------------------------------------------------------------- (4) resume


class Interrupted(Exception):
    pass


def _stop_at(n: int):  # noqa: ANN202 - a test hook
    def hook(epoch: int) -> None:
        if epoch == n:
            raise Interrupted

    return hook


def test_resume_after_interruption_gives_the_same_weights(mixtures: ArtifactLayout, tmp_path: Path) -> None:
    params = HeadParams(objective="contrastive", epochs=5, patience=10, dropout=0.2, **SMALL)

    def job(dest: str) -> HeadJob:
        return HeadJob(
            source=mixtures, name="r", params=params, dest=ArtifactLayout(tmp_path / dest), split_by="album"
        )

    whole = train_head_folder(job("v1_model_whole"))

    resumed_dir = ArtifactLayout(tmp_path / "v1_model_resumed")
    with pytest.raises(Interrupted):
        train_head_folder(job("v1_model_resumed"), on_epoch_end=_stop_at(3))
    assert resumed_dir.head_checkpoint.is_file() and not is_head_folder(resumed_dir)
    resumed = train_head_folder(job("v1_model_resumed"))
    assert resumed["metrics"]["resumed_at_epoch"] == 3 and whole["metrics"]["resumed_at_epoch"] is None
    assert not resumed_dir.head_checkpoint.exists()
    a = torch.load(tmp_path / "v1_model_whole/head/head.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed_dir.head_pt, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["files"]["head_sha256"] == resumed["files"]["head_sha256"]
    assert whole["split"] == resumed["split"] and whole["metrics"]["best"] == resumed["metrics"]["best"]
    # the same configuration again: the finished head is reused, not retrained
    assert train_head_folder(job("v1_model_resumed"))["created_at"] == resumed["created_at"]
    # another configuration on a finished head: refused, naming what differs, unless force
    other = HeadJob(source=mixtures, name="r", params=HeadParams(**{**params.to_json(), "lr": 0.01}),
                    dest=resumed_dir, split_by="album")  # fmt: skip
    with pytest.raises(ConfigError, match="differs in hyperparameters.lr"):
        train_head_folder(other)


def test_checkpoint_of_another_configuration_is_discarded(
    mixtures: ArtifactLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = ArtifactLayout(tmp_path / "v1_model_ck")
    base = HeadParams(objective="contrastive", epochs=3, patience=10, **SMALL)
    with pytest.raises(Interrupted):
        train_head_folder(
            HeadJob(source=mixtures, name="c", params=base, dest=dest, split_by="track"),
            on_epoch_end=_stop_at(1),
        )
    changed = HeadParams(**{**base.to_json(), "temperature": 0.2})
    meta = train_head_folder(HeadJob(source=mixtures, name="c", params=changed, dest=dest, split_by="track"))
    assert meta["metrics"]["resumed_at_epoch"] is None
    assert "made with another configuration (differs in hyperparameters.temperature)" in caplog.text


# ---------------------------------------------------------------- (5) the folder is a version folder


def test_head_folder_validates_and_indexes(contrastive_head: ArtifactLayout) -> None:
    from research_job.embeddings import load_embeddings
    from research_job.steps import build_index
    from research_job.steps.build_index import BuildIndexConfig

    layout = contrastive_head
    build_index.run(BuildIndexConfig(common=CommonConfig(version_dir=layout.version_dir), neighbors_k=5))
    assert artifact_checks.check(layout) == []
    vectors, ids, emeta = load_embeddings(layout)
    head = load_head(layout)
    frames = load_frames(layout)
    np.testing.assert_allclose(head.embed([frames.of(i) for i in range(5)]), vectors[:5], atol=1e-6)
    assert emeta["model"]["name"] == "fake-frames+head:mix" and emeta["dim"] == head.dim == 32
    frozen = np.fromfile(layout.head_frozen, dtype="<f4").reshape(len(ids), -1)
    src = ArtifactLayout(layout.version_dir.parent / "v1_model_fake-frames")
    np.testing.assert_array_equal(frozen, load_embeddings(src)[0])
    assert layout.frames_f16.stat().st_ino == src.frames_f16.stat().st_ino, "frames are hard links"
    assert layout.head_curves_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = read_head_meta(layout)
    assert set(meta["split"]["test"]) == {ids[r] for r in split_rows(layout, "test")}
    assert meta["files"]["size_bytes"] == layout.head_pt.stat().st_size and meta["n_params"] > 0
    # publish takes it as any version folder: the head files are published, the audio links are not
    from research_job.publish.manifest import build_manifest

    published = {f["path"] for f in build_manifest(layout)["files"]}
    assert {"head/head.pt", "head/frozen.f32", "head/head_meta.json", "embeddings/frames.f16"} <= published
    assert not any(p.startswith(("audio_cache/", "head/checkpoint")) for p in published)


def test_validate_catches_a_tampered_head(contrastive_head: ArtifactLayout, tmp_path: Path) -> None:
    import shutil

    copy = ArtifactLayout(tmp_path / contrastive_head.version_dir.name)
    shutil.copytree(contrastive_head.version_dir, copy.version_dir, symlinks=True)
    with open(copy.head_pt, "ab") as f:
        f.write(b"\0")
    with open(copy.head_frozen, "r+b") as f:
        f.write(b"\1\2\3\4")
    problems = " | ".join(artifact_checks.check(copy))
    assert "head.pt: sha256 differs from head_meta.json files.head_sha256" in problems
    assert "frozen.f32: sha256 differs from head_meta.json files.frozen_sha256" in problems
    with pytest.raises(ModelError, match="differs from head_meta.json files.head_sha256"):
        load_head(copy)


# ---------------------------------------------------------------- the sequence head and the step's checks


def test_sequence_head_embeds_long_tracks_in_chunks(mixtures: ArtifactLayout, tmp_path: Path) -> None:
    params = HeadParams(objective="contrastive", architecture="sequence", epochs=2, d_model=32, n_heads=2,
                        n_layers=1, max_frames=6, out_dim=16, threads=1, batch_size=64)  # fmt: skip
    dest = ArtifactLayout(tmp_path / "v1_model_seq")
    meta = train_head_folder(HeadJob(source=mixtures, name="seq", params=params, dest=dest, split_by="track"))
    head = load_head(dest)
    frames = load_frames(dest)
    long = frames.of(0)
    assert long.shape[0] > 6 and head.layers == ("frames",)
    one = head.embed([long])
    assert one.shape == (1, 16) and abs(float(np.linalg.norm(one)) - 1.0) < 1e-5
    # batch composition does not change a track's vector
    np.testing.assert_allclose(head.embed([frames.of(3), long])[1], one[0], atol=1e-5)
    assert meta["architecture"] == "sequence" and meta["hyperparameters"]["max_frames"] == 6


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--objective", "siamese"], "'siamese' is not one of 'contrastive', 'triplet'"),
        (["--val-fraction", "0.6", "--test-fraction", "0.5"], "val + test < 1"),
        (["--d-model", "30", "--n-heads", "4"], "d_model 30 must be a multiple of n_heads 4"),
        (["--name", "a/b"], "Head name 'a/b' is not usable"),
        (["--objective", "triplet", "--batch-size", "6"], "must hold at least two classes"),
    ],
)
def test_the_command_refuses_bad_values_before_writing(tmp_path: Path, args: list[str], said: str) -> None:
    root = tmp_path / "artifacts"
    res = CliRunner().invoke(cli, ["train-head", "--artifacts-root", str(root), *args])
    assert res.exit_code == 2, res.output
    assert said in " ".join(res.output.split()), res.output
    assert not root.exists()


def test_a_folder_without_frames_is_refused(tmp_path: Path) -> None:
    from tests.helpers.artifact_factory import make_version

    lay = make_version(tmp_path, n=12, dim=4, indexes=("faiss-flat",), with_eval=False).layout
    res = CliRunner().invoke(cli, ["train-head", "--version-dir", str(lay.version_dir)])
    assert res.exit_code == 2 and "embed with --frames <layers> first" in res.output, res.output
