"""Pipeline steps: one module per step, each declaring its ``STEP``; the CLI and ``run`` iterate over them.

A step module holds its config dataclass, its ``run(cfg) -> dict`` (which does the step and returns the report
it wrote) and ``STEP = Step(...)`` naming both with the command's summary and example. :func:`registry` finds
every module of this package that declares one, so adding a step is adding one file (plus its test). Steps pass
files (see :mod:`research_job.layout`); they never import the CLI, and never another step, except the steps
that compose steps (``run_all``, ``compare_models``).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """What the CLI and ``run`` need to know of a step."""

    #: config-file section and module name (``embed``); the command is the same with dashes (``embed``)
    name: str
    #: the frozen config dataclass (a ``common: CommonConfig`` field plus the step's own options)
    config: type
    #: one line for ``research-job --help`` and the command's help
    summary: str
    #: a command line that runs on the demo corpus
    example: str
    #: the library function: ``run(cfg) -> dict``
    run: Callable[[Any], Any]
    #: checks the config before any step of a run touches the disk (raises ConfigError); None: nothing to check
    check: Callable[[Any], None] | None = None
    #: what the command prints after ``run`` (None: nothing, the log said it)
    show: Callable[[Any, Any], str | None] | None = None
    #: position in ``research-job run`` (None: not part of the pipeline)
    pipeline: int | None = None
    #: log "<command> ..." / "done in" around the run (off for query commands whose output is piped)
    log_phase: bool = True

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")


@functools.cache
def registry() -> dict[str, Step]:
    """Every step of this package by name: pipeline steps in pipeline order, then the others by name."""
    found: list[Step] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        step = getattr(module, "STEP", None)
        if isinstance(step, Step):
            if step.name != info.name:
                raise RuntimeError(f"{module.__name__}: STEP.name is {step.name!r}, expected {info.name!r}")
            found.append(step)
    found.sort(key=lambda s: (s.pipeline is None, s.pipeline or 0, s.name))
    return {s.name: s for s in found}


def pipeline() -> list[Step]:
    """The steps ``research-job run`` runs, in order."""
    return [s for s in registry().values() if s.pipeline is not None]
