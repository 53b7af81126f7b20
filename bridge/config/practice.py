"""`practice:` the practice itself: name, time zone, opening hours, closures and pair rooms.

Opening hours are `WorkRange`s per weekday; public holidays come from the `holidays`
package and closures are listed dates. Working-time SLA clocks count only open hours.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import Field, PlainValidator, field_validator, model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import HttpUrl, positive_duration
from bridge.core.language import DEFAULT_LANGUAGE, LANGUAGES, parse_language


def _retention(value: Any) -> timedelta | None:
    """A duration, or a whole number of days."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be a positive number of days")
        return timedelta(days=value)
    return positive_duration(value)


_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def _minutes(text: str, *, allow_24: bool) -> int | None:
    match = _HHMM.fullmatch(text.strip())
    if match is None:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        return None
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class WorkRange:
    """Opening hours within one day, in minutes after local midnight (end may be 1440)."""

    start_minute: int
    end_minute: int

    @property
    def start(self) -> time:
        return time(self.start_minute // 60, self.start_minute % 60)

    def __str__(self) -> str:
        def hhmm(minute: int) -> str:
            return f"{minute // 60:02d}:{minute % 60:02d}"

        return f"{hhmm(self.start_minute)}-{hhmm(self.end_minute)}"


def _parse_range(item: Any) -> WorkRange:
    if isinstance(item, WorkRange):
        return item
    if not isinstance(item, str) or item.count("-") != 1:
        raise ValueError(f"{item!r} is not HH:MM-HH:MM")
    start_text, end_text = item.split("-")
    start = _minutes(start_text, allow_24=False)
    end = _minutes(end_text, allow_24=True)
    if start is None or end is None:
        raise ValueError(f"{item!r} is not HH:MM-HH:MM")
    if end <= start:
        raise ValueError(f"{item!r} ends before it starts (use 00:00-24:00 for a whole day)")
    return WorkRange(start, end)


def _parse_day(value: Any) -> tuple[WorkRange, ...]:
    """A day's hours: null or [] (closed), 'HH:MM-HH:MM[, ...]' or a list of those."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"{value!r} is not a list of HH:MM-HH:MM ranges")
    ranges = sorted((_parse_range(item) for item in items), key=lambda r: r.start_minute)
    for earlier, later in itertools.pairwise(ranges):
        if later.start_minute < earlier.end_minute:
            raise ValueError(f"'{earlier}' and '{later}' overlap")
    return tuple(ranges)


DayHours = Annotated[tuple[WorkRange, ...], PlainValidator(_parse_day)]


def _parse_closures(value: Any) -> tuple[date, ...]:
    """Dates ('2025-12-24') and inclusive ranges ('2025-12-24..2026-01-02')."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of dates (YYYY-MM-DD) or ranges (YYYY-MM-DD..YYYY-MM-DD)")
    days: set[date] = set()
    for item in value:
        if isinstance(item, date) and not isinstance(item, datetime):
            days.add(item)
            continue
        hint = f"{item!r} is not a date YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD"
        if not isinstance(item, str):
            raise ValueError(hint)
        first_text, _, last_text = item.partition("..")
        try:
            first = date.fromisoformat(first_text.strip())
            last = date.fromisoformat(last_text.strip()) if last_text else first
        except ValueError:
            raise ValueError(hint) from None
        if last < first:
            raise ValueError(f"{item!r} ends before it starts")
        if (last - first).days > 366:
            raise ValueError(f"{item!r} is longer than a year")
        days.update(first + timedelta(days=n) for n in range((last - first).days + 1))
    return tuple(sorted(days))


class WorkingHours(Section):
    """Weekly opening hours in the practice's time zone; a missing or empty day is closed."""

    mon: DayHours = (WorkRange(9 * 60, 17 * 60),)
    tue: DayHours = (WorkRange(9 * 60, 17 * 60),)
    wed: DayHours = (WorkRange(9 * 60, 17 * 60),)
    thu: DayHours = (WorkRange(9 * 60, 17 * 60),)
    fri: DayHours = (WorkRange(9 * 60, 17 * 60),)
    sat: DayHours = ()
    sun: DayHours = ()

    def on(self, weekday: int) -> tuple[WorkRange, ...]:
        """Ranges for a weekday as `date.weekday()` numbers it (0 is Monday)."""
        day: tuple[WorkRange, ...] = getattr(
            self, ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[weekday]
        )
        return day

    @property
    def any_open(self) -> bool:
        return any(self.on(weekday) for weekday in range(7))


