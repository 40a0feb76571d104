"""Secrets in database / object-store URLs never reach a message: :func:`research_job.io.database.redact_text`.

Every URL shape an operator may paste is covered: a userinfo password (plain, percent-encoded, with a raw ``#``
or ``/``), ``?password=`` / ``&password=`` / ``sslpassword`` query parameters in any case, libpq keyword strings
(``password=s3cret``, ``password='with space'``), a malformed URL that no parser accepts, URLs inside longer
messages, and S3 / HTTP URLs with credentials. The real paths run too: ``research-job export-metadata
--database-url`` and ``research-job publish --to pgvector --database-url`` through the CLI (in process and as
a subprocess), each to a closed port on 127.0.0.1, must exit 2 with a one-line ``Error:`` and show the secret
nowhere: not in stdout, stderr, the log, the exception or its chain.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from research_job.cli import cli
from research_job.errors import MetadataError, ResearchJobError, StorageError
from research_job.io.database import redact_text, redact_url

SECRET = "s3cret"
# (URL, the strings that must not appear): every one points at port 9 on 127.0.0.1, where nothing listens
PG_SHAPES = [
    ("postgresql://app:s3cret@127.0.0.1:9/db?connect_timeout=2", [SECRET]),
    ("postgresql://app:s3%2Fcr%40et@127.0.0.1:9/db?connect_timeout=2", ["s3%2Fcr%40et", "s3/cr@et"]),
    ("postgresql://app:s3#cret@127.0.0.1:9/db?connect_timeout=2", ["s3#cret"]),
    ("postgresql://app:s3/cret@127.0.0.1:9/db?connect_timeout=2", ["s3/cret"]),
    ("postgresql://app@127.0.0.1:9/db?password=s3cret&connect_timeout=2", [SECRET]),
    ("postgresql://app@127.0.0.1:9/db?connect_timeout=2&password=s3cret", [SECRET]),
    ("postgresql://app@127.0.0.1:9/db?connect_timeout=2&PassWord=s3cret", [SECRET]),
    ("postgresql://app@127.0.0.1:9/db?connect_timeout=2&SSLPASSWORD=s3cret", [SECRET]),
    ("postgres://app:s3cret@127.0.0.1:9/db?connect_timeout=2", [SECRET]),
    ("postgresql+psycopg://app:s3cret@127.0.0.1:9/db?connect_timeout=2", [SECRET]),
    ("host=127.0.0.1 port=9 password=s3cret connect_timeout=2", [SECRET]),
    ("host=127.0.0.1 port=9 password='with s3cret space' connect_timeout=2", [SECRET, "with s", "space'"]),
    ("postgresql://app:s3cret@[::1:1/c", [SECRET]),
]
SHAPE_IDS = [
    "userinfo",
    "percent-encoded",
    "raw-hash",
    "raw-slash",
    "query-first",
    "query-amp",
    "query-case",
    "sslpassword",
    "postgres-scheme",
    "sqlalchemy-scheme",
    "keyword",
    "keyword-quoted",
    "malformed",
]


def assert_clean(text: str, secrets: list[str]) -> None:
    for s in secrets:
        assert s not in text, f"{s!r} leaked in: {text}"


# --- the function -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("postgresql://app:s3cret@host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:s3%21cr%40et@host:5432/db", "postgresql://app:***@host:5432/db"),
        ("postgresql://app:s3#cr/et@host/db", "postgresql://app:***@host/db"),
        ("postgresql://:s3cret@host/db", "postgresql://:***@host/db"),
        ("postgresql://app@host/db?password=s3cret", "postgresql://app@host/db?password=***"),
        (
            "postgresql://app@host/db?sslmode=require&password=s3cret",
            "postgresql://app@host/db?sslmode=require&password=***",
        ),
        (
            "postgresql://app@host/db?Password=s3cret&sslmode=require",
            "postgresql://app@host/db?Password=***&sslmode=require",
        ),
        ("postgresql://app@host/db?sslpassword=s3cret", "postgresql://app@host/db?sslpassword=***"),
        ("postgresql://app@host/db?SSLPassword=s3cret#frag", "postgresql://app@host/db?SSLPassword=***"),
        ("host=h port=5432 password=s3cret dbname=x", "host=h port=5432 password=*** dbname=x"),
        ("host=h password = s3cret", "host=h password = ***"),
        ("host=h password='with space' user=u", "host=h password=*** user=u"),
        ("host=h password='it\\'s s3cret' user=u", "host=h password=*** user=u"),
        ("host=h password='unterminated s3cret", "host=h password=***"),
        ("postgresql://app:s3cret@[::1:1/c", "postgresql://app:***@[::1:1/c"),
        (
            'invalid URI: "postgresql://app:s3cret@[::1:1/c" (at char 25)',
            'invalid URI: "postgresql://app:***@[::1:1/c" (at char 25)',
        ),
        (
            "Cannot connect to postgresql://a:s3cret@h/db, then to http://b:t0ken@minio:9000/x: refused",
            "Cannot connect to postgresql://a:***@h/db, then to http://b:***@minio:9000/x: refused",
        ),
        ("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/key", "s3://AKIAEXAMPLE:***@bucket/key"),
        (
            "https://minio:9000/b/k?X-Amz-Signature=abc123&X-Amz-Expires=60",
            "https://minio:9000/b/k?X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        ("{'password': 's3cret', 'host': 'h'}", "{'password': ***, 'host': 'h'}"),
        ('{"password":"s3cret","host":"h"}', '{"password":***,"host":"h"}'),
        # nothing secret: unchanged
        ("postgresql://app@host:5432/db?sslmode=require", "postgresql://app@host:5432/db?sslmode=require"),
        ("sqlite:///a/b.sqlite", "sqlite:///a/b.sqlite"),
        (
            "s3://bucket/vector-artifacts/v1_model_x/latest.json",
            "s3://bucket/vector-artifacts/v1_model_x/latest.json",
        ),
        ("the passwordless login failed", "the passwordless login failed"),
    ],
)
def test_redact_text_hides_every_shape(text: str, want: str) -> None:
    assert redact_text(text) == want
    assert redact_url(text) == want
    if "://" in want:
        assert redact_text(want) == want  # a redacted URL stays as it is when redacted again


def test_redact_text_scrubs_the_urls_secrets_wherever_they_appear() -> None:
    # a driver message may quote the decoded password on its own, outside any URL
    url = "postgresql://app:s3%2Fcr%40et@h/db?sslpassword=k3y%21"
    msg = 'password "s3/cr@et" rejected; bad key k3y! (raw s3%2Fcr%40et)'
    assert redact_text(msg, url) == 'password "***" rejected; bad key *** (raw ***)'
    # the URL's secrets are found in a URL no parser accepts too
    assert redact_text("token s3cret is bad", "postgresql://app:s3cret@[::1:1/c") == "token *** is bad"
    assert redact_text("x='with space' y", "host=h password='with space'") == "x='***' y"


# --- export-metadata --database-url -------------------------------------------------------------------------


def run_cli(args: list[str]) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output, result.exception


@pytest.mark.parametrize(("url", "secrets"), PG_SHAPES, ids=SHAPE_IDS)
def test_export_metadata_cli_never_shows_the_secret(
    tmp_path: Path, url: str, secrets: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, exc = run_cli(
        ["export-metadata", "--version-dir", str(tmp_path / "v1_model_x"), "--database-url", url]
    )
    assert code == 2 and isinstance(exc, SystemExit), out
    assert out.splitlines()[-1].startswith("Error: ") and "Traceback" not in out
    assert_clean(out + caplog.text, secrets)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://app:s3cret@host/x.sqlite",
        "mysql://app:s3cret@127.0.0.1:9/db",
        "sqlite:///x.sqlite?password=s3cret",
    ],
)
def test_export_metadata_other_schemes_never_show_the_secret(tmp_path: Path, url: str) -> None:
    code, out, exc = run_cli(
        ["export-metadata", "--version-dir", str(tmp_path / "v1_model_x"), "--database-url", url]
    )
    assert code == 2 and isinstance(exc, SystemExit), out
    assert out.startswith("Error: ") or "\nError: " in out
    assert_clean(out, [SECRET])


def chain_text(e: BaseException) -> str:
    """Everything a traceback of ``e`` would print, its chain included, plus the reprs along the chain."""
    parts = ["".join(traceback.format_exception(e))]
    seen: BaseException | None = e
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(("url", "secrets"), PG_SHAPES, ids=SHAPE_IDS)
def test_catalogue_errors_and_their_chain_never_carry_the_secret(
    tmp_path: Path, url: str, secrets: list[str]
) -> None:
    from research_job.config import build_config
    from research_job.steps import export_metadata

    cfg = build_config(
        export_metadata.ExportMetadataConfig,
        section="export_metadata",
        env={},
        overrides={"version_dir": str(tmp_path / "v1_model_x"), "database_url": url},
    )
    with pytest.raises(ResearchJobError) as ei:
        export_metadata.run(cfg)
    assert_clean(chain_text(ei.value), secrets)
    if isinstance(ei.value, MetadataError):
        assert ei.value.__cause__ is None and ei.value.__suppress_context__


# --- publish --to pgvector --database-url ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.artifact_factory import make_version

    # eval/ left out: these tests are about the database URL, not the evaluation
    corpus = make_version(tmp_path_factory.mktemp("art"), n=10, dim=4, indexes=("hnswlib",), with_eval=False)
    return corpus.layout.version_dir


@pytest.mark.parametrize(("url", "secrets"), PG_SHAPES, ids=SHAPE_IDS)
def test_publish_pgvector_cli_never_shows_the_secret(
    version_dir: Path, url: str, secrets: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    args = ["publish", "--to", "pgvector", "--version-dir", str(version_dir), "--database-url", url]
    code, out, exc = run_cli(args)
    assert code == 2 and isinstance(exc, SystemExit), out
    assert (
        out.splitlines()[-1].startswith("Error: Cannot connect to pgvector database ")
        and "Traceback" not in out
    )
    assert_clean(out + caplog.text, secrets)


@pytest.mark.parametrize(("url", "secrets"), PG_SHAPES, ids=SHAPE_IDS)
def test_publish_pgvector_errors_and_their_chain_never_carry_the_secret(
    version_dir: Path, url: str, secrets: list[str]
) -> None:
    from research_job.publish.pgvector import publish_pgvector

    with pytest.raises(StorageError) as ei:
        publish_pgvector(version_dir, database_url=url)
    assert_clean(chain_text(ei.value), secrets)
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


@pytest.mark.parametrize(
    ("url", "secrets"),
    [PG_SHAPES[0], PG_SHAPES[6], PG_SHAPES[11], PG_SHAPES[12]],
    ids=["userinfo", "query-case", "keyword-quoted", "malformed"],
)
def test_publish_as_a_process_exits_cleanly_without_the_secret(
    version_dir: Path, url: str, secrets: list[str]
) -> None:
    exe = Path(sys.executable).with_name("research-job")
    args = [
        str(exe),
        "-v",
        "publish",
        "--to",
        "pgvector",
        "--version-dir",
        str(version_dir),
        "--database-url",
        url,
    ]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.splitlines()[-1].startswith("Error: ")
    assert_clean(p.stdout + p.stderr, secrets)


# --- the log and uncaught exceptions ----------------------------------------------------------------------------


def test_the_cli_log_and_an_uncaught_traceback_are_redacted() -> None:
    """Defence in depth: whatever a module logs, and a traceback nobody caught, pass through redact_text."""
    code = (
        "import logging\n"
        "from research_job.logging_setup import setup_logging\n"
        "setup_logging()\n"
        "log = logging.getLogger('research_job.x')\n"
        "log.info('to %s', 'postgresql://app:s3cret@h/db')\n"
        "try:\n"
        "    raise ValueError('bad host=h password=s3cret')\n"
        "except ValueError:\n"
        "    log.exception('failed')\n"
        "raise RuntimeError('postgresql://app@h/db?password=s3cret')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "to postgresql://app:***@h/db" in p.stderr
    assert "ValueError: bad host=h password=***" in p.stderr
    assert "RuntimeError: postgresql://app@h/db?password=***" in p.stderr
    assert SECRET not in p.stderr + p.stdout


@pytest.mark.parametrize(
    "text",
    [
        "missing in pgvector postgresql://app:***@h/db?host=/x&password=***: nothing was published",
        "connect failed: password=*** (host=h)",
        "postgresql://app:s3cret@h/db?password=s3cret",
    ],
)
def test_redacting_twice_changes_nothing(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once
    assert "s3cret" not in once
    # a value that merely starts with the mask is still a secret
    assert redact_text("password=***s3cret") == "password=***"
