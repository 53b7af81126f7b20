"""Reading a configuration: strict YAML, then secret references, then validation.

`load_config` reads a file; `parse_config` takes a tree already parsed. Both raise a
`ConfigError` that lists every problem found, each at its key path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.errors import ConfigError, ConfigProblem
from bridge.config.problems import validation_problems
from bridge.config.root import Config
from bridge.config.secrets import format_path, resolve_references
from bridge.config.switches import switched_off, without_switched_off
from bridge.config.yamlerrors import yaml_problem


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (YAML would keep the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:
            continue  # unhashable key: construct_mapping reports it
        if first != key_node.start_mark.line:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {first + 1})",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and validate the YAML configuration at `path`.

    `env` stands for the environment `${NAME}` references read (default: `os.environ`);
    relative paths (data_dir, SQLite file, TLS files, `file:` secrets) are taken from the
    directory the file is in. Raises `ConfigError`.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, [ConfigProblem("", f"cannot read the file: {reason}")]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [yaml_problem(exc, text)]) from None
    return parse_config(data, source, env=env, base_dir=path.resolve().parent)


def parse_config(
    data: Any,
    source: str = "config",
    *,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate an already-parsed configuration tree (as `load_config` does after YAML).

    `source` names the configuration in errors; `base_dir` anchors relative paths
    (default: the current directory). Raises `ConfigError`.
    """
    if data is None:
        raise ConfigError(source, [ConfigProblem("", "is empty; start from config.example.yaml")])
    if not isinstance(data, dict):
        raise ConfigError(
            source, [ConfigProblem("(top level)", "must be a mapping of sections like homeserver:")]
        )
    base = base_dir if base_dir is not None else Path.cwd()
    resolved, reference_problems = resolve_references(
        data, os.environ if env is None else env, base
    )
    context = {"base_dir": base}
    off_errors: list[tuple[str, ValidationError]] = []
    if isinstance(resolved, dict):
        # Only the sections that are on are checked (placeholders included).
        off = switched_off(resolved)
        reference_problems = [p for p in reference_problems if not (p[0] and p[0][0] in off)]
        resolved, off_errors = without_switched_off(resolved, off, context)
    problems = [ConfigProblem(format_path(path), message) for path, message in reference_problems]
    for name, exc in off_errors:
        for loc, message in validation_problems(exc, (name,), frozenset({"extra_forbidden"})):
            problems.append(ConfigProblem(format_path(loc), message))
    try:
        config = Config.model_validate(resolved, context=context)
    except ValidationError as exc:
        # A key whose secret could not be resolved fails validation too; say it once.
        reported = [path for path, _ in reference_problems]
        for loc, message in validation_problems(exc):
            if not any(loc[: len(path)] == path for path in reported):
                problems.append(ConfigProblem(format_path(loc), message))
    else:
        if not problems:
            return config
    raise ConfigError(source, problems)
