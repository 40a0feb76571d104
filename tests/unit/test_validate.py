"""validate: a complete folder passes; each corruption is reported, naming the file and the mismatch."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from research_job.config import CommonConfig
from research_job.errors import ArtifactError
from research_job.layout import ArtifactLayout
from research_job.steps import build_index, embed, evaluate, validate
from research_job.steps.build_index import BuildIndexConfig
from research_job.steps.embed import EmbedConfig
from research_job.steps.evaluate import EvaluateConfig
from research_job.steps.validate import ValidateConfig
from tests.unit._core_corpus import make_corpus


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good")
    common = make_corpus(root, 22050, n=10, model="dsp-stats")
    embed.run(EmbedConfig(common=common))
    build_index.run(BuildIndexConfig(common=common, recall_queries=10))
    evaluate.run(EvaluateConfig(common=common, bootstrap_resamples=50))
    return common.layout.version_dir


def _copy(good: Path, tmp_path: Path) -> ArtifactLayout:
    dst = tmp_path / "v1_model_test"
    shutil.copytree(good, dst)
    return ArtifactLayout(dst)


def test_good_folder_is_valid(good: Path) -> None:
    assert validate.check(ArtifactLayout(good)) == []
    assert validate.run(ValidateConfig(common=CommonConfig(version_dir=good)))["problems"] == []


def _truncate(layout: ArtifactLayout) -> None:
    data = layout.embeddings_f32.read_bytes()
    layout.embeddings_f32.write_bytes(data[:-4])


def _wrong_count(layout: ArtifactLayout) -> None:
    meta = json.loads(layout.embeddings_meta.read_text())
    meta["count"] += 1
    layout.embeddings_meta.write_text(json.dumps(meta))


def _duplicate_id(layout: ArtifactLayout) -> None:
    ids = json.loads(layout.track_ids_json.read_text())
    ids["track_ids"][1] = ids["track_ids"][0]
    layout.track_ids_json.write_text(json.dumps(ids))


def _non_unit(layout: ArtifactLayout) -> None:
    x = np.fromfile(layout.embeddings_f32, dtype="<f4")
    x[:3] *= 1.5
    x.astype("<f4").tofile(layout.embeddings_f32)


def _bad_checksum(layout: ArtifactLayout) -> None:
    meta = json.loads(layout.index_meta.read_text())
    meta["indexes"][1]["sha256"] = "0" * 64
    layout.index_meta.write_text(json.dumps(meta))


def _schema_failure(layout: ArtifactLayout) -> None:
    res = json.loads(layout.eval_results.read_text())
    res["overall"]["metrics"]["precision_at_k"] = 1.5
    layout.eval_results.write_text(json.dumps(res))


def _nan_row(layout: ArtifactLayout) -> None:
    x = np.fromfile(layout.embeddings_f32, dtype="<f4")
    x[5] = np.nan
    x.astype("<f4").tofile(layout.embeddings_f32)


def _bad_csv_row(layout: ArtifactLayout) -> None:
    text = layout.tracks_csv.read_text().splitlines()
    text[2] = text[2].replace(",false", ",maybe")
    layout.tracks_csv.write_text("\n".join(text) + "\n")


def _index_wrong_size(layout: ArtifactLayout) -> None:
    # a valid hnswlib file of other vectors, with its sidecar checksum updated: only the element count is off
    from research_job.index.hnswlib_index import HnswlibIndex
    from research_job.provenance import sha256_file

    meta = json.loads(layout.index_meta.read_text())
    idx = HnswlibIndex.build(np.eye(meta["dim"], dtype=np.float32)[:3], {})
    idx.save(layout.hnsw_index)
    for e in meta["indexes"]:
        if e["name"] == "hnswlib":
            e["sha256"] = sha256_file(layout.hnsw_index)
            e["size_bytes"] = layout.hnsw_index.stat().st_size
    layout.index_meta.write_text(json.dumps(meta))


def _table_rewrite(layout: ArtifactLayout, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    # edit the neighbour table and update its sidecar checksum and size: only the values are wrong
    from research_job.provenance import sha256_file

    meta = json.loads(layout.index_meta.read_text())
    table = np.fromfile(layout.neighbors_table, dtype="<i4").reshape(meta["count"], meta["neighbors"]["k"])
    edit(table).astype("<i4").tofile(layout.neighbors_table)
    meta["neighbors"]["sha256"] = sha256_file(layout.neighbors_table)
    meta["neighbors"]["size_bytes"] = layout.neighbors_table.stat().st_size
    layout.index_meta.write_text(json.dumps(meta))


def _table_lists_self(layout: ArtifactLayout) -> None:
    def edit(t: np.ndarray) -> np.ndarray:
        t[3, 0] = 3
        return t

    _table_rewrite(layout, edit)


def _table_truncated(layout: ArtifactLayout) -> None:
    _table_rewrite(layout, lambda t: t[:-1])


def _eval_other_embeddings(layout: ArtifactLayout) -> None:
    res = json.loads(layout.eval_results.read_text())
    res["embeddings_sha256"] = "b" * 64
    layout.eval_results.write_text(json.dumps(res))


def _raw_tampered(layout: ArtifactLayout) -> None:
    raw = bytearray(layout.raw_f32.read_bytes())
    raw[5] ^= 0x10
    layout.raw_f32.write_bytes(bytes(raw))


def _sources_lack_a_track(layout: ArtifactLayout) -> None:
    """A fingerprint dropped, and the meta's checksum forged to match: the cover check must still see it."""
    from research_job.provenance import sha256_file

    src = json.loads(layout.embed_sources.read_text())
    src["tracks"] = src["tracks"][1:]
    layout.embed_sources.write_text(json.dumps(src))
    meta = json.loads(layout.embeddings_meta.read_text())
    meta["files"]["sources_sha256"] = sha256_file(layout.embed_sources)
    layout.embeddings_meta.write_text(json.dumps(meta))


