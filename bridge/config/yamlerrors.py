"""YAML syntax errors told the way a person editing the file can act on them.

PyYAML says where the parser gave up and what token it met ("mapping values are not
allowed here"); a practice's IT person needs the line, the key it belongs to and what to
change. The key is found from the text itself (the nearest key above, with its parents by
indentation), since a file that does not parse has no tree to ask.
"""

from __future__ import annotations

import re

import yaml

from bridge.config.errors import ConfigProblem

_KEY_LINE = re.compile(r"^(?P<indent>[ \t]*)(?:- )?(?P<key>[A-Za-z0-9_.\-]+)[ \t]*:(?:[ \t]|$)")

_INDENTATION = (
    "the indentation does not match the lines above",
    "keys of one section start in the same column, deeper than the section's own key",
)

#: (words in PyYAML's problem, what it means, the fix to propose).
_HINTS: tuple[tuple[str, str, str], ...] = (
    (
        "'@'",
        "a value starts with @",
        'values that start with @ must be in quotes, like user_id: "@bot:example.org"',
    ),
    ("'`'", "a value starts with `", "put the value in quotes"),
    (
        "mapping values are not allowed",
        "a ':' where no key can start",
        "either the line is indented deeper than the key above it, or a value holds ': ' "
        "and needs quotes",
    ),
    ("expected <block end>", *_INDENTATION),
    ("did not find expected key", *_INDENTATION),
    (
        "could not find expected ':'",
        "a line inside a section is not a key",
        "a key needs ': ' after it, or a value spread over two lines needs quotes",
    ),
    (
        "'<stream end>'",
        "the file ends inside a quote or a bracket",
        "close the quote or bracket that opens further up",
    ),
    (
        "found unexpected end of stream",
        "the file ends inside a quote or a bracket",
        "close the quote or bracket that opens further up",
    ),
    (
        "found unknown escape character",
        "an unknown backslash escape inside double quotes",
        "write \\\\ for a backslash, or use single quotes",
    ),
)


def key_above(lines: list[str], index: int) -> str | None:
    """The dotted path of the nearest key at or above line `index` (0-based), or None."""
    if index < 0:
        return None
    path: list[str] = []
    limit: int | None = None
    for line in reversed(lines[: index + 1]):
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        indent = len(match.group("indent").expandtabs(1))
        if limit is None or indent < limit:
            path.append(match.group("key"))
            limit = indent
            if indent == 0:
                break
    return ".".join(reversed(path)) or None


def yaml_problem(exc: yaml.YAMLError, text: str) -> ConfigProblem:
    """One problem for a YAML error: `line N (below KEY): what is wrong; what to do`."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return ConfigProblem("", " ".join(f"invalid YAML: {exc}".split()))
    mark = exc.problem_mark
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    problem = " ".join((exc.problem or "invalid YAML").split())
    if "duplicate key" in problem:
        # Our own wording (the strict loader's): already says what to do.
        fix = "keep one of them"
    elif "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in problem:
        problem = "a tab character in the indentation"
        fix = "YAML indents with spaces only; replace the tab with spaces"
    else:
        fix = ""
        for words, meaning, hint in _HINTS:
            if words in problem:
                problem, fix = meaning, hint
                break
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    # The value of this line's key is at fault when the parser stopped after its ':';
    # otherwise the line itself is misplaced, and the key above says where it is.
    own = _KEY_LINE.match(line)
    if own is not None and mark.column >= own.end():
        where += f" (at {key_above(lines, mark.line)})"
    else:
        above = key_above(lines, min(mark.line, len(lines)) - 1) if mark.line else None
        if above:
            where += f" (below {above})"
    message = f"{problem}; {fix}" if fix else problem
    return ConfigProblem(where, message)
