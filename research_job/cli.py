"""The ``research-job`` command line: one command per step of :func:`research_job.steps.registry`, ``run`` for the
pipeline, ``models`` for the registry.

Each command builds its step config (defaults < ``--config`` file < ``RESEARCH_JOB_<FIELD>`` env < flags), which
checks every value before anything is read or written, calls the step's library function and maps known errors
(:class:`ResearchJobError`) to exit code 2 with a one-line ``Error: ...`` message. Options are generated from the
step's config dataclass (each field's help and choices come from :func:`research_job.config.option`), so flags
and config keys always match.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from research_job import __version__
from research_job.config import CommonConfig, build_config, field_help, fields_of, load_config_file
from research_job.errors import ResearchJobError
from research_job.logging_setup import phase, setup_logging
from research_job.steps import Step, pipeline, registry

LOG = logging.getLogger("research_job.cli")


class StepError(click.ClickException):
    """A known error of a step: ``Error: <one line>`` on stderr, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def _click_type(annotation: Any, choices: tuple[str, ...] | None) -> tuple[Any, bool]:
    """(click type, is_flag) of a dataclass field annotation."""
    hint = annotation
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    if hint is bool:
        return bool, True
    if choices:
        return click.Choice(choices), False
    if hint is Path:
        return click.Path(path_type=Path), False
    if hint in (int, float, str):
        return hint, False
    return str, False


def _show_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value) if str(value) != "" else '""'


def _field_options(cls: type, names: set[str] | None = None) -> list[Callable[[Any], Any]]:
    """One click option per settable field: its help line, its choices, its default and environment variable."""
    hints = fields_of(cls)
    opts = []
    for f in dataclasses.fields(cls):
        if f.name not in hints or (names is not None and f.name not in names):
            continue
        text, choices = field_help(f)
        typ, is_flag = _click_type(hints[f.name], choices)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f"{text} [default: {_show_default(default)}; env RESEARCH_JOB_{f.name.upper()}]"
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
    help="YAML or TOML config file: common keys plus one section per step (see configs/demo.yaml).",
)


def _load(config_file: Path | None) -> dict[str, Any]:
    try:
        return load_config_file(config_file)
    except ResearchJobError as e:
        raise StepError(str(e)) from e


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="research-job")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Turn a music catalogue into versioned similarity-search artifacts.

    \b
    Steps of `run`: {steps}
    Every command works in <artifacts-root>/v1_model_<MODEL>, or in --version-dir when given.
    Example:
      research-job run --config configs/demo.yaml
    """
    setup_logging(verbose)


def _make_step_command(step: Step) -> click.Command:
    def callback(config_file: Path | None, **kwargs: Any) -> None:
        file_data = _load(config_file)
        try:
            cfg: Any = build_config(step.config, file_data=file_data, section=step.name, overrides=kwargs)
            if step.check is not None:
                step.check(cfg)
            if step.log_phase:
                with phase(step.command, LOG):
                    result = step.run(cfg)
            else:
                result = step.run(cfg)
        except ResearchJobError as e:
            raise StepError(str(e)) from e
        text = step.show(cfg, result) if step.show is not None else None
        if text is not None:
            click.echo(text)

    help_text = f"{step.summary}\n\n\b\nExample:\n  {step.example}"
    func = _apply([CONFIG_OPTION, *_field_options(CommonConfig), *_field_options(step.config)], callback)
    return click.Command(
        step.command,
        callback=func,
        params=getattr(func, "__click_params__", [])[::-1],
        help=help_text,
        short_help=step.summary,
    )


for _step in registry().values():
    cli.add_command(_make_step_command(_step))
cli.help = (cli.help or "").replace("{steps}", " -> ".join(s.command for s in pipeline()))


def _run_fields() -> dict[str, set[str]]:
    """Step fields that belong to exactly one pipeline step: these get a flag on ``run`` (others via the file)."""
    seen: dict[str, int] = {}
    for s in pipeline():
        for f in fields_of(s.config):
            seen[f] = seen.get(f, 0) + 1
    return {s.name: {f for f in fields_of(s.config) if seen[f] == 1} for s in pipeline()}


def _run_callback(config_file: Path | None, skip: tuple[str, ...], **kwargs: Any) -> None:
    from research_job.steps import run_all

    file_data = _load(config_file)
    try:
        configs = run_all.build_configs(file_data, {k: v for k, v in kwargs.items() if v is not None})
        results = run_all.run(configs, skip=[s.replace("-", "_") for s in skip])
    except ResearchJobError as e:
        raise StepError(str(e)) from e
    evaluate = registry()["evaluate"]
    if "evaluate" in results and evaluate.show is not None:
        click.echo(evaluate.show(configs["evaluate"], results["evaluate"]))


def _make_run_command() -> click.Command:
    opts = [CONFIG_OPTION, *_field_options(CommonConfig)]
    steps = {s.name: s for s in pipeline()}
    for name, names in _run_fields().items():
        opts += _field_options(steps[name].config, names)
    opts.append(
        click.option(
            "--skip",
            multiple=True,
            type=click.Choice([s.command for s in pipeline()]),
            help="Step to leave out (repeatable), e.g. --skip pull-audio.",
        )
    )
    func = _apply(opts, _run_callback)
    help_text = (
        "Run every pipeline step in order with the same functions as the single-step commands; every step's "
        "configuration is checked before the first one starts.\n\n"
        "Options shared by several steps (workers, seed, batch_size, ...) are set per step in the config file.\n\n"
        "\b\nExample:\n  research-job run --config configs/demo.yaml --model dsp-stats"
    )
    return click.Command(
        "run",
        callback=func,
        params=getattr(func, "__click_params__", [])[::-1],
        help=help_text,
        short_help="Run every pipeline step in order (checked up front).",
    )


cli.add_command(_make_run_command())


@cli.command("models")
def models_cmd() -> None:
    """List the embedding models of the registry (the default marked).

    \b
    Example:
      research-job models
    """
    from research_job.embeddings import DEFAULT_POSTPROCESS
    from research_job.models.registry import DEFAULT_MODEL, MODELS, PREFIXES

    for name, entry in sorted(MODELS.items()):
        click.echo(f"{name:<14}{entry.description}")
    for prefix, entry in PREFIXES.items():
        click.echo(f"{prefix + '<id>':<14}{entry.description}")
    click.echo(
        f"default: {DEFAULT_MODEL} with --postprocess {DEFAULT_POSTPROCESS} (docs/quality.md says why)"
    )


def main() -> None:
    """Console-script entry point ``research-job``."""
    cli(prog_name="research-job")


if __name__ == "__main__":
    main()
