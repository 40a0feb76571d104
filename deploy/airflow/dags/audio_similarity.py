"""Airflow DAG ``audio_similarity``: the research job's steps, nightly, with the embedding on a Ray cluster.

Every task shells out to ``research-job <step> --config <params.config>`` on an Airflow worker, in the order of
:data:`STEPS`: export-metadata -> pull-audio -> standardize-audio -> embed (``--engine ray``) -> train-head ->
build-index -> evaluate -> report -> previews -> validate -> publish. This file imports only Airflow (never
``research_job``), so the scheduler and the DAG processor need nothing of the research job installed; only the
workers that run the tasks do.

Which steps run is decided per run by the params (defaults below, overridable on "Trigger DAG w/ config"):

- ``embed_source`` unset: pull-audio and standardize-audio fill ``audio_cache/`` and ``audio_wav/`` first, as in
  ``research-job run``. Set (``s3://bucket/prefix``): embed reads each track straight from the object store on
  the Ray workers (``--stream-from``), and pull-audio, standardize-audio and previews are skipped (previews cut their
  excerpts from the pulled files, which then do not exist).
- ``base_version`` set: embed runs ``--incremental --base <base_version>`` (only new and changed tracks). Embed
  refuses ``--incremental`` with ``embed.frames``, so a run cannot combine it with ``train_head``.
- ``train_head`` false (default): train-head is skipped. True: it trains a head on the embedded frames (the
  config's ``embed.frames`` must be set) and writes a head version folder; point the later steps' sections of
  the config (``version_dir``) at that folder to index, evaluate and publish the head's vectors.
- ``publish_to``: ``s3`` or ``pgvector`` (``publish --to``); bucket, prefix and database URL come from the config.

Install into an Airflow 3 deployment (Airflow >= 3.0 with ``apache-airflow-providers-standard``, which Airflow
3.3 installs by default):

1. Copy this file into the deployment's DAGs folder (``[core] dags_folder``, by default ``$AIRFLOW_HOME/dags``),
   or into a DAG bundle, e.g. a git bundle that points at this repository's ``deploy/airflow/dags``.
2. On every worker that runs these tasks, install the research job (``pip install .`` of this repository, with
   its ray extra, or the research-job image as the worker image) so that ``research-job`` is on ``PATH``, and put
   the config file named by ``params.config`` there. The object-store credentials (``AWS_*``) and any
   ``RESEARCH_JOB_<FIELD>`` settings come from the worker's environment, exactly as for the CLI.
3. Start a Ray cluster the workers reach at ``params.ray_address`` (in docker-compose.yml: the ``ray-head`` and
   ``ray-worker`` services of the ``job`` profile, address ``ray-head:6379``). With a ``host:port`` address the
   Airflow worker must itself be a Ray node (``ray start --address=<head> --num-cpus=0`` once on it); otherwise
   use Ray Client, ``ray://<head>:10001`` (needs ``ray[client]`` on both sides). All nodes share
   ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``.
4. Check the file with Airflow's own loader before deploying: ``python -c "from airflow.dag_processing.dagbag
   import DagBag; print(DagBag(dag_folder='deploy/airflow/dags').import_errors)"`` must print ``{}``
   (tests/unit/test_airflow_dag.py does this when ``AIRFLOW_PYTHON`` names a Python with Airflow installed).

One run at a time (``max_active_runs=1``): two runs would write the same version folder. Every step is resumable
or skips what is complete and verified, so a retried task picks up where the failed try stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Param, TriggerRule

#: the research job's commands, in the order this DAG runs them (tests/unit/test_airflow_dag.py checks it against
#: the pipeline order of research_job.steps.registry() and the CLI)
STEPS = [
    "export-metadata",
    "pull-audio",
    "standardize-audio",
    "embed",
    "train-head",
    "build-index",
    "evaluate",
    "report",
    "previews",
    "validate",
    "publish",
]

#: what every command gets (rendered per run by Jinja)
COMMON_ARGS = "--config '{{ params.config }}'"

#: the flags beyond COMMON_ARGS that a command gets, by command (Jinja; the params' patterns keep them one word)
EXTRA_ARGS = {
    "embed": (
        "--engine ray --ray-address '{{ params.ray_address }}'"
        "{% if params.embed_source %} --stream-from '{{ params.embed_source }}'{% endif %}"
        "{% if params.base_version %} --incremental --base '{{ params.base_version }}'{% endif %}"
    ),
    "publish": "--to '{{ params.publish_to }}'",
}

#: the commands that run only when a gate (a short-circuit on the params) lets them, by command -> gate
GATED = {
    "pull-audio": "local_audio",
    "standardize-audio": "local_audio",
    "previews": "local_audio",
    "train-head": "train_head_wanted",
}

#: one shell word: a path, an s3:// URI or a host:port, without quotes, spaces or shell syntax
_WORD = r"^[A-Za-z0-9_./:@+=,-]+$"
_WORD_OR_EMPTY = r"^[A-Za-z0-9_./:@+=,-]*$"

PARAMS = {
    "config": Param(
        "/app/configs/compose.yaml",
        type="string",
        pattern=_WORD,
        description="the research job's config file on the worker (YAML or TOML, one section per step)",
    ),
    "ray_address": Param(
        "ray-head:6379",
        type="string",
        pattern=_WORD,
        description="host:port of the Ray cluster's head that embed connects to (embed --ray-address)",
    ),
    "embed_source": Param(
        "",
        type="string",
        pattern=_WORD_OR_EMPTY,
        description="s3://bucket/prefix: embed reads the audio straight from the store (pull-audio, "
        "standardize-audio and previews are skipped); empty: pull and standardize it first",
    ),
    "base_version": Param(
        "",
        type="string",
        pattern=_WORD_OR_EMPTY,
        description="version to extend: embed only the tracks it lacks (embed --incremental --base); "
        "empty: embed every track",
    ),
    "train_head": Param(
        False,
        type="boolean",
        description="train a head on the embedded frames after embed (needs embed.frames in the config)",
    ),
    "publish_to": Param(
        "s3",
        type="string",
        enum=["s3", "pgvector"],
        description="where publish puts the validated version (publish --to)",
    ),
}


def local_audio(params: dict) -> bool:
    """Gate: the audio is pulled to the worker (no ``embed_source``), so pull-audio and previews run."""
    return not params["embed_source"]


def train_head_wanted(params: dict) -> bool:
    """Gate: the run asked for train-head."""
    return bool(params["train_head"])


GATES = {"local_audio": local_audio, "train_head_wanted": train_head_wanted}


def command_of(step: str) -> str:
    """The shell command of a step's task (a Jinja template)."""
    return " ".join(filter(None, ["research-job", step, COMMON_ARGS, EXTRA_ARGS.get(step, "")]))


with DAG(
    dag_id="audio_similarity",
    description="Catalogue -> embeddings on Ray -> indexes, evaluation, report -> validated, published version",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    tags=["research-job", "ray"],
    doc_md=__doc__,
) as dag:
    previous = None
    for step in STEPS:
        task = BashOperator(
            task_id=step.replace("-", "_"),
            bash_command=command_of(step),
            # the step after a gated one runs whether that one ran or was skipped (never after a failure)
            trigger_rule=TriggerRule.NONE_FAILED,
        )
        if step in GATED:
            gate_name = GATED[step]
            gate = ShortCircuitOperator(
                task_id=f"{gate_name}_for_{task.task_id}",
                python_callable=GATES[gate_name],
                # skip only the gated step; the steps after it keep their own trigger rule
                ignore_downstream_trigger_rules=False,
                trigger_rule=TriggerRule.NONE_FAILED,
                retries=0,
            )
            if previous is not None:
                previous >> gate
            gate >> task
        elif previous is not None:
            previous >> task
        previous = task
