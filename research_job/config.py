"""Configuration: the common keys, and the machinery that builds each step's frozen config dataclass.

Precedence (lowest to highest): dataclass defaults < config file < environment (``RESEARCH_JOB_<FIELD>``) <
CLI flags. Each step module declares its own config dataclass in its ``STEP`` (fields made with :func:`option`,
which carries the ``--help`` text and, for a closed set, the choices); this module holds the common keys and
the machinery. A config file has one optional top-level section of common keys and one section per step::

    artifacts_root: artifacts
    model: musicnn-msd
    export_metadata:
      database_url: sqlite:///catalogue.sqlite
      table: tracks
    pull_audio:
      source: s3://my-bucket/catalogue

Unknown keys are an error naming the key and the valid ones (a typo never silently falls back to a default),
and :func:`build_config` checks every value (type, choices, the model spec) before any step touches the disk.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from research_job.errors import ConfigError, unknown_choice
from research_job.layout import ArtifactLayout
from research_job.models.registry import DEFAULT_MODEL, check_spec

ENV_PREFIX = "RESEARCH_JOB_"
T = TypeVar("T")


def option(
    default: Any, help: str, *, choices: tuple[str, ...] | None = None, kind: str | None = None
) -> Any:
    """A config field with its one line of meaning (the ``--help`` text) and, for a closed set, its choices.

    :func:`build_config` refuses a value outside ``choices`` naming the valid ones (``Unknown <kind> 'x'``;
    ``kind`` defaults to the field name); the CLI lists them.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind})


def field_help(f: dataclasses.Field[Any]) -> tuple[str, tuple[str, ...] | None]:
    """(help text, choices) of a config field declared with :func:`option` (empty help otherwise)."""
    return str(f.metadata.get("help", "")), f.metadata.get("choices")


@dataclass(frozen=True)
class CommonConfig:
    """Keys every step shares."""

    artifacts_root: Path = option(
        Path("artifacts"), "folder of the version folders: a step works in <artifacts-root>/v1_model_<MODEL>"
    )
    model: str = option(
        DEFAULT_MODEL, "embedding model spec from the registry (`research-job models` lists them)"
    )
    version_dir: Path | None = option(
        None, "work in this version folder instead of <artifacts-root>/v1_model_<MODEL>"
    )
    #: the common keys a config file, the environment or a flag set (not left at their default); by build_config
    explicit: frozenset[str] = field(default=frozenset(), metadata={"internal": True})

    @property
    def layout(self) -> ArtifactLayout:
        if self.version_dir is not None:
            return ArtifactLayout(Path(self.version_dir))
        return ArtifactLayout.for_model(self.artifacts_root, self.model)


def sections() -> dict[str, type]:
    """Config section name -> config class of every step (from :func:`research_job.steps.registry`)."""
    from research_job.steps import registry

    return {name: step.config for name, step in registry().items()}


def config_class(section: str) -> type:
    """The config dataclass of a config-file section / command.

    Raises:
        ConfigError: unknown section, listing the known ones.
    """
    known = sections()
    if section not in known:
        raise ConfigError(unknown_choice("step", section, known))
    return known[section]


def load_config_file(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file; ``None`` -> empty.

    Raises:
        ConfigError: missing file, unknown extension, parse error, or unknown top-level section.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {p}")
    try:
        if p.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"Config file {p} must end in .yaml, .yml or .toml, not {p.suffix!r}")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"Cannot parse config file {p}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {p} must hold a mapping, got {type(data).__name__}")
    common_keys = set(fields_of(CommonConfig))
    known = sections()
    for key in data:
        if key not in known and key not in common_keys:
            raise ConfigError(unknown_choice("config key", key, [*known, *common_keys]))
    return data


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a file/env/CLI value to the field's declared type."""
    if value is None:
        return None
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    try:
        if hint is Path:
            return Path(value)
        if hint is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in {"1", "true", "yes", "on"}:
                return True
            if s in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if hint in (int, float, str):
            return hint(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"Bad value {value!r} for {name}: expected {getattr(hint, '__name__', hint)}"
        ) from e
    return value


def fields_of(cls: type) -> dict[str, Any]:
    """Settable fields of a config class (not ``common``, not internal ones) -> their type annotation."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if f.name != "common" and not f.metadata.get("internal")
    }


def check_choices(cfg: Any) -> None:
    """Refuse a field value outside the field's declared choices, naming the valid ones.

    Raises:
        ConfigError: ``Unknown <field> 'x'. Known: a, b``.
    """
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices and value is not None and value not in choices:
            kind = f.metadata.get("kind") or f.name.replace("_", " ")
            raise ConfigError(unknown_choice(kind, value, choices))


def build_config(
    cls: type[T],
    *,
    file_data: dict[str, Any] | None = None,
    section: str | None = None,
    overrides: dict[str, Any] | None = None,
    env: typing.Mapping[str, str] | None = None,
) -> T:
    """Build a step config from defaults, a config file section, env vars and CLI overrides, and check it.

    Args:
        cls: a step config class (e.g. ``EmbedConfig``).
        file_data: what :func:`load_config_file` returned.
        section: the file section of this step (default: looked up from :func:`sections`).
        overrides: CLI values; ``None`` values are ignored (flag not given).
        env: environment (default ``os.environ``); ``RESEARCH_JOB_<FIELD>`` in upper case.

    Raises:
        ConfigError: unknown key in the step's section, a value of the wrong type or outside its choices.
        ModelError: the model spec names no registry entry or takes no such option (no weights are loaded).
    """
    file_data = file_data or {}
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if section is None:
        section = next((s for s, c in sections().items() if c is cls), None)
    step_fields = fields_of(cls)
    common_fields = fields_of(CommonConfig)

    def layered(name: str, annotation: Any, section_data: dict[str, Any]) -> tuple[bool, Any]:
        value: Any = None
        found = False
        if name in section_data:
            value, found = section_data[name], True
        env_key = ENV_PREFIX + name.upper()
        if env_key in env:
            value, found = env[env_key], True
        if name in overrides:
            value, found = overrides[name], True
        return found, _coerce(name, value, annotation) if found else None

    step_data = file_data.get(section, {}) if section else {}
    if not isinstance(step_data, dict):
        raise ConfigError(f"Config section {section!r} must be a mapping")
    for key in step_data:
        if key not in step_fields and key not in common_fields:
            raise ConfigError(
                unknown_choice(f"key in section {section!r}", key, [*step_fields, *common_fields])
            )
    top = {k: v for k, v in file_data.items() if k in common_fields}
    common_kwargs: dict[str, Any] = {}
    for name, ann in common_fields.items():
        found, value = layered(
            name, ann, {**top, **{k: v for k, v in step_data.items() if k in common_fields}}
        )
        if found:
            common_kwargs[name] = value
    kwargs: dict[str, Any] = {}
    for name, ann in step_fields.items():
        found, value = layered(name, ann, step_data)
        if found:
            kwargs[name] = value
    common = CommonConfig(**common_kwargs, explicit=frozenset(common_kwargs))
    check_spec(common.model)
    cfg = cls(common=common, **kwargs)  # type: ignore[call-arg]
    check_choices(cfg)
    return cfg
