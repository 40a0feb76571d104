"""train-recs on a small seeded version folder with planted tastes: artifacts, evaluation, determinism, validate.

The log: 60 listeners in 4 groups; group g plays and likes the tracks of composers 2g and 2g+1 (the factory's
composer clusters) with a Zipf skew, and skips a few others; events spread over 60 days. Popularity knows nothing
of the groups, so CF and the hybrid must beat it on the time split.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from research_job import artifact_checks
from research_job.config import CommonConfig
from research_job.errors import ConfigError
from research_job.layout import ArtifactLayout
from research_job.recs import scoring
from research_job.steps.train_recs import TrainRecsConfig, run
from tests.helpers.artifact_factory import Corpus, make_version

N_USERS = 60
HEADER = ["user_id", "track_id", "event", "ts", "duration_sec", "origin"]


def planted_log(corpus: Corpus, seed: int = 0) -> list[list[str]]:
    """Events of listeners with disjoint tastes (see the module docstring), sorted by time."""
    rng = np.random.default_rng(seed)
    comp = [r["composer"] for r in corpus.rows]
    start = np.datetime64("2026-01-01T00:00:00", "s")
    out: list[list[str]] = []
    for u in range(N_USERS):
        g = u % 4
        mine = [i for i, c in enumerate(comp) if c in (f"composer {2 * g}", f"composer {2 * g + 1}")]
        other = [i for i, c in enumerate(comp) if c is not None and i not in mine]
        order = rng.permutation(mine)
        for j in range(24):
            i = int(order[min(len(order) - 1, int(rng.zipf(1.6)) - 1 + j // 3)])
            t = start + np.timedelta64(int(rng.integers(0, 60 * 86400)), "s")
            ts = str(t) + "Z"
            out.append([f"u{u:03d}", corpus.track_ids[i], "play", ts, "30", "synthetic-test"])
            if rng.random() < 0.3:
                out.append([f"u{u:03d}", corpus.track_ids[i], "like", ts, "", "synthetic-test"])
        for i in rng.choice(other, size=4, replace=False):
            t = start + np.timedelta64(int(rng.integers(0, 60 * 86400)), "s")
            out.append([f"u{u:03d}", corpus.track_ids[int(i)], "skip", str(t) + "Z", "3", "synthetic-test"])
    out.sort(key=lambda r: (r[3], r[0], r[1], r[2]))
    return out


def write_log(layout: ArtifactLayout, rows: list[list[str]]) -> None:
    path = layout.path("interactions_csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)


def make_folder(root: Path) -> Corpus:
    corpus = make_version(root, n=160, dim=16, n_composers=8, indexes=("faiss-flat",), with_eval=False)
    write_log(corpus.layout, planted_log(corpus))
    return corpus


def config(layout: ArtifactLayout, **kw: object) -> TrainRecsConfig:
    opts: dict[str, object] = {"factors": 8, "iterations": 8, "bootstrap_resamples": 200, "threads": 1}
    opts.update(kw)
    return TrainRecsConfig(common=CommonConfig(version_dir=layout.version_dir), **opts)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    corpus = make_folder(tmp_path_factory.mktemp("recs"))
    run(config(corpus.layout))
    return corpus


def _json(layout: ArtifactLayout, key: str) -> dict:
    return json.loads(layout.path(key).read_text(encoding="utf-8"))


def test_the_folder_validates_and_the_files_agree(trained: Corpus) -> None:
    layout = trained.layout
    assert artifact_checks.check(layout) == []
    meta = _json(layout, "recs_meta")
    users = _json(layout, "recs_user_ids")["user_ids"]
    assert users == sorted(users) and len(users) == N_USERS
    assert meta["files"]["recs_item_factors"]["shape"] == [len(trained.track_ids), 8]
    assert meta["metrics"] == _json(layout, "recs_eval")["models"]
    offsets = np.fromfile(layout.path("recs_user_items_offsets"), dtype="<i8")
    assert offsets[0] == 0 and (np.diff(offsets) >= 0).all()


def test_cf_and_hybrid_beat_popularity_on_planted_tastes(trained: Corpus) -> None:
    ev = _json(trained.layout, "recs_eval")
    assert ev["split"]["test_users"] >= 30
    m = ev["models"]
    floor = m["popularity"]["ndcg_at_20"]
    for model in ("als", "hybrid", "content"):
        assert m[model]["ndcg_at_20"]["mean"] > floor["ci_high"], (model, m[model], floor)
    assert ev["vs_floor"]["hybrid"]["ndcg_at_20"]["ci_low"] > 0
    for model in m.values():
        for name in ("recall_at_20", "ndcg_at_20", "mrr"):
            v = model[name]
            assert v["ci_low"] <= v["mean"] <= v["ci_high"]
    sel = ev["hybrid_selection"]
    assert len(sel["grid"]) == 15 and sel["cf_weight"] in (0, 0.25, 0.5, 0.75, 1)
    assert {s["segment"] for s in ev["segments"]} == {"light", "heavy"}


def test_popularity_json_is_the_positive_counts(trained: Corpus) -> None:
    layout = trained.layout
    pop = _json(layout, "recs_popularity")
    rows = list(csv.DictReader(layout.path("interactions_csv").open(encoding="utf-8")))
    counts: dict[str, int] = {}
    for r in rows:
        if r["event"] in ("play", "like"):
            counts[r["track_id"]] = counts.get(r["track_id"], 0) + 1
    row = {t: i for i, t in enumerate(trained.track_ids)}
    want = sorted(counts.items(), key=lambda kv: (-kv[1], row[kv[0]]))
    assert [(e["track_id"], e["score"]) for e in pop["global"]] == [(t, float(c)) for t, c in want]
    assert pop["as_of"] == max(r["ts"] for r in rows)
    scores = [e["score"] for e in pop["trending"]]
    assert scores == sorted(scores, reverse=True)


def test_reruns_give_the_same_bytes_and_threads_do_not_matter(trained: Corpus, tmp_path: Path) -> None:
    other = make_folder(tmp_path)
    run(config(other.layout, threads=2))
    for key in ("recs_user_factors", "recs_item_factors", "recs_user_items", "recs_user_items_weights"):
        assert trained.layout.path(key).read_bytes() == other.layout.path(key).read_bytes(), key
    a, b = _json(trained.layout, "recs_eval"), _json(other.layout, "recs_eval")
    assert a["models"] == b["models"] and a["hybrid_selection"] == b["hybrid_selection"]


def test_bad_options_are_named(tmp_path: Path) -> None:
    layout = ArtifactLayout(tmp_path / "v1_model_x")
    with pytest.raises(ConfigError, match="factors"):
        run(config(layout, factors=0))
    with pytest.raises(ConfigError, match="'1.5' is outside|1.5 in"):
        run(config(layout, cf_weights="0,1.5"))
    with pytest.raises(ConfigError, match="'x' in"):
        run(config(layout, light_user_events="2,x"))
    with pytest.raises(ConfigError, match="half_life_days"):
        run(config(layout, half_life_days=0.0))


def test_validate_finds_tampered_files(trained: Corpus, tmp_path: Path) -> None:
    import shutil

    copy = ArtifactLayout(tmp_path / trained.layout.version_dir.name)
    shutil.copytree(trained.layout.version_dir, copy.version_dir)
    assert artifact_checks.check(copy) == []
    # a flipped factor byte: the sha256 differs
    p = copy.path("recs_item_factors")
    data = bytearray(p.read_bytes())
    data[5] ^= 0xFF
    p.write_bytes(bytes(data))
    assert any("item_factors.f32" in x and "sha256" in x for x in artifact_checks.check(copy))
    p.write_bytes(bytes(data[:-4]))
    assert any("item_factors.f32" in x and "bytes" in x for x in artifact_checks.check(copy))
    shutil.copy(trained.layout.path("recs_item_factors"), p)
    # the interactions changed after training
    csvp = copy.path("interactions_csv")
    csvp.write_text(csvp.read_text(encoding="utf-8") + "u000,t00001,play,2026-03-10T00:00:00Z,,x\n")
    assert any("interactions_sha256" in x for x in artifact_checks.check(copy))
    shutil.copy(trained.layout.path("interactions_csv"), csvp)
    # recs_eval's headline differs from recs_meta's copy
    ev = _json(copy, "recs_eval")
    ev["models"]["als"]["mrr"]["mean"] = 0.5
    copy.path("recs_eval").write_text(json.dumps(ev), encoding="utf-8")
    assert any("metrics" in x for x in artifact_checks.check(copy))


def test_validate_checks_the_csr_structure(trained: Corpus, tmp_path: Path) -> None:
    import shutil

    from research_job.provenance import sha256_file

    copy = ArtifactLayout(tmp_path / trained.layout.version_dir.name)
    shutil.copytree(trained.layout.version_dir, copy.version_dir)
    meta = _json(copy, "recs_meta")

    def rewrite(key: str, arr: np.ndarray) -> None:
        copy.path(key).write_bytes(arr.tobytes())
        meta["files"][key]["sha256"] = sha256_file(copy.path(key))
        copy.path("recs_meta").write_text(json.dumps(meta), encoding="utf-8")

    idx = np.fromfile(copy.path("recs_user_items"), dtype="<i4").copy()
    idx[3] = len(trained.track_ids) + 7
    rewrite("recs_user_items", idx)
    assert any("user_items.i32" in x and "range" in x for x in artifact_checks.check(copy))
    shutil.copy(trained.layout.path("recs_user_items"), copy.path("recs_user_items"))
    meta = _json(trained.layout, "recs_meta")
    off = np.fromfile(copy.path("recs_user_items_offsets"), dtype="<i8").copy()
    off[2], off[3] = off[3], off[2]
    rewrite("recs_user_items_offsets", off)
    assert any("offsets" in x for x in artifact_checks.check(copy))


def test_served_scores_load_back(trained: Corpus) -> None:
    arts = scoring.load_recs(trained.layout.version_dir)
    assert arts.user_ids[0] == "u000" and arts.n_tracks == len(trained.track_ids)
    picks = scoring.recommend(arts, "u001", 5)
    assert len(picks) == 5 and {p["source"] for p in picks} == {"hybrid"}


def test_validate_checks_the_interactions_report_checksum(trained: Corpus, tmp_path: Path) -> None:
    import shutil

    from research_job import schema
    from research_job.provenance import sha256_file

    copy = ArtifactLayout(tmp_path / trained.layout.version_dir.name)
    shutil.copytree(trained.layout.version_dir, copy.version_dir)
    example = schema.SCHEMA_DIR / "examples" / "valid" / "interactions_report.json"
    report = json.loads(example.read_text(encoding="utf-8"))
    report["output"] = {"file": "interactions.csv", "sha256": sha256_file(copy.path("interactions_csv"))}
    schema.write_artifact(copy.path("interactions_report"), "interactions_report", report)
    assert artifact_checks.check(copy) == []
    report["output"]["sha256"] = "0" * 64
    schema.write_artifact(copy.path("interactions_report"), "interactions_report", report)
    problems = artifact_checks.check(copy)
    assert any("interactions_report.json output.sha256" in p for p in problems), problems


def test_events_come_from_the_checked_reader(tmp_path: Path) -> None:
    """Rows on a track without an embedding are skipped and counted; a line out of order or with an unknown
    event is refused naming its line (the interactions artifact's own row checks)."""
    from research_job.errors import ArtifactError
    from research_job.recs.data import EVENT_WEIGHTS, read_interactions

    corpus = make_version(
        tmp_path / "a", n=12, dim=8, n_composers=2, indexes=("faiss-flat",), with_eval=False
    )
    ids = corpus.track_ids
    rows = [
        ["u1", ids[3], "play", "2026-01-01T00:00:00Z", "30", "synthetic-test"],
        ["u0", ids[5], "like", "2026-01-01T00:00:01Z", "", "synthetic-test"],
        ["u1", "gone-track", "play", "2026-01-01T00:00:02Z", "", "synthetic-test"],
        ["u0", ids[3], "skip", "2026-01-02T00:00:00Z", "2", "synthetic-test"],
    ]
    write_log(corpus.layout, rows)
    ev = read_interactions(corpus.layout.path("interactions_csv"), ids)
    assert ev.user_ids == ["u0", "u1"] and ev.rows_read == 4 and ev.rows_unembedded == 1
    assert ev.users.tolist() == [1, 0, 0] and ev.tracks.tolist() == [3, 5, 3]
    assert ev.weights.tolist() == [EVENT_WEIGHTS["play"], EVENT_WEIGHTS["like"], EVENT_WEIGHTS["skip"]]
    assert ev.ts.tolist() == [1767225600, 1767225601, 1767312000] and ev.synthetic
    write_log(corpus.layout, [rows[1], rows[0], rows[3]])
    with pytest.raises(ArtifactError, match="line 3: out of"):
        read_interactions(corpus.layout.path("interactions_csv"), ids)
    write_log(corpus.layout, [[*rows[0][:2], "hum", *rows[0][3:]]])
    with pytest.raises(ArtifactError, match="line 2: .*hum"):
        read_interactions(corpus.layout.path("interactions_csv"), ids)
    write_log(corpus.layout, [rows[2]])
    with pytest.raises(ArtifactError, match="no event of 1 rows"):
        read_interactions(corpus.layout.path("interactions_csv"), ids)
