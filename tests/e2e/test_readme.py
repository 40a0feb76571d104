"""The README's examples run: every ``research-job`` command line parses, the cheap ones run on the demo corpus,
and every ``curl`` GET example answers 200 from the real Node server serving the demo artifacts.

The demo artifacts are what ``make demo`` leaves (the README's first command; CI runs it before ``make test``).
Commands run in a sandbox folder whose ``artifacts/`` is a hard-linked copy of the demo version folder (every
write is an atomic rename, so the original files are never changed) and whose ``configs/``, ``.cache/`` and
``research_job/`` are links to the repository's, so the README's relative paths work as written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from research_job.cli import cli
from tests.helpers.node_server import free_port

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
DEMO = REPO / "artifacts" / "v1_model_fusion-musicnn-msd_musicnn-mtt"
SERVER_JS = REPO / "node_api" / "dist" / "src" / "server.js"
#: README commands run end to end on the demo corpus (the others are parsed only: publish needs a bucket,
#: compare-models and embed-segments embed the corpus again)
RUNNABLE = {"export-metadata", "pull-audio", "standardize-audio", "embed", "build-index", "evaluate", "report",
            "previews", "validate", "find-similar", "models", "run", "export-model", "export-interactions",
            "train-recs"}  # fmt: skip


def readme_commands() -> list[list[str]]:
    """Every ``research-job ...`` command line of the README (inline code and code blocks)."""
    found = re.findall(r"`(research-job [^`]+)`", README)
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", README, re.S):
        found += [
            ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip().startswith("research-job ")
        ]
    out = []
    for line in found:
        argv = shlex.split(line.replace("\\|", "|"))
        if argv not in out:
            out.append(argv)
    return out


def readme_curls() -> list[str]:
    """Paths (with query) of the README's ``curl`` GET examples."""
    paths = []
    for m in re.finditer(r"curl (?:-s )?'?(?:http://)?localhost:8080(/[^' `]*)'?", README):
        if "-X" not in README[m.start() : m.end()]:
            paths.append(m.group(1))
    return paths


def readme_posts() -> list[tuple[str, dict]]:
    """(path, JSON body) of the README's ``curl -XPOST ... -d '{...}'`` examples with a literal JSON body."""
    found = []
    for m in re.finditer(
        r"curl -XPOST localhost:8080(/[^ ']+) -H 'content-type: application/json' -d '([^']+)'", README
    ):
        found.append((m.group(1), json.loads(m.group(2))))
    return found


def test_the_readme_shows_commands_and_endpoints() -> None:
    cmds = {argv[1] for argv in readme_commands()}
    assert {s for s in cli.commands} - {"models"} <= cmds | {"models"}, (
        f"commands without an example: {set(cli.commands) - cmds}"
    )
    assert len(readme_curls()) >= 5
    posted = {path for path, _ in readme_posts()}
    assert {"/recommend/similar", "/radio/generate", "/daily-mix", "/recommend/user", "/feedback"} <= posted


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a[1:3]))
def test_every_readme_command_parses(argv: list[str]) -> None:
    assert argv[0] == "research-job"
    name, args = argv[1], argv[2:]
    assert name in cli.commands, f"README names an unknown command {name!r}"
    cmd: click.Command = cli.commands[name]
    with cmd.make_context(name, list(args), resilient_parsing=False):
        pass


def _demo_ready() -> bool:
    return (DEMO / "embeddings" / "embeddings_meta.json").is_file() and (
        DEMO / "eval" / "eval_results.json"
    ).is_file()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _demo_ready():
        pytest.skip("the demo artifacts are not there: run `make demo` first (the README's first command)")
    box = tmp_path_factory.mktemp("readme")
    for name in ("configs", ".cache", "research_job", "artifact_schema"):
        (box / name).symlink_to(REPO / name)
    (box / "artifacts").mkdir()
    subprocess.run(
        ["cp", "-al", str(DEMO), str(box / "artifacts" / DEMO.name)], check=True, capture_output=True
    )
    return box


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv", [a for a in readme_commands() if a[1] in RUNNABLE], ids=lambda a: " ".join(a[1:3])
)
def test_readme_command_runs_on_the_demo_corpus(sandbox: Path, argv: list[str]) -> None:
    exe = REPO / ".venv" / "bin" / "research-job"
    out = subprocess.run([str(exe), *argv[1:]], cwd=sandbox, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{shlex.join(argv)}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    if not _demo_ready():
        pytest.skip("the demo artifacts are not there: run `make demo` first (the README's first command)")
    if not SERVER_JS.is_file():
        pytest.fail("node_api is not built: run `make node-build` (`make demo` does)")
    from tests.helpers.pg import start_postgres

    pg = start_postgres()  # POST /feedback stores into a real PostgreSQL
    port = free_port()
    env = {**os.environ, "ARTIFACTS_DIR": str(DEMO), "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warn",
           "ARTIFACT_SCHEMA_DIR": str(REPO / "artifact_schema"), "FEEDBACK_DATABASE_URL": pg.uri}  # fmt: skip
    proc = subprocess.Popen([shutil.which("node") or "node", str(SERVER_JS)], env=env, cwd=REPO / "node_api",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"the server exited: {proc.stdout.read().decode()[-2000:] if proc.stdout else ''}"
                )
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the server did not become healthy in 120 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        pg.stop()


@pytest.mark.slow
@pytest.mark.parametrize("path", readme_curls())
def test_readme_curl_answers(server: str, path: str) -> None:
    with urllib.request.urlopen(server + path, timeout=30) as r:
        assert r.status == 200
        body = r.read()
    if r.headers.get("content-type", "").startswith("application/json"):
        json.loads(body)


@pytest.mark.slow
@pytest.mark.parametrize("path,body", readme_posts(), ids=lambda v: v if isinstance(v, str) else "")
def test_readme_post_answers(server: str, path: str, body: dict) -> None:
    req = urllib.request.Request(  # noqa: S310 (loopback URL built by the test)
        server + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
        assert r.status in (200, 201), (path, r.status)
        json.loads(r.read())


def test_readme_track_ids_are_in_the_demo_corpus() -> None:
    if not _demo_ready():
        pytest.skip("the demo artifacts are not there: run `make demo` first (the README's first command)")
    ids = set(json.loads((DEMO / "embeddings" / "track_ids.json").read_text())["track_ids"])
    named = set(re.findall(r"/tracks/([A-Za-z0-9._-]+)/", README))
    assert named and named <= ids, f"README track ids not in the demo corpus: {named - ids}"
