"""Each language's texts and formats: gettext catalogues and the filters templates use.

The catalogues are `locale/<lang>/LC_MESSAGES/messages.po` next to the templates, read at
start (no compiled `.mo` to build or ship); a practice's `templates_dir` may hold its own,
whose entries win. A msgid without a translation (or with a fuzzy one) renders in English:
the coverage test and `check-config` keep that from shipping.

The filters turn what the core passes (ISO date-time strings, seconds, days) into the text of
a language: `datetime_local`, `date_local`, `time_local`, `duration`, `days`.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_time, format_timedelta
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from babel.units import format_unit

from bridge.core.language import DEFAULT_LANGUAGE


def catalogue_path(root: Path, language: str) -> Path:
    """Where the catalogue of `language` lives under a templates directory."""
    return root / "locale" / language / "LC_MESSAGES" / "messages.po"


def read_catalogue(path: Path, language: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


def translations(roots: Iterable[Path], language: str) -> gettext.NullTranslations:
    """The translations of `language` from each root's catalogue, earlier roots winning
    (a practice's overrides, then the shipped ones). English is its own msgids."""
    merged: Translations | None = None
    for root in reversed(list(roots)):
        path = catalogue_path(root, language)
        if language == DEFAULT_LANGUAGE or not path.is_file():
            continue
        buffer = io.BytesIO()
        # Fuzzy and empty entries are left out, so they fall back to the English msgid.
        write_mo(buffer, read_catalogue(path, language), use_fuzzy=False)
        buffer.seek(0)
        loaded = Translations(buffer)
        merged = loaded if merged is None else merged.merge(loaded)
    return merged if merged is not None else gettext.NullTranslations()


def prepare_environment(
    env: jinja2.Environment, roots: Iterable[Path], language: str
) -> jinja2.Environment:
    """Give an environment (with jinja2's i18n extension) a language: its translations, its
    date, time and duration filters, and `language` for `<html lang>`."""
    # The i18n extension adds this method to the environment; jinja2's stubs do not know it.
    gettext_ext: Any = env
    gettext_ext.install_gettext_translations(translations(roots, language), newstyle=True)
    env.filters.update(Formats(language).filters())
    env.globals["language"] = language
    return env


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _as_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, datetime):
        return value.timetz()
    return time.fromisoformat(str(value).strip())


