"""The ``research-job`` command line: one command per step, ``run`` for all of them, ``models`` for the registry.

Each command builds its step config (defaults < ``--config`` file < ``RESEARCH_JOB_<FIELD>`` env < flags), calls
the step's library function and maps known errors (:class:`ResearchJobError`) to exit code 2 with a one-line
``Error: ...`` message. Options are generated from the step's config dataclass, so flags and config keys match.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from research_job import __version__
from research_job.config import (
    EXTRA_SECTIONS,
    STEP_SECTIONS,
    CommonConfig,
    build_config,
    config_class,
    load_config_file,
)
from research_job.errors import ResearchJobError
from research_job.logging_setup import phase, setup_logging

LOG = logging.getLogger("research_job.cli")


class StepError(click.ClickException):
    """A known error of a step: ``Error: <one line>`` on stderr, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is_flag) of a dataclass field annotation."""
    hint = annotation
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    if hint is bool:
        return bool, True
    if hint is Path:
        return click.Path(path_type=Path), False
    if hint in (int, float, str):
        return hint, False
    return str, False


def _field_options(cls: type, names: set[str] | None = None) -> list[Callable[[Any], Any]]:
    hints = typing.get_type_hints(cls)
    opts = []
    for f in dataclasses.fields(cls):
        if f.name == "common" or (names is not None and f.name not in names):
            continue
        typ, is_flag = _click_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f"[{f.name}; env RESEARCH_JOB_{f.name.upper()}; default {default}]"
        if is_flag:
            opts.append(click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_))
        else:
            opts.append(click.option(flag, f.name, type=typ, default=None, help=help_))
    return opts


def _apply(opts: list[Callable[[Any], Any]], func: Any) -> Any:
    for opt in reversed(opts):
        func = opt(func)
    return func


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML or TOML config file (common keys + one section per step).",
)


def _load(config_file: Path | None) -> dict[str, Any]:
    try:
        return load_config_file(config_file)
    except ResearchJobError as e:
        raise StepError(str(e)) from e


def _step_module(section: str) -> Any:
    try:
        return importlib.import_module(f"research_job.steps.{section}")
    except ModuleNotFoundError as e:
        raise StepError(f"Step {section!r} is not available in this installation: {e}") from e


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="research-job")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Turn a music catalogue into versioned similarity-search artifacts.

    \b
    Steps: export-metadata -> pull-audio -> standardize-audio -> embed -> build-index -> evaluate -> validate
    Example:
      research-job run --config job.yaml --model dsp-stats
    """
    setup_logging(verbose)


EXAMPLES = {
    "export_metadata": "research-job export-metadata --database-url sqlite:///catalogue.sqlite --model dsp-stats",
    "pull_audio": "research-job pull-audio --source s3://my-bucket/catalogue --endpoint-url http://127.0.0.1:9000",
    "standardize_audio": "research-job standardize-audio --model dsp-stats --max-duration-sec 120",
    "embed": "research-job embed --model dsp-stats --batch-size 8 --postprocess none",
    "build_index": "research-job build-index --model dsp-stats --hnsw-m 16 --ef-search 64",
    "evaluate": "research-job evaluate --model dsp-stats --k 5 --bootstrap-resamples 1000",
    "validate": "research-job validate --model dsp-stats --version-dir artifacts/v1_model_dsp-stats",
    "publish": "research-job publish --model musicnn-msd --bucket my-artifacts --endpoint-url http://127.0.0.1:9000",
    "embed_segments": "research-job embed-segments --model dsp-stats --window-sec 30 --hop-sec 15",
    "compare_models": "research-job compare-models --version-dir artifacts/v1_model_dsp-stats "
    "--entries 'musicnn-msd,musicnn-msd#pca_whiten,dsp-stats,random' --out-dir artifacts/comparison",
    "find_similar": "research-job find-similar --query my_track.wav --artifacts artifacts/v1_model_dsp-stats --k 10",
}

SUMMARIES = {
    "export_metadata": "Export the catalogue (database or CSV) to metadata/tracks_metadata.csv.",
    "pull_audio": "Pull every track's audio object into audio_cache/ (retries, resumable).",
    "standardize_audio": "Decode audio_cache/ to mono float32 WAV at the model's sample rate in audio_wav/.",
    "embed": "Embed every track: embeddings.f32, track_ids.json, embeddings_meta.json (resumable).",
    "build_index": "Build the FAISS exact, FAISS HNSW and hnswlib cosine indexes and measure ANN recall.",
    "evaluate": "Composer-retrieval evaluation with exact search; writes eval/ and prints a table.",
    "validate": "Check a whole version folder (schemas, sizes, ids, norms, checksums); exit 2 on any problem.",
    "publish": "Publish a version folder to S3 (manifest last, then the latest pointer) or to PostgreSQL + pgvector.",
    "embed_segments": "Embed overlapping windows of every track: embeddings/segments.f32, segments.csv, segments_meta.json.",
    "compare_models": "Embed + evaluate several models on one exported corpus; writes comparison.json and comparison.md.",
    "find_similar": "Query by audio: the tracks most similar to one audio file, embedded like the corpus was.",
}


