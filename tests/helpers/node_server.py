"""What the Python tests that talk to the real Node API share: the compiled server (built when missing), a free
loopback port, and a GET that returns the status and the JSON body."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
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
