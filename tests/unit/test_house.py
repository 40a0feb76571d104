"""The house rules a newcomer and the next feature depend on, each checked so that its return fails a test.

- the README's two commands work as a pair (the Makefile wires ``demo`` and ``test`` to everything they need;
  ``.ci/run`` runs exactly them, in that order);
- a typo in the configuration fails before anything touches the disk, naming the bad value and the valid ones;
- every option says what it does, finite sets are choices;
- one place for each thing: no step imports another step, one code version / timestamp / hash, one artifact
  list (layout, validate, publish), one database connect / S3 client / URL redaction, one step registry.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from research_job import layout as layout_mod
from research_job.cli import cli
from research_job.config import CommonConfig, fields_of
from research_job.layout import ArtifactLayout, artifacts
from research_job.steps import pipeline, registry

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "research_job"


def _make_dry(target: str) -> str:
    """What ``make`` would run for ``target`` from scratch (``-B``: as on a fresh clone), without running it."""
    out = subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


# ---------------------------------------------------------------- the two commands


def test_ci_runs_exactly_the_readme_pair_in_order() -> None:
    lines = [ln.strip() for ln in (REPO / ".ci/run").read_text().splitlines()]
    makes = [ln for ln in lines if ln.startswith("make ")]
    assert makes == ["make demo", "make test"]
    readme = (REPO / "README.md").read_text()
    assert re.search(r"^make demo\b", readme, re.M) and re.search(r"^make test\b", readme, re.M)


def test_make_demo_installs_and_builds_what_test_and_serve_need() -> None:
    demo = _make_dry("demo")
    for step in ("pip install", "fetch_musicnn_weights.py", "npm ci", "run build:prod", "research-job run"):
        assert step in demo, f"make demo no longer runs {step!r}"
    serve = _make_dry("serve")
    assert serve.index("run build:prod") < serve.index("npm start"), "make serve must build before it starts"
    test = _make_dry("test")
    for step in ("ruff check", "pytest", "npm test", "npm ci"):
        assert step in test, f"make test no longer runs {step!r}"


@pytest.mark.parametrize("model", [None, "musicnn-msd?layer=max_pool&batch_size=2", "hf:m-a-p/MERT-v1-95M"])
def test_make_serves_the_folder_the_pipeline_writes(model: str | None) -> None:
    from research_job.layout import version_name
    from research_job.models.registry import DEFAULT_MODEL

    args = ["make", "-n", "-B", "serve", *([f"MODEL={model}"] if model else [])]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert f"ARTIFACTS_DIR={REPO}/artifacts/{version_name(model or DEFAULT_MODEL)} " in out


# ---------------------------------------------------------------- configuration errors come first


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "--model", "musicnn"], "Unknown model 'musicnn'. Known: clap-music, dsp-stats"),
        (["embed", "--model", "musicnn-msdd"], "Unknown model 'musicnn-msdd'"),
        (["build-index", "--model", "nosuch"], "Unknown model 'nosuch'"),
        (["embed", "--model", "musicnn-msd?layer=pool"], "'pool'. Known: max_pool, mean_pool, penultimate"),
        (["evaluate", "--model", "dsp-stats?fast=1"], "dsp-stats takes no options"),
        (["embed", "--batch-size", "0"], "batch_size and checkpoint_every must be >= 1"),
        (["embed", "--processes", "2", "--device", "cuda"], "needs device 'cpu'"),
        (["publish", "--to", "pgvector"], "needs --database-url"),
    ],
)
def test_a_typo_fails_before_anything_is_written(tmp_path: Path, args: list[str], said: str) -> None:
    root = tmp_path / "artifacts"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        "export_metadata: {csv_path: "
        + str(tmp_path / "none.csv")
        + "}\npull_audio: {source: "
        + str(tmp_path)
        + "}\n"
    )
    extra = ["--config", str(cfg)] if args[0] == "run" else []
    res = CliRunner().invoke(cli, [*args, *extra, "--artifacts-root", str(root)])
    assert res.exit_code == 2, res.output
    assert said in " ".join(res.output.split()), res.output
    assert not root.exists(), "a bad configuration must not create a version folder"


def test_run_checks_every_step_before_the_first_one(tmp_path: Path) -> None:
    """The export would succeed; the embed section's bad value must still stop the run before it."""
    csv = tmp_path / "cat.csv"
    csv.write_text(
        "track_id,album_id,track_no,title,composer,audio_s3_key,duration_sec\nt1,a,1,T,C,a/t1.wav,1\n"
    )
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"export_metadata: {{csv_path: {csv}}}\npull_audio: {{source: {tmp_path}}}\nembed: {{decode_ahead: -1}}\n"
    )
    res = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--artifacts-root", str(tmp_path / "a")])
    assert res.exit_code == 2 and "decode_ahead must be >= 0" in res.output
    assert not (tmp_path / "a").exists()


