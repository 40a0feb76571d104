"""validate refuses what a careful attacker or a careless operator leaves behind, that the schemas accept: forged
figures in eval/ (recomputed from the embeddings and the metadata), forged sample lists and Markdown, a reordered
or foreign neighbour table, vectors replaced with every checksum updated, a bad hnswlib graph, a release manifest
that does not match; each problem names the file and what differs, and the CLI exits 2.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import cli as cli_mod
from research_job import schema
from research_job.config import CommonConfig
from research_job.errors import ArtifactError
from research_job.layout import ArtifactLayout
from research_job.node_sample import sample_rows
from research_job.provenance import sha256_file
from research_job.steps import build_index, evaluate, validate
from research_job.steps.build_index import BuildIndexConfig
from research_job.steps.evaluate import EvaluateConfig
from research_job.steps.validate import ValidateConfig
from tests.helpers.artifact_factory import make_version

N, DIM, K = 90, 12, 10


def _build(root: Path, **index_opts: object) -> Path:
    """A complete folder made by the real steps: factory metadata + embeddings, build-index, evaluate."""
    lay = make_version(root, n=N, dim=DIM, n_composers=6, album_size=5, seed=3, with_eval=False).layout
    common = CommonConfig(version_dir=lay.version_dir)
    build_index.run(BuildIndexConfig(common=common, recall_queries=N, neighbors_k=K, **index_opts))  # type: ignore[arg-type]
    evaluate.run(EvaluateConfig(common=common, bootstrap_resamples=200, n_samples=6))
    return lay.version_dir


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("tamper"))


def _copy(src: Path, tmp_path: Path) -> ArtifactLayout:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return ArtifactLayout(dst)


def _edit_json(path: Path, name: str, edit: Callable[[dict], None]) -> None:
    """Edit a JSON artifact and write it back schema-valid (the schemas cannot tell)."""
    obj = json.loads(path.read_text())
    edit(obj)
    schema.write_artifact(path, name, obj)


def _table(layout: ArtifactLayout) -> np.ndarray:
    return np.fromfile(layout.neighbors_table, dtype="<i4").reshape(N, K)


def _write_table(layout: ArtifactLayout, table: np.ndarray) -> None:
    """Write the table and update its size and sha256 in index_meta.json: only the values are wrong."""
    table.astype("<i4").tofile(layout.neighbors_table)

    def upd(m: dict) -> None:
        m["neighbors"].update(
            sha256=sha256_file(layout.neighbors_table), size_bytes=layout.neighbors_table.stat().st_size
        )

    _edit_json(layout.index_meta, "index_meta", upd)


def _problems(layout: ArtifactLayout) -> list[str]:
    return validate.check(layout)


def test_the_untampered_folder_passes(good: Path) -> None:
    assert validate.check(ArtifactLayout(good)) == []
    res = CliRunner().invoke(cli_mod.cli, ["validate", "--version-dir", str(good)])
    assert res.exit_code == 0, res.output


# --- eval/: figures, samples, Markdown -------------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(obj: dict) -> None:
        *head, last = path.split(".")
        node = obj
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return edit


EVAL_FORGERIES = [
    ("overall.metrics.precision_at_k", 0.99),
    ("overall.metrics.mrr", 0.5),
    ("overall.random_baseline.hit_rate_at_k", 0.01),
    ("overall.confidence_intervals.precision_at_k.high", 1.0),
    ("exclude_same_album.metrics.ndcg_at_k", 0.9),
    ("per_composer.0.precision_at_k", 1.0),
    ("clustering.kmeans_nmi", 0.99),
    ("query_policy.n_excluded_missing_composer", 0),
    ("overall.n_queries", 10),
]


@pytest.mark.parametrize(("field", "value"), EVAL_FORGERIES, ids=[f for f, _ in EVAL_FORGERIES])
def test_a_forged_figure_in_eval_results_is_refused(
    good: Path, tmp_path: Path, field: str, value: object
) -> None:
    layout = _copy(good, tmp_path)
    before = json.loads(layout.eval_results.read_text())
    _edit_json(layout.eval_results, "eval_results", _set(field, value))
    assert json.loads(layout.eval_results.read_text()) != before
    problems = [p for p in _problems(layout) if "eval_results.json" in p]
    assert len(problems) == 1, problems
    # the problem names the field, the forged value and the recomputed one; never the file's content
    assert re.search(
        rf"{re.escape(field.replace('.0.', '[0].'))} recorded {json.dumps(value)}, recomputed \d", problems[0]
    )
    with pytest.raises(ArtifactError, match="eval_results.json"):
        validate.run(ValidateConfig(common=CommonConfig(version_dir=layout.version_dir)))
    res = CliRunner().invoke(cli_mod.cli, ["validate", "--version-dir", str(layout.version_dir)])
    assert res.exit_code == 2 and "eval_results.json" in res.output


def test_recorded_parameters_are_the_ones_recomputed_with(good: Path, tmp_path: Path) -> None:
    # k 5 -> 3 with every other figure kept: the figures are not those of k 3
    layout = _copy(good, tmp_path)
    _edit_json(layout.eval_results, "eval_results", _set("k", 3))
    (p,) = [p for p in _problems(layout) if "eval_results.json" in p]
    assert "(k 3," in p and re.search(r"eval_results.json: \d+ value\(s\) differ .*metrics\.\w+ recorded", p)


def test_an_eval_of_another_version_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    _edit_json(layout.eval_results, "eval_results", _set("artifact_version", "v1_model_other"))
    assert any(
        "eval_results.json: artifact_version 'v1_model_other' != embeddings_meta.json" in p
        for p in _problems(layout)
    )


SAMPLE_FORGERIES = [
    ("samples.0.hits.0.score", 0.5, "samples[0].hits[0].score recorded 0.5, recomputed"),
    ("samples.1.hits.2.relevant", True, "samples[1].hits[2].relevant recorded true, recomputed false"),
    ("samples.2.hits.1.track_id", "t00000", "samples[2].hits[1].track_id recorded 't00000', recomputed 't"),
    ("samples.3.query.title", "Something else", "samples[3].query.title recorded 'Something else'"),
]


@pytest.mark.parametrize(
    ("field", "value", "what"), SAMPLE_FORGERIES, ids=[f for f, _, _ in SAMPLE_FORGERIES]
)
def test_a_forged_sample_list_is_refused(
    good: Path, tmp_path: Path, field: str, value: object, what: str
) -> None:
    layout = _copy(good, tmp_path)
    sample = json.loads(layout.sample_top5_json.read_text())
    if field.endswith("relevant") and sample["samples"][1]["hits"][2]["relevant"]:
        value, what = False, what.replace("true, recomputed false", "false, recomputed true")
    _edit_json(layout.sample_top5_json, "sample_topk", _set(field, value))
    problems = _problems(layout)
    assert any("sample_top5.json" in p and what in p for p in problems), problems


def test_an_edited_markdown_sample_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    md = layout.sample_top5_md.read_text()
    layout.sample_top5_md.write_text(md.replace("| 1 |", "| 1 | [click](javascript:alert(1)) |", 1))
    problems = _problems(layout)
    assert any(
        "sample_top5.md: differs from the Markdown of sample_top5.json from line" in p for p in problems
    )
    assert not any("javascript" in p for p in problems)  # the content is never quoted


def test_samples_without_their_eval_are_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    layout.eval_results.unlink()
    assert any("sample_top5.json: present without eval_results.json" in p for p in _problems(layout))


# --- the neighbour table ----------------------------------------------------------------------------------


def test_a_reordered_neighbour_table_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    t = _table(layout)
    row = 17  # not one the Node API spot-checks: the order check covers every row
    assert row not in sample_rows(N, 8, 2)
    t[row, [0, 1]] = t[row, [1, 0]]
    _write_table(layout, t)
    problems = _problems(layout)
    assert any(f"neighbors.i32: row {row} column 1 lists row" in p and "best first" in p for p in problems), (
        problems
    )


def test_a_table_with_a_neighbour_left_out_is_refused(good: Path, tmp_path: Path) -> None:
    # still best first and well-formed: only a fresh exact ranking of the row tells (a row Node checks too)
    layout = _copy(good, tmp_path)
    t = _table(layout)
    row = int(sample_rows(N, 8, 2)[0])
    from research_job.embeddings import load_embeddings
    from research_job.search import search

    x, ids, _ = load_embeddings(layout)
    top = search(x, ids, x[[row]], [ids[row]], K + 1).rows[0]
    t[row] = top[1:]  # the true best neighbour dropped, the 11th appended
    _write_table(layout, t)
    problems = _problems(layout)
    assert any(
        f"neighbors.i32: row {row} column 0 lists row {top[1]}" in p
        and f"exact search ranks row {top[0]}" in p
        for p in problems
    ), problems


def test_padding_before_the_list_is_full_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    t = _table(layout)
    t[4, K - 1] = -1  # count - 1 >= k: Node refuses any padding
    _write_table(layout, t)
    assert any("neighbors.i32: -1 padding in row 4 column 9" in p for p in _problems(layout))


def test_a_re_ranked_table_is_checked_against_its_re_ranking(tmp_path: Path) -> None:
    src = _build(tmp_path / "src", rerank="csls")
    assert validate.check(ArtifactLayout(src)) == []
    layout = _copy(src, tmp_path / "copy")
    t = _table(layout)
    row = int(sample_rows(N, 8, 2)[1])
    t[row, [0, 1]] = t[row, [1, 0]]
    _write_table(layout, t)
    problems = _problems(layout)
    assert any(
        f"neighbors.i32: row {row} column 0" in p and "exact csls re-ranking" in p for p in problems
    ), problems


# --- vectors replaced, every checksum updated ----------------------------------------------------------------


def test_vectors_replaced_with_every_checksum_updated_are_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    x = np.fromfile(layout.embeddings_f32, dtype="<f4").reshape(N, DIM)
    x[[0, 1]] = x[[1, 0]]  # two tracks' vectors swapped: still unit norm, finite, the right size
    x.astype("<f4").tofile(layout.embeddings_f32)
    sha = sha256_file(layout.embeddings_f32)
    _edit_json(layout.embeddings_meta, "embeddings_meta", lambda m: m["files"].update(embeddings_sha256=sha))
    _edit_json(layout.index_meta, "index_meta", lambda m: m.update(embeddings_sha256=sha))
    _edit_json(layout.eval_results, "eval_results", lambda m: m.update(embeddings_sha256=sha))
    problems = " | ".join(_problems(layout))
    # every index still holds the old rows; the table and the figures are those of the old vectors
    for f in ("faiss.index", "faiss_hnsw.index", "hnsw.index"):
        assert re.search(
            rf"index/{f}: vector of row [01] differs from row [01] of .*embeddings.f32", problems
        ), f
    assert "neighbors.i32: " in problems and "the table does not match" in problems
    assert re.search(r"eval_results.json: \d+ value\(s\) differ from a recomputation", problems)


# --- the hnswlib file -------------------------------------------------------------------------------------


def _rewrite_hnsw(layout: ArtifactLayout, edit: Callable[[bytearray], None]) -> None:
    buf = bytearray(layout.hnsw_index.read_bytes())
    edit(buf)
    layout.hnsw_index.write_bytes(bytes(buf))

    def upd(m: dict) -> None:
        for e in m["indexes"]:
            if e["name"] == "hnswlib":
                e.update(sha256=sha256_file(layout.hnsw_index), size_bytes=layout.hnsw_index.stat().st_size)

    _edit_json(layout.index_meta, "index_meta", upd)


def test_an_hnsw_graph_link_out_of_range_is_refused_before_hnswlib_reads_it(
    good: Path, tmp_path: Path
) -> None:
    from research_job.hnsw_file import HEADER_BYTES, read_header

    layout = _copy(good, tmp_path)
    h = read_header(layout.hnsw_index.read_bytes())
    assert h is not None

    def edit(buf: bytearray) -> None:
        el = HEADER_BYTES + 5 * h.size_data_per_element  # element 5's level-0 list: count, then the links
        buf[el : el + 2] = (1).to_bytes(2, "little")
        buf[el + 4 : el + 8] = (10**6).to_bytes(4, "little")

    _rewrite_hnsw(layout, edit)
    problems = _problems(layout)
    assert any(
        "hnsw.index: element 5 links to 1000000 at level 0, outside [0, 90) (not handed to hnswlib)" in p
        for p in problems
    ), problems


def test_an_hnsw_m_other_than_recorded_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)

    def upd(m: dict) -> None:
        for e in m["indexes"]:
            if e["name"] == "hnswlib":
                e["params"]["M"] = 8

    _edit_json(layout.index_meta, "index_meta", upd)
    assert any("hnsw.index: M 16 != index_meta.json params.M 8" in p for p in _problems(layout))


def test_an_index_meta_of_another_version_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    _edit_json(layout.index_meta, "index_meta", _set("artifact_version", "v1_model_other"))
    assert any("index_meta.json: artifact_version 'v1_model_other'" in p for p in _problems(layout))


# --- the other sidecars' checksums ----------------------------------------------------------------------------


def test_a_release_manifest_is_checked_against_the_folder(good: Path, tmp_path: Path) -> None:
    from research_job.io.atomic import write_text
    from research_job.publish.manifest import MANIFEST_NAME, build_manifest, manifest_bytes

    layout = _copy(good, tmp_path)
    manifest = build_manifest(layout, release="r1")
    path = layout.version_dir / MANIFEST_NAME
    write_text(path, manifest_bytes(manifest).decode())
    assert _problems(layout) == []  # an S3 cache folder: the manifest belongs to it
    # a listed file changed after the release (its own sidecars updated): the manifest disagrees
    text = layout.sample_top5_json.read_text()
    layout.sample_top5_json.write_text(text.replace("\n  ", "\n\t ", 1))  # same size, same JSON value
    assert any("sample_top5.json: sha256 differs from manifest.json sha256" in p for p in _problems(layout))
    # and a forged entry no longer sums to content_sha256
    manifest["files"][0]["sha256"] = "0" * 64
    write_text(path, manifest_bytes(manifest).decode())
    assert any("manifest.json: content digest of files is" in p for p in _problems(layout))


def test_the_metadata_csv_is_the_one_the_export_report_records(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    report = json.loads((schema.SCHEMA_DIR / "examples/valid/export_report.json").read_text())
    report["output"] = {"file": "tracks_metadata.csv", "sha256": sha256_file(layout.tracks_csv)}
    schema.write_artifact(layout.path("export_report"), "export_report", report)
    assert _problems(layout) == []
    report["output"]["sha256"] = "a" * 64
    schema.write_artifact(layout.path("export_report"), "export_report", report)
    assert any(
        "tracks_metadata.csv: sha256 differs from export_report.json output.sha256" in p
        for p in _problems(layout)
    )


def test_an_excerpt_evaluation_of_other_embeddings_is_refused(good: Path, tmp_path: Path) -> None:
    layout = _copy(good, tmp_path)
    ex = json.loads((schema.SCHEMA_DIR / "examples/valid/excerpt_results.json").read_text())
    ex.update(artifact_version=layout.version_dir.name, embeddings_sha256=sha256_file(layout.embeddings_f32))
    schema.write_artifact(layout.path("excerpt_results"), "excerpt_results", ex)
    assert _problems(layout) == []
    ex["embeddings_sha256"] = "c" * 64
    schema.write_artifact(layout.path("excerpt_results"), "excerpt_results", ex)
    assert any(f"excerpt_results.json: embeddings_sha256 {'c' * 64} != " in p for p in _problems(layout))


def _u64(buf: bytearray, at: int, v: int) -> None:
    buf[at : at + 8] = v.to_bytes(8, "little")


HNSW_DAMAGE: list[tuple[str, Callable[[bytearray, object], None], str]] = [
    (
        "max_elements",
        lambda b, h: _u64(b, 8, 10**9),
        "has max_elements 1000000000, expected its element count 90",
    ),
    (
        "entry_point",
        lambda b, h: b.__setitem__(slice(52, 56), (90).to_bytes(4, "little")),
        "has entry point 90",
    ),
    (
        "deleted",
        lambda b, h: b.__setitem__(96 + 7 * h.size_data_per_element + 2, 1),
        "element 7 is marked deleted",
    ),  # type: ignore[attr-defined]
    ("trailing", lambda b, h: b.extend(b"\0\0\0\0"), "has 4 bytes after the last element's lists"),
    (
        # both offsets moved by 2^40: their difference (the vector size) stays right, hnswlib would read 1 TiB away
        "offsets",
        lambda b, h: (_u64(b, 32, h.label_offset + 2**40), _u64(b, 40, h.offset_data + 2**40)),  # type: ignore[attr-defined]
        "has offset_data 1099511627908 and label_offset",
    ),
]


@pytest.mark.parametrize(("what", "edit", "message"), HNSW_DAMAGE, ids=[d[0] for d in HNSW_DAMAGE])
def test_a_damaged_hnsw_file_is_refused_naming_the_field(
    good: Path, tmp_path: Path, what: str, edit: Callable[[bytearray, object], None], message: str
) -> None:
    from research_job.hnsw_file import read_header

    layout = _copy(good, tmp_path)
    h = read_header(layout.hnsw_index.read_bytes())
    _rewrite_hnsw(layout, lambda buf: edit(buf, h))
    problems = _problems(layout)
    assert any("index/hnsw.index: " in p and message in p for p in problems), problems
