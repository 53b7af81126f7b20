"""Every text the bot sends comes from a jinja2 template in `templates/`.

The templates ship inside the package (`bridge/templates` in a wheel, the top-level
`templates/` in a checkout). A practice may override any of them: a template found in its
`templates_dir` wins over the one shipped with the same path.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import jinja2

_HERE = Path(__file__).resolve()


def default_templates_dir() -> Path:
    """The shipped templates: inside the installed package, else the checkout's templates/."""
    packaged = _HERE.parents[1] / "templates"
    return packaged if packaged.is_dir() else _HERE.parents[2] / "templates"


class Renderer:
    """Renders message templates (`messages/NAME.txt.j2`, optional `NAME.html.j2`).

    `templates_dir` replaces the shipped templates (tests use it); `overrides` is searched
    before them, so it need only hold the templates a practice changes.
    """

    def __init__(self, templates_dir: Path | None = None, overrides: Path | None = None) -> None:
        self.templates_dir = templates_dir or default_templates_dir()
        self.overrides = overrides
        search = [self.templates_dir] if overrides is None else [overrides, self.templates_dir]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(path) for path in search]),
            autoescape=jinja2.select_autoescape(["html", "html.j2"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=False,
        )

    def text(self, name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(f"messages/{name}.txt.j2").render(**context).strip()

    def message(
        self, name: str, context: dict[str, Any], msgtype: str = "m.notice"
    ) -> dict[str, Any]:
        """An `m.room.message` content with a plain body and, when useful, HTML."""
        body = self.text(name, context)
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        try:
            html_body = self.env.get_template(f"messages/{name}.html.j2").render(**context)
        except jinja2.TemplateNotFound:
            html_body = None
        if html_body is None and "\n" in body:
            html_body = "<br>".join(html.escape(line) for line in body.split("\n"))
        if html_body is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html_body.strip()
        return content

    def page(self, name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(name).render(**context)
