"""What `check-config` finds wrong in a practice's `templates_dir`, in every language.

An override replaces a shipped template of the same name (`NAME`), for every language, or
for one (`<lang>/NAME`). Each must parse, use only the variables the bridge passes the
shipped template it replaces, and have every `{% trans %}` text translated for each language
it is shown in (in the practice's catalogue `locale/<lang>/LC_MESSAGES/messages.po` or the
shipped one), unless that language has an override of its own.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import jinja2.meta
from babel.messages.pofile import PoFileError

from bridge.adapters.i18n import (
    catalogue_path,
    missing_translations,
    read_catalogue,
    template_messages,
    template_names,
)
from bridge.adapters.render import Renderer
from bridge.core.language import DEFAULT_LANGUAGE, LANGUAGES

#: Names a template may use that no context passes: the i18n extension's and the renderer's.
_ALWAYS = frozenset({"_", "gettext", "ngettext", "pgettext", "npgettext", "language"})


def _variables(env: jinja2.Environment, source: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(env.parse(source))) - _ALWAYS


def _overrides(root: Path) -> list[tuple[str | None, str, Path]]:
    """(language or None for all, template name, file) for each override under `root`."""
    found: list[tuple[str | None, str, Path]] = []
    for name in template_names(root):
        first, _, rest = name.partition("/")
        if first in LANGUAGES and rest:
            found.append((first, rest, root / name))
        elif len(first) == 2 and first.isalpha() and first.islower() and rest:
            found.append((first, rest, root / name))  # a language the texts do not exist in
        else:
            found.append((None, name, root / name))
    return found


def template_problems(renderer: Renderer) -> list[str]:
    """One line per problem of the practice's overrides (none without a `templates_dir`)."""
    root = renderer.overrides
    if root is None:
        return []
    shipped = Renderer(renderer.templates_dir)
    shipped_names = set(template_names(renderer.templates_dir))
    problems: list[str] = []
    for code in LANGUAGES:
        path = catalogue_path(root, code)
        if path.is_file():
            try:
                read_catalogue(path, code)
            except (PoFileError, ValueError) as exc:
                problems.append(f"{path}: not a readable catalogue ({exc})")
    if problems:
        return problems
    overrides = _overrides(root)
    own = {(language, name) for language, name, _ in overrides if language is not None}
    for language, name, path in overrides:
        where = path.relative_to(root).as_posix()
        if language is not None and language not in LANGUAGES:
            problems.append(
                f"{where}: {language!r} is not a language of the texts ({', '.join(LANGUAGES)})"
            )
            continue
        if name not in shipped_names:
            problems.append(f"{where}: the bridge renders no template {name!r}")
            continue
        env = renderer.environment(language or DEFAULT_LANGUAGE)
        source = path.read_text(encoding="utf-8")
        try:
            used = _variables(env, source)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{where}:{exc.lineno}: {exc.message}")
            continue
        original = (renderer.templates_dir / name).read_text(encoding="utf-8")
        passed = _variables(shipped.env, original)
        for variable in sorted(used - passed):
            known = ", ".join(sorted(passed)) or "none"
            problems.append(f"{where}: uses {variable!r}, which is not passed (passed: {known})")
        shown_in = [language] if language is not None else list(LANGUAGES)
        messages = template_messages(env, name, source)
        for lang in shown_in:
            if language is None and (lang, name) in own:
                continue
            roots = [root, renderer.templates_dir]
            for message in missing_translations(messages, roots, lang):
                msgid = message.msgid if isinstance(message.msgid, str) else message.msgid[0]
                problems.append(
                    f"{where}:{message.line}: no {lang} translation of {msgid[:60]!r} "
                    f"(add it to {catalogue_path(root, lang)} or write {lang}/{name})"
                )
    return problems