@functools.cache
def _holiday_calendar(country: str, subdivision: str | None) -> holidays_lib.HolidayBase:
    return holidays_lib.country_holidays(country, subdiv=subdivision)


class PublicHolidays(Section):
    """Public holidays from the `holidays` package, by ISO country and subdivision code."""

    country: str
    subdivision: str | None = None

    @field_validator("country", "subdivision", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if isinstance(value, bool):
            # YAML 1.1 reads NO (Norway) and similar codes as booleans.
            raise ValueError(f"{value!r} is a YAML boolean; write the code in quotes, e.g. 'NO'")
        if isinstance(value, int):
            return str(value)
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known(self) -> PublicHolidays:
        supported = holidays_lib.list_supported_countries()
        if self.country not in supported:
            raise FieldProblem(
                "country",
                f"{self.country!r} is not a country the holidays package knows "
                "(ISO 3166-1 alpha-2, e.g. 'DE', 'GB', 'US')",
            )
        subdivisions = supported[self.country]
        if self.subdivision is not None and self.subdivision not in subdivisions:
            known = ", ".join(subdivisions[:12]) + (", ..." if len(subdivisions) > 12 else "")
            raise FieldProblem(
                "subdivision",
                f"{self.subdivision!r} is not a subdivision of {self.country}"
                + (f" (known: {known})" if subdivisions else " (it has none)"),
            )
        return self

    def calendar(self) -> holidays_lib.HolidayBase:
        """The holiday calendar (filled lazily, year by year)."""
        return _holiday_calendar(self.country, self.subdivision)


_ROOM_NAME_FIELDS = frozenset({"practice", "therapist", "patient", "label"})


class Practice(Section):
    """The practice: name, time, opening hours and how pair rooms look."""

    name: str = Field(default="Our practice", min_length=1)
    timezone: str = "UTC"
    crisis_line: str | None = None
    working_hours: WorkingHours = WorkingHours()
    holidays: PublicHolidays | None = None
    closures: Annotated[tuple[date, ...], PlainValidator(_parse_closures)] = ()
    web_client_url: HttpUrl = "https://app.element.io"
    federate: bool = False
    #: Ask each patient to accept the consent text on first contact; until they do, no
    #: reply-time clock opens for the pair.
    ask_consent: bool = True
    room_name_template: str = "Therapy · {therapist} · {label}"
    pair_label_length: int = Field(default=4, ge=4, le=16)
    retention: Annotated[timedelta | None, PlainValidator(_retention)] = None
    #: The texts' language where a patient or therapist has none of their own.
    language: str = DEFAULT_LANGUAGE
    #: Ask a patient who changes language to accept the consent text again, in the new one.
    reconsent_on_language_change: bool = False

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone like 'Europe/Berlin' or 'America/New_York'"
            ) from None
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        code = parse_language(value)
        if code is None:
            raise ValueError(f"{value!r} is not a language of the texts ({', '.join(LANGUAGES)})")
        return code

    @field_validator("room_name_template")
    @classmethod
    def _room_name(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"is not a valid template: {exc}") from None
        unknown = sorted(fields - _ROOM_NAME_FIELDS)
        if unknown:
            allowed = ", ".join("{" + name + "}" for name in sorted(_ROOM_NAME_FIELDS))
            raise ValueError(f"unknown field {{{unknown[0]}}} (allowed: {allowed})")
        return value

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def closed_on(self, day: date) -> bool:
        """Tell whether `day` (local date) is a public holiday or a closure."""
        if day in self.closures:
            return True
        return self.holidays is not None and day in self.holidays.calendar()

    def opening_hours(self, day: date) -> tuple[WorkRange, ...]:
        """The opening ranges of a local date: none on holidays and closures."""
        return () if self.closed_on(day) else self.working_hours.on(day.weekday())