# ---------------------------------------------------------------- help


def _commands() -> dict[str, click.Command]:
    return dict(cli.commands)


def test_every_option_says_what_it_does() -> None:
    for name, cmd in _commands().items():
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.name in {"help"}:
                continue
            text = (p.help or "").split("[default")[0].strip()
            assert len(text) >= 10, f"{name} {p.opts[0]}: no description ({p.help!r})"
            if name != "models" and p.name not in {"config_file", "skip"}:
                assert "default:" in (p.help or ""), f"{name} {p.opts[0]}: default not stated"


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("embed", "postprocess", {"none", "center", "standardize", "block_standardize", "pca_whiten"}),
        ("find-similar", "index", {"exact", "hnswlib"}),
        ("publish", "to", {"s3", "pgvector"}),
        ("run", "skip", {s.command for s in pipeline()}),
    ],
)
def test_finite_sets_are_choices(command: str, option: str, choices: set[str]) -> None:
    p = next(p for p in _commands()[command].params if p.name == option)
    assert isinstance(p.type, click.Choice) and set(p.type.choices) == choices


def test_find_similar_has_one_folder_rule() -> None:
    cmd = _commands()["find-similar"]
    names = {p.name for p in cmd.params}
    assert "artifacts" not in names and {"version_dir", "artifacts_root", "model"} <= names
    help_ = " ".join(CommonConfig.__dataclass_fields__["version_dir"].metadata["help"].split())
    assert "instead of <artifacts-root>/v1_model_<MODEL>" in help_


def test_models_names_the_default_pipeline() -> None:
    from research_job.embeddings import DEFAULT_POSTPROCESS
    from research_job.models.registry import DEFAULT_MODEL

    out = CliRunner().invoke(cli, ["models"]).output
    assert out.count("default:") == 1
    assert f"default: {DEFAULT_MODEL} with --postprocess {DEFAULT_POSTPROCESS} " in out
    for path in ("configs/demo.yaml", "configs/realmusic.yaml"):  # the README's corpora run the default
        assert f"\nmodel: {DEFAULT_MODEL}\n" in (REPO / path).read_text()


def test_eval_table_columns_are_told_apart() -> None:
    from research_job.steps.evaluate import format_table

    block = {
        "metrics": dict.fromkeys(("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr"), 0.5),
        "random_baseline": dict.fromkeys(("precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr"), 0.1),
        "confidence_intervals": None,
        "n_queries": 3,
    }
    res = {
        "k": 5,
        "relevance": "same_standardized_composer",
        "model": "m",
        "n_tracks": 4,
        "overall": block,
        "exclude_same_album": block,
        "query_policy": {"n_excluded_no_other_track": 0, "n_excluded_missing_composer": 0},
    }
    header = format_table(res).splitlines()[1].split("  ")
    cols = [c.strip() for c in header if c.strip()]
    assert len(cols) == len(set(cols)), cols


def test_find_similar_table_never_cuts_album_ids() -> None:
    from research_job.steps.find_similar import format_table

    albums = ["mozart-quartet-k155", "mozart-quartet-k156", "mozart-quartet-k458"]
    res = {
        "query": "q.wav",
        "model": "m",
        "artifact_version": "v1_model_m",
        "index": "exact",
        "results": [
            {
                "rank": i + 1,
                "score": 0.9,
                "title": "t",
                "composer": "Mozart",
                "album_id": a,
                "track_id": f"t{i}",
            }
            for i, a in enumerate(albums)
        ],
        "timings": {"load_sec": 0, "embed_sec": 0, "search_sec": 0, "total_sec": 0},
    }
    text = format_table(res)
    assert all(a in text for a in albums)