class Formats:
    """Dates, times and durations written for one language.

    English keeps the unambiguous 24-hour ISO form the texts always used ("2026-12-01
    07:31"); German and Spanish use their locale's long date and short time ("1. Dezember
    2026, 07:31", "1 de diciembre de 2026, 7:31").
    """

    def __init__(self, language: str) -> None:
        self.language = language

    def _local(self, value: Any, timezone: str | None) -> datetime:
        """A wall-clock time: an aware value moves to `timezone` when one is given, else it
        keeps its own offset (the core's `*_local` strings are local already)."""
        at = _as_datetime(value)
        if timezone and at.tzinfo is not None:
            at = at.astimezone(ZoneInfo(timezone))
        return at

    def datetime_local(self, value: Any, timezone: str | None = None) -> str:
        at = self._local(value, timezone)
        if self.language == DEFAULT_LANGUAGE:
            return at.strftime("%Y-%m-%d %H:%M")
        day = format_date(at, "long", locale=self.language)
        return f"{day}, {format_time(at, 'short', locale=self.language)}"

    def date_local(self, value: Any, timezone: str | None = None) -> str:
        at = self._local(value, timezone)
        if self.language == DEFAULT_LANGUAGE:
            return at.strftime("%Y-%m-%d")
        return format_date(at, "long", locale=self.language)

    def time_local(self, value: Any, timezone: str | None = None) -> str:
        if isinstance(value, str) and len(value.strip()) <= 8 and "-" not in value:
            clock = _as_time(value)
        else:
            clock = self._local(value, timezone).time()
        if self.language == DEFAULT_LANGUAGE:
            return clock.strftime("%H:%M")
        return format_time(clock, "short", locale=self.language)

    def _unit(self, amount: float, unit: str) -> str:
        return format_unit(amount, f"duration-{unit}", length="long", locale=self.language)

    def duration(self, seconds: float | timedelta, add_direction: bool = False) -> str:
        """A span in whole days, hours (to a tenth) or minutes: "8 hours", "1,5 Stunden";
        with `add_direction`, from now: "in 8 Stunden", "dentro de 8 horas"."""
        total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if add_direction:
            return format_timedelta(
                timedelta(seconds=total), add_direction=True, locale=self.language
            )
        hours = total / 3600
        if hours >= 24 and hours % 24 == 0:
            return self._unit(int(hours // 24), "day")
        if hours >= 1:
            return self._unit(int(hours) if hours == int(hours) else round(hours, 1), "hour")
        return self._unit(max(1, round(total / 60)), "minute")

    def days(self, count: int) -> str:
        """A retention period in days: whole years when it is some ("10 Jahre")."""
        if count % 365 == 0:
            return self._unit(count // 365, "year")
        return self._unit(count, "day")

    def filters(self) -> dict[str, Callable[..., str]]:
        return {
            "datetime_local": self.datetime_local,
            "date_local": self.date_local,
            "time_local": self.time_local,
            "duration": self.duration,
            "days": self.days,
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One text to translate: its msgid (a pair of singular and plural when it has one)."""

    msgid: str | tuple[str, str]
    where: str
    line: int
    flags: tuple[str, ...] = ()


def template_names(root: Path) -> list[str]:
    """Every template under a templates directory, as the loader names it."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.j2")
        if path.relative_to(root).parts[0] != "locale"
    )


def template_messages(env: jinja2.Environment, name: str, source: str) -> list[Message]:
    """The msgids of one template's `{% trans %}` blocks and `_()` calls."""
    found = []
    # The i18n extension adds this method to the environment.
    extract: Any = env
    for line, _function, msgid in extract.extract_translations(source):
        # A call with a computed argument (`_(c.summary)`) has no literal msgid to extract.
        parts = [p for p in (msgid if isinstance(msgid, tuple) else (msgid,)) if isinstance(p, str)]
        if len(parts) == 1:
            found.append(Message(parts[0], name, line))
        elif len(parts) == 2:
            found.append(Message((parts[0], parts[1]), name, line))
    return found


def command_messages() -> list[Message]:
    """The summaries `!help` shows: translated like the templates' texts."""
    from bridge.core.command_set import build_commands
    from bridge.core.commands import DESK_ROOM, PAIR_ROOM
    from bridge.core.model import Role

    registry = build_commands()
    found = {
        cmd.name: cmd
        for room_kind in (PAIR_ROOM, DESK_ROOM)
        for role in Role
        for cmd in registry.available(room_kind, role)
    }
    return [Message(cmd.summary, f"!{name}", 1) for name, cmd in sorted(found.items())]


def shipped_messages(
    env: jinja2.Environment, root: Path, extra: Iterable[Message] = ()
) -> list[Message]:
    """Every text of the shipped templates under `root`, of the commands, and `extra` (texts
    that code hands a template to translate, like the transcript's entry labels)."""
    messages = []
    for name in template_names(root):
        source = (root / name).read_text(encoding="utf-8")
        messages.extend(template_messages(env, name, source))
    return [*messages, *command_messages(), *extra]


def missing_translations(
    messages: Iterable[Message], roots: Iterable[Path], language: str
) -> list[Message]:
    """The messages `language` has no usable translation of (none, empty or fuzzy)."""
    if language == DEFAULT_LANGUAGE:
        return []
    catalogues = [
        read_catalogue(catalogue_path(root, language), language)
        for root in roots
        if catalogue_path(root, language).is_file()
    ]

    def translated(msgid: str | tuple[str, str]) -> bool:
        for catalog in catalogues:
            entry = catalog.get(msgid if isinstance(msgid, str) else msgid[0])
            if entry is None or entry.fuzzy:
                continue
            strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
            if strings and all(strings):
                return True
        return False

    return [m for m in messages if not translated(m.msgid)]
