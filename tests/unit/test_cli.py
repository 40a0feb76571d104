"""CLI: every command's --help shows an example; config file < env < flag precedence; known errors exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from research_job import cli as cli_mod
from research_job import embeddings
from research_job.config import CommonConfig
from tests.unit._core_corpus import make_corpus

COMMANDS = [
    "export-metadata",
    "pull-audio",
    "standardize-audio",
    "embed",
    "build-index",
    "evaluate",
    "validate",
    "run",
    "models",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(command: str) -> None:
    res = CliRunner().invoke(cli_mod.cli, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example:" in res.output and f"research-job {command.split()[0]}" in res.output
    if command not in {"models"}:
        assert "--config" in res.output


def test_group_lists_every_command() -> None:
    res = CliRunner().invoke(cli_mod.cli, ["--help"])
    for c in COMMANDS:
        assert c in res.output


def test_models_lists_registry() -> None:
    res = CliRunner().invoke(cli_mod.cli, ["models"])
    assert res.exit_code == 0 and "dsp-stats" in res.output and "hf:<id>" in res.output


def _embed_dim(layout: object) -> int:
    return embeddings.load_embeddings(layout)[2]["model"]["params"]["dim"]  # type: ignore[arg-type]


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    common = make_corpus(tmp_path, 16000, n=4, model="random")
    vd = str(common.version_dir)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"model: random?dim=5\nversion_dir: {vd}\nembed:\n  batch_size: 2\n", encoding="utf-8")
    runner = CliRunner()
    # file only
    res = runner.invoke(cli_mod.cli, ["embed", "--config", str(cfg)], env={"RESEARCH_JOB_MODEL": None})
    assert res.exit_code == 0, res.output
    assert _embed_dim(common.layout) == 5
    # env beats file
    res = runner.invoke(
        cli_mod.cli, ["embed", "--config", str(cfg)], env={"RESEARCH_JOB_MODEL": "random?dim=6"}
    )
    assert res.exit_code == 0, res.output
    assert _embed_dim(common.layout) == 6
    # flag beats env
    res = runner.invoke(
        cli_mod.cli,
        ["embed", "--config", str(cfg), "--model", "random?dim=7"],
        env={"RESEARCH_JOB_MODEL": "random?dim=6"},
    )
    assert res.exit_code == 0, res.output
    vecs, _, meta = embeddings.load_embeddings(common.layout)
    assert meta["dim"] == 7 and vecs.shape == (4, 7)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_known_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli_mod.cli, ["embed", "--model", "nope", "--version-dir", str(tmp_path / "v")])
    assert res.exit_code == 2
    assert res.output.strip().startswith("Error:") or "Error:" in res.output
    assert "Traceback" not in res.output
    # unknown model: the message lists the known ones
    common = make_corpus(tmp_path / "c", 16000, n=2, model="random")
    res = runner.invoke(cli_mod.cli, ["embed", "--model", "mertt", "--version-dir", str(common.version_dir)])
    assert res.exit_code == 2 and "Unknown model 'mertt'" in res.output and "dsp-stats" in res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1
    # bad config file key
    bad = tmp_path / "bad.toml"
    bad.write_text("modle = 'x'\n", encoding="utf-8")
    res = runner.invoke(cli_mod.cli, ["evaluate", "--config", str(bad)])
    assert res.exit_code == 2 and "Unknown config key 'modle'" in res.output
    # validate on an empty folder: exit 2, names the problem
    res = runner.invoke(cli_mod.cli, ["validate", "--version-dir", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such version folder" in res.output


def test_evaluate_prints_table(tmp_path: Path) -> None:
    common: CommonConfig = make_corpus(tmp_path, 16000, n=9, model="random")
    runner = CliRunner()
    vd = str(common.version_dir)
    assert runner.invoke(cli_mod.cli, ["embed", "--model", "random", "--version-dir", vd]).exit_code == 0
    res = runner.invoke(cli_mod.cli, ["evaluate", "--model", "random", "--version-dir", vd, "--k", "2"])
    assert res.exit_code == 0, res.output
    assert "Precision@2" in res.output and "MRR" in res.output
