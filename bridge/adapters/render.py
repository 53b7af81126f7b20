"""Every text the bot sends comes from a jinja2 template in `templates/`.

The templates ship inside the package (`bridge/templates` in a wheel, the top-level
`templates/` in a checkout). A practice may override any of them: a template found in its
`templates_dir` wins over the one shipped with the same path, and `templates_dir/<lang>/`
wins for that language alone.

Each text is written once, in English, inside `{% trans %}`; its German and Spanish come
from the gettext catalogues (`bridge.adapters.i18n`). Each language renders through its own
environment, built on first use with that language's translations and formats.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import jinja2

from bridge.adapters.i18n import prepare_environment
from bridge.core.language import DEFAULT_LANGUAGE, parse_language

_HERE = Path(__file__).resolve()


def default_templates_dir() -> Path:
    """The shipped templates: inside the installed package, else the checkout's templates/."""
    packaged = _HERE.parents[1] / "templates"
    return packaged if packaged.is_dir() else _HERE.parents[2] / "templates"


class Renderer:
    """Renders message templates (`messages/NAME.txt.j2`, optional `NAME.html.j2`).

    `templates_dir` replaces the shipped templates (tests use it); `overrides` is searched
    before them, so it need only hold the templates a practice changes. `language` is the
    practice's: what a text renders in when its reader has none of their own.
    """

    def __init__(
        self,
        templates_dir: Path | None = None,
        overrides: Path | None = None,
        *,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self.templates_dir = templates_dir or default_templates_dir()
        self.overrides = overrides
        self.language = parse_language(language) or DEFAULT_LANGUAGE
        self._environments: dict[str, jinja2.Environment] = {}
        #: The practice language's environment (pages, and texts without a reader's language).
        self.env = self.environment(self.language)

    def language_of(self, language: str | None) -> str:
        """The language a text for this reader renders in: theirs if supported, else the
        practice's."""
        return parse_language(language) or self.language

    def search_path(self, language: str) -> list[Path]:
        """Where templates of `language` are looked up, first match winning."""
        if self.overrides is None:
            return [self.templates_dir]
        return [self.overrides / language, self.overrides, self.templates_dir]

    def environment(self, language: str | None = None) -> jinja2.Environment:
        """The environment that renders in `language` (the practice's when None)."""
        code = self.language_of(language)
        env = self._environments.get(code)
        if env is None:
            env = self._build(code)
            self._environments[code] = env
        return env

    def _build(self, language: str) -> jinja2.Environment:
        search = self.search_path(language)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(path) for path in search]),
            autoescape=jinja2.select_autoescape(["html", "html.j2"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=False,
            extensions=["jinja2.ext.i18n"],
        )
        # A language's own override directory holds templates; catalogues sit beside them.
        catalogue_roots = search if self.overrides is None else search[1:]
        return prepare_environment(env, catalogue_roots, language)

    def text(self, name: str, context: dict[str, Any], language: str | None = None) -> str:
        template = self.environment(language).get_template(f"messages/{name}.txt.j2")
        return template.render(**context).strip()

    def message(
        self,
        name: str,
        context: dict[str, Any],
        msgtype: str = "m.notice",
        language: str | None = None,
    ) -> dict[str, Any]:
        """An `m.room.message` content with a plain body and, when useful, HTML."""
        body = self.text(name, context, language)
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        try:
            template = self.environment(language).get_template(f"messages/{name}.html.j2")
            html_body = template.render(**context)
        except jinja2.TemplateNotFound:
            html_body = None
        if html_body is None and "\n" in body:
            html_body = "<br>".join(html.escape(line) for line in body.split("\n"))
        if html_body is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html_body.strip()
        return content

    def page(self, name: str, context: dict[str, Any], language: str | None = None) -> str:
        return self.environment(language).get_template(name).render(**context)