def test_faiss_loader_noise_is_quiet_and_its_simd_level_recorded(tmp_path: Path) -> None:
    import json

    from tests.helpers.artifact_factory import make_version

    layout = make_version(tmp_path, n=12, dim=8).layout
    out = subprocess.run(
        [
            str(REPO / ".venv/bin/research-job"),
            "build-index",
            "--version-dir",
            str(layout.version_dir),
            "--neighbors-k",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "ModuleNotFoundError" not in out.stderr and "faiss.loader" not in out.stderr
    meta = json.loads(layout.index_meta.read_text())
    simd = {e["name"]: e.get("simd") for e in meta["indexes"]}
    assert simd["faiss-flat"] in {"AVX512_SPR", "AVX512", "AVX2", "SVE", "NEON", "generic"}


# ---------------------------------------------------------------- one place for each thing


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            mods |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
    return mods


def test_no_step_imports_another_step() -> None:
    composers = {"run_all", "compare_models"}
    steps = {p.stem for p in (PKG / "steps").glob("*.py") if p.stem != "__init__"}
    for path in (PKG / "steps").glob("*.py"):
        if path.stem in composers or path.stem == "__init__":
            continue
        others = {f"research_job.steps.{s}" for s in steps - {path.stem}}
        assert not (_imports(path) & others), f"{path.name} imports another step: {_imports(path) & others}"
    for path in [*PKG.glob("*.py"), *PKG.glob("*/*.py")]:
        if path.parent.name == "steps" or path.name == "cli.py":  # the CLI wires the steps
            continue
        # the registry itself (research_job.steps.registry / pipeline / Step) is what libraries may name
        used = {
            m
            for m in _imports(path)
            if m.startswith("research_job.steps.") and m.split(".")[2] not in {"registry", "pipeline", "Step"}
        }
        assert not used, f"library module {path.relative_to(REPO)} imports a step: {used}"


def _defs(name: str) -> list[str]:
    found = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                found.append(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("code_version", "research_job/provenance.py"),
        ("utc_now", "research_job/provenance.py"),
        ("sha256_file", "research_job/provenance.py"),
        ("sha256_bytes", "research_job/provenance.py"),
        ("redact_url", "research_job/io/database.py"),
        ("load_track_audio", "research_job/io/audio.py"),
        ("load_embeddings", "research_job/embeddings.py"),
        ("write_embeddings", "research_job/embeddings.py"),
        ("apply_postprocess", "research_job/embeddings.py"),
        ("read_tracks_csv", "research_job/metadata.py"),
    ],
)
def test_one_definition_each(name: str, home: str) -> None:
    assert _defs(name) == [home]


def test_no_second_clock_hash_or_client() -> None:
    """Timestamps, hashes, database connections and S3 clients are made in one module each."""
    rules = [
        (r"datetime\.now\(|time\.strftime\(", {"research_job/provenance.py"}),
        (r"psycopg\.connect\(", {"research_job/io/db_postgres.py"}),
        (r"boto3\.session\.Session\(|boto3\.client\(", {"research_job/io/storage_s3.py"}),
        (
            r"hashlib\.sha256\(",
            {
                "research_job/provenance.py",
                "research_job/publish/pgvector.py",
                "research_job/publish/manifest.py",
                "research_job/models/random_encoder.py",
                "research_job/demo/build.py",
                "research_job/realmusic/sources.py",
                "research_job/realmusic/scan.py",  # a short id digest of a title, not a file checksum
            },
        ),
    ]
    for pattern, allowed in rules:
        hits = {str(p.relative_to(REPO)) for p in PKG.rglob("*.py") if re.search(pattern, p.read_text())}
        assert hits <= allowed, f"{pattern}: also in {sorted(hits - allowed)}"


def test_every_report_of_a_run_names_the_same_code_version() -> None:
    from research_job import provenance

    assert re.fullmatch(r"\d+\.\d+\.\d+(\+g[0-9a-f]{7})?", provenance.code_version())
    src = (PKG / "publish/manifest.py").read_text()
    assert '"publisher_version": code_version()' in src


def test_artifact_paths_come_from_the_one_list() -> None:
    """No module spells an artifact's path; ArtifactLayout's properties are keys of the list."""
    listed = {a.path for a in artifacts().values() if not a.is_folder}
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        for rel in listed:
            assert f'"{rel}"' not in text and f"'{rel}'" not in text, f"{path.relative_to(REPO)} spells {rel}"
    lay = ArtifactLayout(Path("/v"))
    keys = set(artifacts())
    for name, member in vars(ArtifactLayout).items():
        if isinstance(member, property) and name in keys:
            assert getattr(lay, name) == lay.path(name)
    assert {a.path for a in artifacts().values()} == {
        e["path"]
        for e in __import__("json").loads((REPO / "artifact_schema/artifacts.json").read_text())["artifacts"]
    }


def test_garbage_segment_files_fail_validate_and_publish(tmp_path: Path) -> None:
    from research_job import artifact_checks
    from research_job.errors import ResearchJobError
    from research_job.publish.manifest import build_manifest
    from tests.helpers.artifact_factory import make_version

    lay = make_version(tmp_path, n=10, dim=4).layout
    assert artifact_checks.check(lay) == []
    lay.segments_meta.write_text('{"garbage": true}')
    lay.segments_f32.write_bytes(b"1234567")
    problems = artifact_checks.check(lay)
    assert any("segments_meta" in p for p in problems) and any("segments.f32" in p for p in problems), (
        problems
    )
    with pytest.raises(ResearchJobError, match="segments"):
        build_manifest(lay)


def test_unlisted_files_are_reported_and_never_published(tmp_path: Path) -> None:
    from research_job import artifact_checks
    from research_job.publish.manifest import is_published_path
    from tests.helpers.artifact_factory import make_version

    lay = make_version(tmp_path, n=10, dim=4).layout
    (lay.embeddings_dir / "notes.bin").write_bytes(b"x")
    assert any("notes.bin: not an artifact" in p for p in artifact_checks.check(lay))
    assert not is_published_path("embeddings/notes.bin", include_audio=True)
    assert not is_published_path("embeddings/partial/chunk_00000.npy", include_audio=True)
    assert is_published_path("audio_cache/pull_report.json", include_audio=False)
    assert not is_published_path("audio_cache/a/t.ogg", include_audio=False)
    assert is_published_path("audio_cache/a/t.ogg", include_audio=True)


def test_one_step_registry_feeds_the_cli_run_and_config() -> None:
    from research_job import config

    steps = registry()
    assert set(_commands()) == {s.command for s in steps.values()} | {"run", "models"}
    from research_job.steps import run_all

    assert run_all.order() == (
        "export_metadata",
        "pull_audio",
        "standardize_audio",
        "embed",
        "build_index",
        "evaluate",
        "report",
        "previews",
        "validate",
    )
    assert config.sections() == {n: s.config for n, s in steps.items()}
    # config.py holds the common keys and the machinery only: every step config lives in its step module
    config_classes = [
        n for n in vars(config).values() if dataclasses.is_dataclass(n) and n.__module__ == config.__name__
    ]
    assert config_classes == [CommonConfig]
    for s in steps.values():
        assert s.config.__module__ == f"research_job.steps.{s.name}"
        assert s.example.startswith(f"research-job {s.command}")
        assert fields_of(s.config) or s.name == "validate"


def test_layout_version_name() -> None:
    assert layout_mod.version_name("hf:m-a-p/MERT-v1-95M") == "v1_model_hf-m-a-p--MERT-v1-95M"


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_build_every_section(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each config the repository ships (the demo's, the compose stack's, the DAG's default) names only real
    steps and fields with valid values: a typo there would fail the first run of whoever relies on it."""
    from research_job.config import build_config, config_class, load_config_file

    monkeypatch.chdir(REPO)
    data = load_config_file(REPO / "configs" / path)
    env = {"RESEARCH_JOB_DATABASE_URL": "postgresql://catalogue@db/catalogue"}  # secrets come from env
    built = [
        build_config(config_class(s), file_data=data, section=s, env=env) for s in data if s in registry()
    ]
    assert built, f"{path} configures no step"


def test_run_keeps_the_flags_of_the_pipeline_inputs() -> None:
    """``run`` gives a flag only to a field exactly one step has: a step that reuses another's field name takes
    that flag off ``run`` (as embed's ``source`` once took ``--source``). The inputs a newcomer passes on the
    command line must stay."""
    out = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    for flag in ("--database-url", "--csv-path", "--source", "--endpoint-url", "--stream-from", "--engine"):
        assert f"{flag} " in out, flag


def test_top_level_help_names_the_steps_of_run_in_order() -> None:
    out = CliRunner().invoke(cli, ["--help"], terminal_width=250).output
    assert "Steps of `run`: " + " -> ".join(s.command for s in pipeline()) in out
