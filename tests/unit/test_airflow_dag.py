"""The Airflow DAG (deploy/airflow/dags/audio_similarity.py) against the research job it shells out to.

Without Airflow (always): the DAG module is parsed with ``ast``, never imported. Its ``STEPS`` must hold every
pipeline step of :func:`research_job.steps.pipeline` in the order ``research-job run`` runs them (a step added to
the pipeline but not to the DAG fails here), plus only real commands outside the pipeline; every command it
runs must be a command of the click CLI, and every flag it passes one that command accepts (a value flag with a
value, a literal value one of the option's choices).

With Airflow (when ``AIRFLOW_PYTHON`` names a Python that has it, e.g. ``/tmp/airflow-venv/bin/python``):
Airflow's own loader (``DagBag``) imports the file in a subprocess with a fresh ``AIRFLOW_HOME``; it must report
no import errors, chain the steps' tasks in ``STEPS`` order, and render, for each combination of params, commands
that the CLI parses (types and choices included).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from research_job.cli import cli
from research_job.steps import pipeline, registry

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "deploy" / "airflow" / "dags" / "audio_similarity.py"
DAG_ID = "audio_similarity"

#: the module-level literals of the DAG file that this test reads
NAMES = ("STEPS", "COMMON_ARGS", "EXTRA_ARGS", "GATED")


def _dag_literals() -> dict[str, Any]:
    """The DAG file's :data:`NAMES`, evaluated as literals from its syntax tree (the file is not imported)."""
    tree = ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))
    found: dict[str, Any] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in NAMES
        ):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    missing = [n for n in NAMES if n not in found]
    assert not missing, f"{DAG_FILE.name} defines no module-level literal {missing} (expected {list(NAMES)})"
    return found


def _pipeline_commands() -> list[str]:
    """The commands of ``research-job run``, in the order of their ``pipeline`` numbers."""
    return [s.command for s in sorted(pipeline(), key=lambda s: s.pipeline or 0)]


def pipeline_drift(dag_steps: list[str], pipeline_commands: list[str], known: set[str]) -> list[str]:
    """What is wrong with a DAG's step list against the pipeline order and the known commands (empty: nothing)."""
    problems = []
    missing = [c for c in pipeline_commands if c not in dag_steps]
    if missing:
        problems.append(f"pipeline steps missing from the DAG: {missing}")
    dupes = sorted({c for c in dag_steps if dag_steps.count(c) > 1})
    if dupes:
        problems.append(f"steps listed twice: {dupes}")
    in_dag = [c for c in dag_steps if c in pipeline_commands]
    if not missing and in_dag != pipeline_commands:
        problems.append(f"pipeline steps out of order: DAG {in_dag}, pipeline {pipeline_commands}")
    unknown = [c for c in dag_steps if c not in known]
    if unknown:
        problems.append(f"not research-job commands: {unknown} (known: {sorted(known)})")
    return problems


def _command(name: str) -> click.Command:
    cmd = cli.commands.get(name)
    assert cmd is not None, (
        f"the DAG runs `research-job {name}`, which the CLI lacks (commands: {sorted(cli.commands)})"
    )
    return cmd


def _options(cmd: click.Command) -> dict[str, click.Option]:
    """Every spelling of every option of a command (``--x`` and ``--no-x``) -> the option."""
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in [*p.opts, *p.secondary_opts]}


def flag_problems(command: str, args: str) -> list[str]:
    """What the CLI would refuse in ``args`` (a Jinja template) of ``research-job <command>``: unknown flags,
    a value flag without a value, a literal value outside the option's choices, a stray word.

    Jinja ``{% %}`` tags are dropped (every conditional part counts) and each ``{{ }}`` is one value.
    """
    text = re.sub(r"{%.*?%}", " ", args)
    text = re.sub(r"{{.*?}}", "\x00", text)
    words = shlex.split(text)
    opts = _options(_command(command))
    problems, i = [], 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            problems.append(f"{command}: stray word {word!r}")
            i += 1
            continue
        opt = opts.get(word)
        if opt is None:
            problems.append(f"{command}: no option {word} (it has {sorted(opts)})")
            i += 2 if i + 1 < len(words) and not words[i + 1].startswith("--") else 1
            continue
        if opt.is_flag:
            i += 1
            continue
        if i + 1 >= len(words) or words[i + 1].startswith("--"):
            problems.append(f"{command}: {word} needs a value")
            i += 1
            continue
        value = words[i + 1]
        if "\x00" not in value and isinstance(opt.type, click.Choice) and value not in opt.type.choices:
            problems.append(f"{command}: {word} {value!r} is not one of {list(opt.type.choices)}")
        i += 2
    return problems


# ---------------------------------------------------------------- without Airflow


def test_dag_steps_are_the_pipeline_in_order_plus_real_commands() -> None:
    steps = _dag_literals()["STEPS"]
    known = {s.command for s in registry().values()}
    assert pipeline_drift(steps, _pipeline_commands(), known) == []
    # the steps outside `run`: train-head needs embed's frames and feeds build-index; publish ships the validated
    assert steps.index("embed") < steps.index("train-head") < steps.index("build-index")
    assert steps[-2:] == ["validate", "publish"]


def test_pipeline_drift_catches_a_new_step_and_a_swap() -> None:
    pipe = ["export-metadata", "embed", "build-index"]
    known = {*pipe, "publish", "new-step"}
    assert pipeline_drift([*pipe, "publish"], pipe, known) == []
    assert pipeline_drift(["export-metadata", "embed", "publish"], pipe, known) == [
        "pipeline steps missing from the DAG: ['build-index']"
    ]
    assert "out of order" in pipeline_drift(["embed", "export-metadata", "build-index"], pipe, known)[0]
    assert "not research-job commands: ['typo']" in pipeline_drift([*pipe, "typo"], pipe, known)[0]


