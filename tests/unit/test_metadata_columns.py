"""The columnar metadata sidecar (research_job.metadata_columns): build-index writes it in embeddings row order,
it decodes to exactly the CSV's rows (nulls, non-ASCII, numbers kept), and validate refuses a tampered binary
file, a stale CSV and rows that differ from the CSV even with every checksum updated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from research_job import metadata_columns, schema
from research_job.config import CommonConfig
from research_job.layout import ArtifactLayout
from research_job.metadata import TrackRow, read_tracks_csv
from research_job.provenance import sha256_file
from research_job.steps import build_index, validate
from research_job.steps.build_index import BuildIndexConfig
from tests.helpers.artifact_factory import make_version

N, DIM = 40, 8


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lay = make_version(
        tmp_path_factory.mktemp("cols"), n=N, dim=DIM, n_composers=4, album_size=5, seed=2
    ).layout
    build_index.run(
        BuildIndexConfig(common=CommonConfig(version_dir=lay.version_dir), recall_queries=N, neighbors_k=0)
    )
    return lay.version_dir


def _copy(src: Path, tmp_path: Path) -> ArtifactLayout:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return ArtifactLayout(dst)


def _ids(layout: ArtifactLayout) -> list[str]:
    return json.loads(layout.track_ids_json.read_text())["track_ids"]


def test_build_index_writes_the_csv_rows_in_embeddings_order(good: Path) -> None:
    layout = ArtifactLayout(good)
    header = schema.read_artifact(layout.tracks_columns, "tracks_columns")
    ids = _ids(layout)
    assert header["count"] == len(ids) == N
    assert header["csv_sha256"] == sha256_file(layout.tracks_csv)
    assert header["sha256"] == sha256_file(layout.tracks_columns_bin)
    by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    assert metadata_columns.decode(layout.tracks_columns_bin.read_bytes(), header, ids) == [
        by_id[t] for t in ids
    ]
    assert validate.check(layout) == []


def test_encode_decode_keeps_nulls_text_and_numbers() -> None:
    rows = [
        TrackRow(
            "t1", "a1", 1, 'Sonate "Pathétique"', "beethoven", "k/1.m4a", 312.25, "Beethoven, L. van", False
        ),
        TrackRow("t2", "a1", None, "", None, "k/2.m4a", None, None, True),
        TrackRow("t3", "ä/2", 0, "夜想曲 \U0001f3b9", "chopin", "k/3.m4a", 0.0, "", False),
    ]
    data, columns = metadata_columns.encode(rows)
    header = {"columns": columns}
    assert metadata_columns.decode(data, header, ["t1", "t2", "t3"]) == rows
    assert all(s["offset"] % 8 == 0 for c in columns.values() for s in c.values() if isinstance(s, dict))


def test_a_tampered_binary_file_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    data = bytearray(layout.tracks_columns_bin.read_bytes())
    data[-1] ^= 0xFF
    layout.tracks_columns_bin.write_bytes(bytes(data))
    problems = validate.check(layout)
    assert any(str(layout.tracks_columns_bin) in p and "sha256" in p for p in problems), problems


def test_rows_that_differ_from_the_csv_are_refused_with_every_checksum_updated(
    good: Path, tmp_path: Path
) -> None:
    layout = _copy(good, tmp_path)
    ids = _ids(layout)
    by_id = {r.track_id: r for r in read_tracks_csv(layout.tracks_csv)}
    rows = [by_id[t] for t in ids]
    rows[3] = TrackRow(**{**rows[3].to_dict(), "title": "forged title"})
    data, columns = metadata_columns.encode(rows)
    layout.tracks_columns_bin.write_bytes(data)
    header = schema.read_artifact(layout.tracks_columns, "tracks_columns")
    header.update(columns=columns, size_bytes=len(data), sha256=sha256_file(layout.tracks_columns_bin))
    schema.write_artifact(layout.tracks_columns, "tracks_columns", header)
    problems = validate.check(layout)
    assert any("rows differ" in p and "first row 3" in p and "forged title" in p for p in problems), problems


def test_a_csv_rewritten_after_the_sidecar_is_stale(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    layout.tracks_csv.write_bytes(layout.tracks_csv.read_bytes() + b"")
    with open(layout.tracks_csv, "a", encoding="utf-8") as f:
        f.write("extra_track,a_x,1,Extra,,audio/a_x/extra.m4a,,,true\n")
    problems = validate.check(layout)
    assert any("csv_sha256" in p and "stale" in p for p in problems), problems


def test_a_sidecar_of_another_row_order_is_refused(good: Path, tmp_path: Path) -> None:
    """The Node API refuses a header whose track_ids_sha256 is not track_ids.json's: validate must too."""
    layout = _copy(good, tmp_path)
    header = json.loads(layout.tracks_columns.read_text())
    header["track_ids_sha256"] = "0" * 64
    layout.tracks_columns.write_text(json.dumps(header))
    problems = validate.check(layout)
    assert any("track_ids_sha256" in p and "another row order" in p for p in problems), problems


def test_a_binary_file_without_its_header_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    layout.tracks_columns.unlink()
    problems = validate.check(layout)
    assert any(str(layout.tracks_columns) in p for p in problems), problems


def test_without_a_csv_no_sidecar_is_written_and_an_old_one_is_removed(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    layout.tracks_csv.unlink()
    header = schema.read_artifact(layout.tracks_columns, "tracks_columns")
    assert (
        metadata_columns.write(layout, _ids(layout), header["track_ids_sha256"], header["artifact_version"])
        is None
    )
    assert not metadata_columns.exists(layout)
