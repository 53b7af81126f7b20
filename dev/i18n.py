"""Bring the catalogues up to date with the templates: `python -m dev.i18n`.

Every `{% trans %}` text of every shipped template and every command's `!help` summary
becomes a msgid of `templates/locale/<lang>/LC_MESSAGES/messages.po`; translations already
written are kept, new texts arrive with an empty msgstr for a translator to fill, and texts
no template uses any more are dropped. The coverage test fails until each is translated.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bridge.adapters.i18n import catalogue_path, read_catalogue, shipped_messages
from bridge.adapters.render import Renderer, default_templates_dir
from bridge.audit.export import label_messages
from bridge.core.language import DEFAULT_LANGUAGE, LANGUAGES


def new_catalogue(language: str | None = None) -> Catalog:
    """An empty catalogue with Confidant's header; fixed dates, so updates diff cleanly."""
    return Catalog(
        locale=language,
        project="Confidant",
        version="1",
        copyright_holder="the Confidant authors",
        msgid_bugs_address="the Confidant issue tracker",
        last_translator="the Confidant authors",
        language_team="Confidant",
        creation_date=datetime(2026, 12, 1, tzinfo=UTC),
        revision_date=datetime(2026, 12, 1, tzinfo=UTC),
        fuzzy=False,
    )


def template_catalogue(root: Path) -> Catalog:
    """Every msgid the shipped texts use, with where it comes from."""
    catalog = new_catalogue()
    for message in shipped_messages(Renderer(root).env, root, label_messages()):
        catalog.add(message.msgid, locations=[(message.where, message.line)], flags=message.flags)
    return catalog


def update(root: Path) -> list[Path]:
    template = template_catalogue(root)
    written = []
    for language in LANGUAGES:
        if language == DEFAULT_LANGUAGE:
            continue
        path = catalogue_path(root, language)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            catalog = read_catalogue(path, language)
        else:
            catalog = new_catalogue(language)
            catalog.header_comment = f"# The {language} texts of Confidant (python -m dev.i18n)."
        created = catalog.creation_date
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        # The dates stay as they were, so an update without new texts changes nothing.
        catalog.creation_date = catalog.revision_date = created
        with path.open("wb") as handle:
            write_po(handle, catalog, width=100, sort_by_file=True, omit_header=False)
        written.append(path)
    return written


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default_templates_dir()
    for path in update(root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
