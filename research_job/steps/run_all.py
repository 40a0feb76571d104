"""run: every step in order (export-metadata -> pull-audio -> standardize-audio -> embed -> build-index -> evaluate
-> validate), calling the same ``run(cfg)`` functions as the single-step commands, each phase logged with its time.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from research_job.config import STEP_SECTIONS, CommonConfig, build_config
from research_job.errors import ConfigError, unknown_choice
from research_job.logging_setup import phase

LOG = logging.getLogger(__name__)

#: section name -> module under research_job.steps, in pipeline order
ORDER = (
    "export_metadata",
    "pull_audio",
    "standardize_audio",
    "embed",
    "build_index",
    "evaluate",
    "validate",
)


def step_fields(section: str) -> set[str]:
    """Field names of a step's config (without ``common``)."""
    return {f.name for f in dataclasses.fields(STEP_SECTIONS[section]) if f.name != "common"}


def common_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(CommonConfig)}


def build_configs(
    file_data: Mapping[str, Any], overrides: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One config per step: each gets the common overrides plus the overrides naming one of its own fields."""
    configs: dict[str, Any] = {}
    for section in ORDER:
        own = step_fields(section) | common_fields()
        configs[section] = build_config(
            STEP_SECTIONS[section],
            file_data=dict(file_data),
            section=section,
            overrides={k: v for k, v in overrides.items() if k in own},
            env=env,
        )
    return configs


def run(configs: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """Run the steps in :data:`ORDER` (except ``skip``) with their configs; return each step's result.

    Raises:
        ConfigError: ``skip`` names an unknown step; any step's own error propagates (later steps do not run).
    """
    for s in skip:
        if s not in ORDER:
            raise ConfigError(unknown_choice("step to skip", s, ORDER))
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for section in ORDER:
        if section in skip:
            LOG.info("Skipping %s", section)
            continue
        module = importlib.import_module(f"research_job.steps.{section}")
        with phase(section.replace("_", "-"), LOG):
            results[section] = module.run(configs[section])
    LOG.info("Pipeline finished in %.2fs", time.perf_counter() - t0)
    return results
