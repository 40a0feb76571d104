"""run: every pipeline step in order (export-metadata -> pull-audio -> standardize-audio -> embed -> build-index
-> evaluate -> report -> previews -> validate), calling the same ``run(cfg)`` functions as the single-step commands.

Every step's config is built and checked (model spec, choices, counts, combinations) before the first step
touches the disk, so a typo fails in a second with nothing written; then each phase is logged with its time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from research_job.config import CommonConfig, build_config, fields_of
from research_job.errors import ConfigError, unknown_choice
from research_job.logging_setup import phase
from research_job.steps import pipeline

LOG = logging.getLogger(__name__)


def order() -> tuple[str, ...]:
    """Names of the pipeline steps, in the order ``run`` runs them."""
    return tuple(s.name for s in pipeline())


def step_fields(section: str) -> set[str]:
    """Field names of a step's config (without ``common``)."""
    step = next(s for s in pipeline() if s.name == section)
    return set(fields_of(step.config))


def common_fields() -> set[str]:
    return set(fields_of(CommonConfig))


def build_configs(
    file_data: Mapping[str, Any], overrides: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One checked config per step: each gets the common overrides plus the overrides naming its own fields.

    Raises:
        ConfigError / ModelError: any step's config is bad (nothing has been run or written).
    """
    configs: dict[str, Any] = {}
    for step in pipeline():
        own = set(fields_of(step.config)) | common_fields()
        configs[step.name] = cfg = build_config(
            step.config,
            file_data=dict(file_data),
            section=step.name,
            overrides={k: v for k, v in overrides.items() if k in own},
            env=env,
        )
        if step.check is not None:
            step.check(cfg)
    return configs


def run(configs: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """Run the pipeline steps (except ``skip``) with their configs; return each step's result.

    Raises:
        ConfigError: ``skip`` names an unknown step; any step's own error propagates (later steps do not run).
    """
    names = order()
    for s in skip:
        if s not in names:
            raise ConfigError(unknown_choice("step to skip", s, names))
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for step in pipeline():
        if step.name in skip:
            LOG.info("Skipping %s", step.name)
            continue
        with phase(step.command, LOG):
            results[step.name] = step.run(configs[step.name])
    LOG.info("Pipeline finished in %.2fs", time.perf_counter() - t0)
    return results
