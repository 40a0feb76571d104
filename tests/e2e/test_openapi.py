"""The Node API's served OpenAPI document is valid and the server keeps to it under generated requests.

The real Node server (``node_api/dist/src/server.js``, or the file ``$NODE_API_SERVER`` names) serves a
demo-like version folder: 128 tracks of dim 400 written by the test factory, then the research job's own
``build-index`` (HNSW index and neighbour table) and ``evaluate`` steps. Then:

- ``openapi-spec-validator`` accepts ``GET /openapi.json`` (OpenAPI 3.1: its schemas are JSON Schema 2020-12);
- the document publishes what a client needs to call the server: the loaded dim as the length of
  ``POST /search``'s vector, a catalogue track id as the example of every ``{trackId}`` path parameter;
- a seeded, bounded Schemathesis run (every phase but stateful, ``--checks all``, a few seconds per
  operation) against the running server finds no failure: no 5xx, every response in the document with a
  body matching its schema, 405 with ``Allow`` for undeclared methods, invalid requests rejected, valid ones
  accepted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from research_job.config import CommonConfig
from research_job.layout import ArtifactLayout
from research_job.steps import build_index, evaluate
from research_job.steps.build_index import BuildIndexConfig
from research_job.steps.evaluate import EvaluateConfig
from tests.helpers.artifact_factory import make_version
from tests.helpers.node_server import get_json, running_server
from tests.helpers.pg import start_postgres
from tests.helpers.recs_factory import add_recs

pytestmark = pytest.mark.slow

N, DIM = 128, 400
#: Schemathesis bounds: test cases per operation and seed (a run takes a few seconds per operation)
MAX_EXAMPLES, SEED = 40, 20261122


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> ArtifactLayout:
    root = tmp_path_factory.mktemp("openapi")
    corpus = make_version(
        root, n=N, dim=DIM, n_composers=10, album_size=8, seed=3, indexes=("hnswlib",), with_eval=False
    )
    layout = corpus.layout
    common = CommonConfig(version_dir=layout.version_dir, model="fake-model")
    build_index.run(BuildIndexConfig(common=common, recall_queries=N))
    evaluate.run(EvaluateConfig(common=common, bootstrap_resamples=20))
    add_recs(corpus, root / "events.csv")  # so the recommendation endpoints serve, not 503
    return layout


@pytest.fixture(scope="module")
def server(version: ArtifactLayout) -> Iterator[str]:
    pg = start_postgres()  # POST /feedback stores into a real PostgreSQL
    try:
        with running_server(version.version_dir, RECALL_SAMPLE=str(N), FEEDBACK_DATABASE_URL=pg.uri) as base:
            yield base
    finally:
        pg.stop()


def test_the_served_document_is_valid_openapi(server: str) -> None:
    status, doc = get_json(server + "/openapi.json")
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises OpenAPIValidationError naming the offending part


def test_the_document_gives_the_loaded_dim_and_a_real_track_id(server: str, version: ArtifactLayout) -> None:
    doc = get_json(server + "/openapi.json")[1]
    vector = doc["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ]["vector"]
    assert (vector["minItems"], vector["maxItems"]) == (DIM, DIM)
    ids = json.loads(version.track_ids_json.read_text(encoding="utf-8"))["track_ids"]
    for path in ("/tracks/{trackId}/nearest", "/tracks/{trackId}/composer-eval"):
        (param,) = [p for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "path"]
        assert param["example"] in ids, param
        assert get_json(server + path.replace("{trackId}", param["example"]))[0] == 200


#: POST /radio/generate takes an opaque continuation token (base64url JSON the API wrote): no schema can say
#: which strings are tokens, so a made-up one is rightly a 400 there; every other check still runs on it.
SCHEMATHESIS_TOML = """
# every check (as --checks all would, but a CLI flag would override the per-operation line below)
checks.enabled = true

[[operations]]
include-path = "/radio/generate"
checks.positive_data_acceptance.enabled = false
"""


def test_schemathesis_finds_no_failure(server: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_TOML, encoding="utf-8")
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{server}/openapi.json",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, f"schemathesis failed:\n{out.stdout[-12000:]}\n{out.stderr[-3000:]}"
    print(out.stdout[-1500:])  # the run's summary (phases, test cases), shown with pytest -s