def _show(section: str, module: Any, cfg: Any, result: Any) -> str | None:
    """What a command prints after its step ran (None: nothing; the logs said it)."""
    if section in ("evaluate", "compare_models"):
        return str(module.format_table(result))
    if section == "validate":
        return f"OK: {result['version_dir']} is valid"
    if section == "publish":
        return json.dumps(result, indent=2, sort_keys=True, default=str)
    if section == "embed_segments":
        return str(module.format_summary(result))
    if section == "find_similar":
        return json.dumps(result, indent=2) if cfg.json else str(module.format_table(result))
    return None


def _make_step_command(section: str) -> click.Command:
    cls = config_class(section)
    name = section.replace("_", "-")

    def callback(config_file: Path | None, **kwargs: Any) -> None:
        file_data = _load(config_file)
        module = _step_module(section)
        try:
            cfg: Any = build_config(cls, file_data=file_data, section=section, overrides=kwargs)
            if section == "find_similar":
                # the model the user named explicitly (flag, env or file) is checked against the artifacts
                asked = kwargs.get("model") or os.environ.get("RESEARCH_JOB_MODEL") or file_data.get("model")
                result = module.run(cfg, model=asked)
            else:
                with phase(name, LOG):
                    result = module.run(cfg)
        except ResearchJobError as e:
            raise StepError(str(e)) from e
        text = _show(section, module, cfg, result)
        if text is not None:
            click.echo(text)

    help_text = f"{SUMMARIES[section]}\n\n\b\nExample:\n  {EXAMPLES[section]}"
    func = _apply([CONFIG_OPTION, *_field_options(CommonConfig), *_field_options(cls)], callback)
    return click.Command(
        name, callback=func, params=getattr(func, "__click_params__", [])[::-1], help=help_text
    )


for _section in [*STEP_SECTIONS, *EXTRA_SECTIONS]:
    cli.add_command(_make_step_command(_section))


def _run_fields() -> dict[str, set[str]]:
    """Step fields that belong to exactly one step: these get a flag on ``run`` (others via the config file)."""
    from research_job.steps.run_all import ORDER, step_fields

    seen: dict[str, int] = {}
    for s in ORDER:
        for f in step_fields(s):
            seen[f] = seen.get(f, 0) + 1
    return {s: {f for f in step_fields(s) if seen[f] == 1} for s in ORDER}


def _run_callback(config_file: Path | None, skip: tuple[str, ...], **kwargs: Any) -> None:
    from research_job.steps import run_all

    file_data = _load(config_file)
    try:
        configs = run_all.build_configs(file_data, {k: v for k, v in kwargs.items() if v is not None})
        results = run_all.run(configs, skip=[s.replace("-", "_") for s in skip])
    except ResearchJobError as e:
        raise StepError(str(e)) from e
    if "evaluate" in results:
        click.echo(_step_module("evaluate").format_table(results["evaluate"]))


def _make_run_command() -> click.Command:
    opts = [CONFIG_OPTION, *_field_options(CommonConfig)]
    for section, names in _run_fields().items():
        opts += _field_options(STEP_SECTIONS[section], names)
    opts.append(
        click.option("--skip", multiple=True, help="Step to leave out (repeatable), e.g. --skip pull-audio.")
    )
    func = _apply(opts, _run_callback)
    help_text = (
        "Run every step in order with the same functions as the single-step commands.\n\n"
        "Options shared by several steps (workers, seed, batch_size) are set per step in the config file.\n\n"
        "\b\nExample:\n  research-job run --database-url sqlite:///catalogue.sqlite --source ./objects --model dsp-stats"
    )
    return click.Command(
        "run", callback=func, params=getattr(func, "__click_params__", [])[::-1], help=help_text
    )


cli.add_command(_make_run_command())


@cli.command("models")
def models_cmd() -> None:
    """List the embedding models of the registry.

    \b
    Example:
      research-job models
    """
    from research_job.models.registry import DEFAULT_MODEL, MODELS, PREFIXES

    for name, entry in sorted(MODELS.items()):
        mark = " (default)" if name == DEFAULT_MODEL else ""
        click.echo(f"{name:<14}{entry.description}{mark}")
    for prefix, entry in PREFIXES.items():
        click.echo(f"{prefix + '<id>':<14}{entry.description}")


def main() -> None:
    """Console-script entry point ``research-job``."""
    cli(prog_name="research-job")


if __name__ == "__main__":
    main()
