"""Shared pytest fixtures (real services, seeded data). Helpers live in ``tests/helpers``.

Session-scoped, started once and reused by every test that asks for them:

* ``postgres`` -> :class:`tests.helpers.pg.Postgres`: a real PostgreSQL (pgserver) in a fresh temporary
  directory (removed afterwards); create your own uniquely named tables.
* ``moto_s3`` -> :class:`tests.helpers.s3server.MotoS3`: moto's S3 server on 127.0.0.1; use your own bucket
  names (or ``moto_s3.reset()``).
* ``audio_files`` -> ``{ext: Path}``: the same seeded 2 s, 44.1 kHz signal in every codec of
  :data:`tests.helpers.audio_fixtures.CODECS` (m4a/AAC, mp3, ogg/vorbis, flac, wav).

Function-scoped:

* ``aws_env``: dummy AWS credentials and region in the environment (the standard chain finds them), with
  no shared config files, so boto3 never reads the developer's own credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.audio_fixtures import write_all_codecs

AUDIO_SECONDS = 2.0
AUDIO_RATE = 44100


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    from tests.helpers.pg import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[object]:
    from tests.helpers.s3server import MotoS3

    with MotoS3() as server:
        yield server


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_all_codecs(tmp_path_factory.mktemp("audio"), AUDIO_SECONDS, AUDIO_RATE, seed=0)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