def test_every_command_and_flag_of_the_dag_is_in_the_cli() -> None:
    lit = _dag_literals()
    steps, extra, gated = lit["STEPS"], lit["EXTRA_ARGS"], lit["GATED"]
    assert set(extra) <= set(steps), f"EXTRA_ARGS names steps the DAG does not run: {set(extra) - set(steps)}"
    assert set(gated) <= set(steps), f"GATED names steps the DAG does not run: {set(gated) - set(steps)}"
    problems = [
        p for step in steps for p in flag_problems(step, f"{lit['COMMON_ARGS']} {extra.get(step, '')}")
    ]
    assert problems == []


def test_flag_problems_reports_unknown_flags_values_and_choices() -> None:
    assert flag_problems("publish", "--config '{{ params.config }}' --to s3 --no-force") == []
    assert flag_problems("publish", "--to ftp") == ["publish: --to 'ftp' is not one of ['s3', 'pgvector']"]
    assert flag_problems("publish", "--bucket") == ["publish: --bucket needs a value"]
    assert flag_problems("publish", "--nope x")[:1] == [
        "publish: no option --nope (it has " + repr(sorted(_options(_command("publish")))) + ")",
    ]


def test_dag_file_imports_airflow_and_the_standard_library_only() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    modules = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    roots = {m.split(".")[0] for m in modules}
    assert "research_job" not in roots, "the DAG shells out to research-job; it must not import research_job"
    assert roots - {"airflow", "__future__"} <= set(sys.stdlib_module_names), roots
    assert ast.get_docstring(tree), "the DAG module needs its docstring (how to install it)"


# ---------------------------------------------------------------- with Airflow's own loader

#: run by AIRFLOW_PYTHON: load the folder with DagBag, print the import errors, the tasks and rendered commands
_LOADER = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

folder, dag_id, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
bag = DagBag(dag_folder=folder)
out = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
dag = bag.dags.get(dag_id)
if dag is not None:
    env = dag.get_template_env()
    defaults = {k: dag.params[k] for k in dag.params}
    out["schedule"] = str(dag.schedule)
    out["catchup"] = dag.catchup
    out["max_active_runs"] = dag.max_active_runs
    out["tasks"] = [
        {
            "task_id": t.task_id,
            "upstream": sorted(t.upstream_task_ids),
            "retries": t.retries,
            "trigger_rule": str(t.trigger_rule.value),
            "rendered": [
                env.from_string(t.bash_command).render(params={**defaults, **case})
                for case in cases
            ] if hasattr(t, "bash_command") else None,
        }
        for t in dag.topological_sort()
    ]
print(json.dumps(out))
"""

#: param combinations rendered for every task (on top of the DAG's defaults)
CASES = [
    {},
    {"embed_source": "s3://catalogue-audio/", "base_version": "artifacts/v1_model_base", "train_head": True},
    {"publish_to": "pgvector", "ray_address": "10.0.0.5:6379"},
]


def _airflow_python() -> str:
    python = os.environ.get("AIRFLOW_PYTHON", "")
    if not python:
        pytest.skip(
            "AIRFLOW_PYTHON is unset: no Python with Airflow to load the DAG (e.g. /tmp/airflow-venv/bin/python)"
        )
    if not os.access(python, os.X_OK):
        pytest.skip(f"AIRFLOW_PYTHON={python!r} is not an executable")
    return python


def test_dagbag_loads_the_dag_and_its_commands_parse(tmp_path: Path) -> None:
    python = _airflow_python()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")},
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
    }
    proc = subprocess.run(
        [python, "-c", _LOADER, str(DAG_FILE.parent), DAG_ID, json.dumps(CASES)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["import_errors"] == {}
    assert got["dag_ids"] == [DAG_ID]
    assert got["catchup"] is False and got["max_active_runs"] == 1
    assert re.fullmatch(r"\d+ \d+ \* \* \*", got["schedule"]), f"not a nightly cron: {got['schedule']!r}"
    tasks = {t["task_id"]: t for t in got["tasks"]}

    steps = _dag_literals()["STEPS"]
    ids = [s.replace("-", "_") for s in steps]
    order = [t["task_id"] for t in got["tasks"] if t["rendered"] is not None]
    assert order == ids, "the bash tasks must run in STEPS order"
    for before, after in zip(ids, ids[1:], strict=False):
        ancestors, todo = set(), list(tasks[after]["upstream"])
        while todo:
            t = todo.pop()
            if t not in ancestors:
                ancestors.add(t)
                todo += tasks[t]["upstream"]
        assert before in ancestors, f"{after} does not wait for {before}"
    for task_id in ids:
        assert tasks[task_id]["retries"] >= 1, f"{task_id} has no retries"

    for task_id, step in zip(ids, steps, strict=True):
        for case, line in zip(CASES, tasks[task_id]["rendered"], strict=True):
            words = shlex.split(line)
            assert words[:2] == ["research-job", step], line
            cmd = _command(step)
            try:
                ctx = cmd.make_context(step, words[2:])
            except click.UsageError as e:
                pytest.fail(f"`{line}` (params {case}): {e.format_message()}")
            if step == "embed":
                assert ctx.params.get("engine") == "ray" and ctx.params.get("ray_address"), line
                base = case.get("base_version")
                assert (str(ctx.params.get("base")) == base) if base else "--incremental" not in words, line
