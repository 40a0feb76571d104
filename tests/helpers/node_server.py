"""What the Python tests that talk to the real Node API share: the compiled server (built when missing), a free
loopback port, and a GET that returns the status and the JSON body."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_API = REPO / "node_api"
#: the compiled entry point; NODE_API_SERVER points the tests at another build
SERVER_JS = Path(os.environ.get("NODE_API_SERVER", NODE_API / "dist" / "src" / "server.js"))


def node_server_js() -> Path:
    """The compiled server; built here when the Node dependencies are installed but dist/ is not."""
    if SERVER_JS.is_file():
        return SERVER_JS
    if shutil.which("npm") is None or not (NODE_API / "node_modules").is_dir():
        pytest.fail("node_api is not installed: run `make node-build` (`make demo` and `make test` do)")
    subprocess.run(["npm", "run", "build:prod"], cwd=NODE_API, check=True, capture_output=True, timeout=300)
    return SERVER_JS


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> tuple[int, dict]:
    """GET ``url``: (status, JSON body; ``{}`` for an empty error body)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 (loopback URL built by the test)
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@contextlib.contextmanager
def running_server(artifacts_dir: Path, **env_extra: str) -> Iterator[str]:
    """The compiled Node server serving ``artifacts_dir`` on a free loopback port, healthy; its base URL.

    ``env_extra`` adds environment variables (``RECALL_SAMPLE="64"``...). The server is stopped on exit; a
    server that exits or is not healthy within 120 s fails the test with its last output."""
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the tests that talk to the Node API need Node 20")
    port = free_port()
    env = {
        **os.environ,
        "ARTIFACTS_DIR": str(artifacts_dir),
        "ARTIFACT_SCHEMA_DIR": str(REPO / "artifact_schema"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warn",
        **env_extra,
    }
    proc = subprocess.Popen(
        ["node", str(node_server_js())],
        cwd=NODE_API,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"node_api exited with {proc.returncode}: {out[-2000:]}")
            try:
                if get_json(base + "/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("node_api did not become healthy within 120 s")
            time.sleep(0.1)  # polling a child process's readiness, bounded by the deadline above
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