CASES: list[tuple[Callable[[ArtifactLayout], None], str, str]] = [
    (_truncate, "embeddings.f32", "expected N x D x 4"),
    (_wrong_count, "embeddings_meta.json", "count 11 != 10"),
    (_duplicate_id, "track_ids.json", "uniqueItems|duplicate"),
    (_non_unit, "embeddings.f32", "not unit-norm"),
    (_bad_checksum, "faiss_hnsw.index", "sha256 differs"),
    (_schema_failure, "eval_results.json", "overall/metrics.*not valid"),
    (_nan_row, "embeddings.f32", "NaN/inf"),
    (_bad_csv_row, "tracks_metadata.csv", "line 3: composer_missing .*maybe"),
    (_index_wrong_size, "hnsw.index", "holds 3 elements, expected 10 \\(not handed to hnswlib\\)"),
    (_eval_other_embeddings, "eval_results.json", "embeddings_sha256"),
    (_table_lists_self, "neighbors.i32", "1 rows list themselves, e.g. row 3"),
    (_table_truncated, "neighbors.i32", "bytes, expected count 10 x k 20"),
    (_raw_tampered, "raw.f32", "sha256 differs from .*sources.json raw.sha256"),
    (_sources_lack_a_track, "sources.json", "fingerprints do not cover .*without a fingerprint: \\['t00'\\]"),
]


@pytest.mark.parametrize(("corrupt", "where", "what"), CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_each_corruption_is_reported(
    good: Path, tmp_path: Path, corrupt: Callable, where: str, what: str
) -> None:
    layout = _copy(good, tmp_path)
    corrupt(layout)
    problems = validate.check(layout)

    assert any(where in p and re.search(what, p) for p in problems), problems
    with pytest.raises(ArtifactError, match="problem"):
        validate.run(ValidateConfig(common=CommonConfig(version_dir=layout.version_dir)))


@pytest.fixture(scope="module")
def subset(good: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The good folder evaluated as ``evaluate --tracks multi_label_albums`` writes it."""
    layout = _copy(good, tmp_path_factory.mktemp("subset"))
    cfg = EvaluateConfig(common=CommonConfig(version_dir=layout.version_dir), bootstrap_resamples=50)
    evaluate.run(replace(cfg, tracks="multi_label_albums"))
    return layout.version_dir


def test_an_evaluation_of_a_track_subset_is_valid(subset: Path) -> None:
    ev = json.loads(ArtifactLayout(subset).eval_results.read_text())
    assert ev["tracks"] == "multi_label_albums" and 1 <= ev["n_tracks"] <= 10
    assert validate.check(ArtifactLayout(subset)) == []


@pytest.mark.parametrize(
    ("n_tracks", "what"),
    [
        (11, "n_tracks 11 of tracks 'multi_label_albums' is not 1..10 embeddings"),
        (0, "n_tracks 0 of tracks 'multi_label_albums' is not 1..10 embeddings"),
        # within the range, but not the number of tracks the subset holds: the recomputation tells
        (4, "value(s) differ from a recomputation from embeddings.f32 and tracks_metadata.csv (k 5, label "
         "composer, tracks multi_label_albums, rerank none, 50 resamples, seed 0): n_tracks recorded 4, recomputed"),
    ],
)  # fmt: skip
def test_a_forged_track_count_of_a_subset_is_refused(
    subset: Path, tmp_path: Path, n_tracks: int, what: str
) -> None:
    layout = _copy(subset, tmp_path)
    ev = json.loads(layout.eval_results.read_text())
    ev["n_tracks"] = n_tracks
    layout.eval_results.write_text(json.dumps(ev))
    assert any("eval_results.json" in p and what in p for p in validate.check(layout)), validate.check(layout)


def test_all_problems_reported_at_once(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    _truncate(layout)
    _schema_failure(layout)
    _bad_checksum(layout)
    problems = validate.check(layout)
    assert len(problems) >= 3
