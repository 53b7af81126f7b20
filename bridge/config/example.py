"""The commented example configuration, and a first configuration made from it.

`confidant init` writes `config.example.yaml` with values set at given key paths, so the
file a practice starts from keeps every comment. The example ships inside the package
(`bridge/config/config.example.yaml` in a wheel) and sits at the top of a checkout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve()
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-]+):(?P<rest>.*)$")


def example_path() -> Path:
    """Where the example is: inside the installed package, else at the top of the checkout."""
    packaged = _HERE.parent / "config.example.yaml"
    return packaged if packaged.is_file() else _HERE.parents[2] / "config.example.yaml"


def yaml_scalar(value: Any) -> str:
    """A value as YAML flow text (JSON is YAML): strings quoted, None as null."""
    return json.dumps(value, ensure_ascii=False)


def set_values(text: str, values: Mapping[str, Any]) -> str:
    """`text` (block-style YAML with comments) with the value at each dotted key path set.

    A key's old value goes, including its indented children (a list, a mapping); comment
    lines stay. Every path must exist in `text`: a missing one is a `KeyError`, so the
    example and the code that fills it cannot drift apart silently.
    """
    lines = text.splitlines()
    out: list[str] = []
    stack: list[tuple[int, str]] = []
    done: set[str] = set()
    skip_deeper_than: int | None = None
    for line in lines:
        match = _KEY.match(line)
        stripped = line.strip()
        if skip_deeper_than is not None:
            indent = len(line) - len(line.lstrip(" "))
            deeper = indent > skip_deeper_than
            if stripped and (deeper or (indent == skip_deeper_than and stripped[:2] == "- ")):
                continue
            skip_deeper_than = None
        if match is None:
            out.append(line)
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group("key")))
        path = ".".join(key for _, key in stack)
        if path in values:
            out.append(f"{match.group('indent')}{match.group('key')}: {yaml_scalar(values[path])}")
            done.add(path)
            skip_deeper_than = indent
        else:
            out.append(line)
    missing = set(values) - done
    if missing:
        raise KeyError(f"not in the example: {', '.join(sorted(missing))}")
    return "\n".join(out) + "\n"
