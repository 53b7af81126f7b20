"""The configuration: one YAML file, validated by pydantic models.

`load_config(path)` reads the file, resolves `${ENV}` and `file:` secrets, refuses
placeholders from config.example.yaml and validates every section. Anything wrong is a
`ConfigError` whose text is one line: `<file>: <key.path>: <what is wrong>`.

Tests of other modules build a valid configuration with `minimal_config(**overrides)`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import functools
import itertools
import os
import re
import string
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretBytes,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.config_secrets import (
    KeyPath,
    format_path,
    hash_token,
    is_token_hash,
    resolve_references,
    verify_token,
)

__all__ = [
    "MINIMAL_CONFIG",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "UnknownPolicyError",
    "WorkRange",
    "hash_token",
    "load_config",
    "minimal_config",
    "minimal_config_dict",
    "parse_config",
    "parse_duration",
    "verify_token",
]

# ---------------------------------------------------------------- errors


class ConfigProblem(NamedTuple):
    """One thing wrong in the configuration, at a key path (empty for the whole file)."""

    path: str
    message: str

    def line(self, source: str) -> str:
        """Render as `<file>: <key.path>: <what is wrong>`."""
        return (
            f"{source}: {self.path}: {self.message}" if self.path else f"{source}: {self.message}"
        )


class ConfigError(Exception):
    """The configuration cannot be used; `str()` is one line naming the first problem."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        self.source = source
        self.problems = problems
        super().__init__(self.summary())

    def summary(self) -> str:
        """The first problem on one line, with a count of the others."""
        text = self.problems[0].line(self.source)
        more = len(self.problems) - 1
        return f"{text} (+{more} more)" if more else text

    def lines(self) -> list[str]:
        """Every problem, one line each (for a command that wants to show them all)."""
        return [problem.line(self.source) for problem in self.problems]

    def __str__(self) -> str:
        return self.summary()


class UnknownPolicyError(LookupError):
    """A pair refers to a policy name the configuration does not define."""


class FieldProblem(ValueError):
    """A validator's complaint about a key below the field being validated.

    Cross-field checks raise it so the error names the key at fault (for example
    `audit.current_key_id`) rather than the section that holds it.
    """

    def __init__(self, key: str | KeyPath, message: str) -> None:
        super().__init__(message)
        self.key: KeyPath = tuple(key.split(".")) if isinstance(key, str) else key
        self.message = message


# ---------------------------------------------------------------- value parsers

_DURATION = re.compile(
    r"(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?"
)
_DURATION_HINT = "write a duration with units, like '90s', '30m', '2h', '1d' or '1h30m'"


def parse_duration(value: Any) -> timedelta:
    """Parse '90s', '30m', '2h', '1d', '1w', '1h30m' (or a timedelta) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    text = value.replace(" ", "").lower()
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HINT}")
    parts = {name: int(number or 0) for name, number in match.groupdict().items()}
    return timedelta(
        weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
    )


def _positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("must be longer than zero")
    return duration


def _optional_duration(value: Any) -> timedelta | None:
    return None if value is None else _positive_duration(value)


def _retention(value: Any) -> timedelta | None:
    """A duration, or a whole number of days."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be a positive number of days")
        return timedelta(days=value)
    return _positive_duration(value)


Duration = Annotated[timedelta, PlainValidator(_positive_duration)]
OptionalDuration = Annotated[timedelta | None, PlainValidator(_optional_duration)]

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


_SERVER_NAME = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?"
_SERVER_NAME_RE = re.compile(_SERVER_NAME)
# Historical user ids may hold any printable ASCII but ':' in the localpart.
_USER_ID_RE = re.compile(rf"@[\x21-\x39\x3b-\x7e]+:{_SERVER_NAME}")
_DOMAIN_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _matrix_user_id(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 255 or not _USER_ID_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Matrix user id like '@name:example.org'")
    return value


def _server_name(value: Any) -> str:
    if not isinstance(value, str) or not _SERVER_NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a server name like 'example.org'")
    return value


def _domain(value: Any) -> str:
    if not isinstance(value, str) or not _DOMAIN_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a domain name like 'mail.example.org'")
    return value.lower()


def _http_url(value: Any) -> str:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value.rstrip("/")
    raise ValueError(f"{value!r} is not an http:// or https:// URL")


def _email_address(value: Any) -> str:
    if isinstance(value, str):
        _, address = parseaddr(value)
        local, at, domain = address.rpartition("@")
        if at and local and _DOMAIN_RE.fullmatch(domain) and " " not in local:
            return value
    raise ValueError(f"{value!r} is not an e-mail address like 'Practice <care@example.org>'")


def _key32(value: Any) -> bytes:
    """A 32-byte key written as base64 (standard or URL-safe) or 64 hex digits."""
    if isinstance(value, SecretBytes):
        value = value.get_secret_value()
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9A-Fa-f]{64}", text):
            return bytes.fromhex(text)
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            return raw
    # Never echo the value: it is a key.
    raise ValueError("must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")


Key32 = Annotated[SecretBytes, BeforeValidator(lambda v: SecretBytes(_key32(v)))]
MatrixUserId = Annotated[str, PlainValidator(_matrix_user_id)]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Make a relative path relative to the configuration file's directory."""
    path = value.expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir") or Path.cwd()
        path = Path(base) / path
    return Path(os.path.normpath(path))


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


# ---------------------------------------------------------------- sections


class Section(BaseModel):
    """A configuration section: immutable, and unknown keys are errors (typos are caught)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Homeserver(Section):
    """The practice's Matrix homeserver."""

    url: Annotated[str, PlainValidator(_http_url)]
    server_name: Annotated[str, PlainValidator(_server_name)]
    verify_tls: bool = True


class Witness(Section):
    """The self-check: a second device of the bot account must read every post the bot makes."""

    #: None: on when the bot logs in with a password (only a password login makes a device).
    enabled: bool | None = None
    #: How long a post may take to become readable on the witness before it is repaired.
    deadline: Duration = timedelta(seconds=30)
    device_name: str = Field(default="Confidant witness", min_length=1)


class Bot(Section):
    """The bot account Confidant logs in as."""

    user_id: MatrixUserId
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_name: str = Field(default="Confidant", min_length=1)
    display_name: str = Field(default="Confidant", min_length=1)
    pickle_key: SecretStr = Field(min_length=16)
    witness: Witness = Witness()

    @model_validator(mode="after")
    def _credentials(self) -> Bot:
        if self.password is None and self.access_token is None:
            raise FieldProblem("password", "is required unless bot.access_token is set")
        if self.witness.enabled and self.password is None:
            raise FieldProblem(
                "witness.enabled",
                "needs bot.password: the witness is a second login of the bot account",
            )
        return self

    @property
    def witness_on(self) -> bool:
        """Whether the self-check runs (explicitly on, or by default with a password)."""
        if self.witness.enabled is None:
            return self.password is not None
        return self.witness.enabled


class Database(Section):
    """Where state lives: SQLite (default: a file in data_dir) or PostgreSQL."""

    # Not shown in repr: a PostgreSQL URL may carry a password.
    url: str | None = Field(default=None, repr=False)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if value.startswith(("postgresql://", "postgres://")):
            if not urlsplit(value).netloc:
                raise ValueError("a PostgreSQL URL looks like postgresql://user@host/dbname")
            return value
        path_text = value.removeprefix("sqlite://") if value.startswith("sqlite://") else value
        if "://" in path_text or not path_text or path_text == ":memory:":
            raise ValueError(
                "must be a SQLite file path (relative to the config file) or postgresql://..."
            )
        # Normal form: sqlite:// followed by an absolute path.
        return "sqlite://" + str(_resolve_path(Path(path_text), info))


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
    web_client_url: Annotated[str, PlainValidator(_http_url)] = "https://app.element.io"
    federate: bool = False
    #: Ask each patient to accept the consent text on first contact; until they do, no
    #: reply-time clock opens for the pair.
    ask_consent: bool = True
    room_name_template: str = "Therapy · {therapist} · {label}"
    pair_label_length: int = Field(default=4, ge=4, le=16)
    retention: Annotated[timedelta | None, PlainValidator(_retention)] = None

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


class Policy(Section):
    """Response-time policy for a pair (SLA): window, reminders, escalation, notices."""

    window: Duration = timedelta(hours=8)
    window_clock: Literal["working", "calendar"] = "working"
    heads_up_before: OptionalDuration = timedelta(hours=1)
    remind_at_due: bool = True
    escalate_after: OptionalDuration = None
    supervisors: tuple[MatrixUserId, ...] = ()
    channels: tuple[Literal["desk", "email"], ...] = ("desk",)
    patient_notice: Literal["always", "out_of_hours", "never"] = "out_of_hours"
    open_clock_on: Literal["any_message", "reply_request"] = "any_message"
    tell_patient_on_breach: bool = False

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one channel: desk, email")
        if len(set(value)) != len(value):
            raise ValueError("lists a channel twice")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_heads_up(cls, data: Any) -> Any:
        # The default heads-up (1h) makes no sense for a window of an hour or less:
        # leave it out rather than make the user switch off a step they never set.
        if isinstance(data, dict) and "heads_up_before" not in data and "window" in data:
            try:
                window = _positive_duration(data["window"])
            except ValueError:
                return data
            if window <= timedelta(hours=1):
                data = {**data, "heads_up_before": None}
        return data

    @model_validator(mode="after")
    def _steps(self) -> Policy:
        if self.heads_up_before is not None and self.heads_up_before >= self.window:
            raise FieldProblem("heads_up_before", "must be shorter than window")
        if self.escalate_after is not None and not self.supervisors:
            raise FieldProblem(
                "supervisors", "escalate_after is set, so name at least one supervisor"
            )
        return self


class InboundSmtp(Section):
    """The SMTP server that accepts e-mail for pairs."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    inbound_domain: Annotated[str, PlainValidator(_domain)] | None = None
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    require_starttls: bool = False
    auth_users: dict[str, SecretStr] = {}
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    sender_auth: Literal["direct", "behind_mta"] = "direct"
    authserv_id: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InboundSmtp:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise FieldProblem(missing, "tls_cert and tls_key must be set together")
        if self.require_starttls and self.tls_cert is None:
            raise FieldProblem("require_starttls", "needs tls_cert and tls_key")
        if self.sender_auth == "behind_mta" and not self.authserv_id:
            raise FieldProblem(
                "authserv_id",
                "is required with sender_auth: behind_mta "
                "(the authserv-id your MTA writes in Authentication-Results)",
            )
        if self.enabled:
            if self.inbound_domain is None:
                raise FieldProblem("inbound_domain", "is required when smtp is enabled")
            for key in ("tls_cert", "tls_key"):
                path = getattr(self, key)
                if path is not None and not os.access(path, os.R_OK):
                    raise FieldProblem(key, f"cannot read {path}")
        return self


class OutboundEmail(Section):
    """The practice's SMTP relay for invitations and notices (never clinical content)."""

    enabled: bool = False
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: Annotated[str, PlainValidator(_email_address)] | None = None
    notify_unread_after: OptionalDuration = None

    @model_validator(mode="after")
    def _consistent(self) -> OutboundEmail:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise FieldProblem(missing, "username and password must be set together")
        if self.password is not None and self.security == "none":
            raise FieldProblem("security", "is 'none', which would send the password in clear")
        if self.enabled:
            if not self.host:
                raise FieldProblem("host", "is required when outbound_email is enabled")
            if self.from_address is None:
                raise FieldProblem("from_address", "is required when outbound_email is enabled")
        return self

    @property
    def effective_port(self) -> int:
        """The port to use: the configured one, else the usual one for `security`."""
        if self.port is not None:
            return self.port
        return {"starttls": 587, "tls": 465, "none": 25}[self.security]


def _admin_token(value: Any) -> str:
    if not isinstance(value, str) or not is_token_hash(value):
        # Never echo the value: it may be a real token.
        raise ValueError(
            "is not a token hash; store 'sha256:<hex>' as printed by `confidant hash-token`, "
            "never the token itself"
        )
    return value


class Http(Section):
    """The admin HTTP API (and metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    admin_tokens: tuple[Annotated[str, PlainValidator(_admin_token)], ...] = ()

    def token_ok(self, token: str) -> bool:
        """Tell whether a presented bearer token is one of the admin tokens."""
        return verify_token(token, self.admin_tokens)


class JitsiJwt(Section):
    """Token authentication for a Jitsi that requires it (prosody `token_verification`)."""

    app_id: str = Field(min_length=1)
    secret: SecretStr = Field(min_length=16)
    audience: str = "jitsi"
    lifetime: Duration = timedelta(hours=2)


class Jitsi(Section):
    """Video meetings; without a domain `!video` is off."""

    domain: Annotated[str, PlainValidator(_domain)] | None = None
    jwt: JitsiJwt | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Jitsi:
        if self.jwt is not None and self.domain is None:
            raise FieldProblem("domain", "is required when jwt is set")
        return self


class Audit(Section):
    """Keys for the audit log: content encryption (rotating) and checkpoint signing."""

    content_keys: dict[str, Key32] = Field(min_length=1)
    current_key_id: str | None = None
    signing_key: Key32
    checkpoint_every: int = Field(default=1000, ge=1)

    @field_validator("content_keys", mode="before")
    @classmethod
    def _key_ids(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key_id in value:
                if not isinstance(key_id, str) or not _NAME_RE.fullmatch(key_id):
                    raise ValueError(
                        f"key id {key_id!r} must be 1-64 letters, digits, '-', '_' or '.'"
                    )
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_current(cls, data: Any) -> Any:
        # With a single key there is nothing to choose: it is the current one.
        if isinstance(data, dict) and data.get("current_key_id") is None:
            keys = data.get("content_keys")
            if isinstance(keys, dict) and len(keys) == 1:
                data = {**data, "current_key_id": next(iter(keys))}
        return data

    @model_validator(mode="after")
    def _current_known(self) -> Audit:
        if self.current_key_id is None:
            raise FieldProblem("current_key_id", "is required when there is more than one key")
        if self.current_key_id not in self.content_keys:
            known = ", ".join(sorted(self.content_keys))
            raise FieldProblem(
                "current_key_id", f"{self.current_key_id!r} is not in content_keys ({known})"
            )
        return self

    @property
    def keys(self) -> dict[str, bytes]:
        """Every content key by id, as raw bytes (old ones stay to open old entries)."""
        return {key_id: key.get_secret_value() for key_id, key in self.content_keys.items()}

    def current_key(self) -> tuple[str, bytes]:
        """The id and bytes of the key new content is sealed with."""
        assert self.current_key_id is not None
        return self.current_key_id, self.content_keys[self.current_key_id].get_secret_value()

    def signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed that signs checkpoints."""
        return self.signing_key.get_secret_value()


class SynapseAdmin(Section):
    """Synapse admin API access, used by onboarding (registration tokens)."""

    access_token: SecretStr | None = None


class LoggingSettings(Section):
    """Log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "text"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def _default_policies() -> dict[str, Policy]:
    return {"default": Policy()}


class Config(Section):
    """The whole configuration. Build it with `load_config`, `parse_config` or `minimal_config`."""

    homeserver: Homeserver
    bot: Bot
    data_dir: ConfigPath = Field(default=Path("data"), validate_default=True)
    database: Database = Database()
    practice: Practice = Practice()
    policies: dict[str, Policy] = Field(default_factory=_default_policies)
    smtp: InboundSmtp = InboundSmtp()
    outbound_email: OutboundEmail = OutboundEmail()
    http: Http = Http()
    jitsi: Jitsi = Jitsi()
    audit: Audit
    synapse_admin: SynapseAdmin = SynapseAdmin()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("database", "practice", "smtp", "outbound_email", "http", "jitsi"):
            # An empty section (`smtp:` with nothing under it) means "all defaults".
            if key in data and data[key] is None:
                data[key] = {}
        for key in ("synapse_admin", "logging"):
            if key in data and data[key] is None:
                data[key] = {}
        if "policies" in data and data["policies"] is None:
            del data["policies"]
        # The server name is usually the part of the bot's user id after the colon.
        homeserver, bot = data.get("homeserver"), data.get("bot")
        if isinstance(homeserver, dict) and "server_name" not in homeserver:
            user_id = bot.get("user_id") if isinstance(bot, dict) else None
            if isinstance(user_id, str) and _USER_ID_RE.fullmatch(user_id):
                data["homeserver"] = {**homeserver, "server_name": user_id.split(":", 1)[1]}
        return data

    @field_validator("policies")
    @classmethod
    def _policy_names(cls, value: dict[str, Policy]) -> dict[str, Policy]:
        for name in value:
            if not _NAME_RE.fullmatch(name):
                raise FieldProblem(
                    (name,), "policy names are 1-64 letters, digits, '-', '_' or '.'"
                )
        if "default" not in value:
            raise ValueError("a policy named 'default' is required")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        bot_server = self.bot.user_id.split(":", 1)[1]
        if bot_server != self.homeserver.server_name:
            raise FieldProblem(
                "bot.user_id",
                f"is on server {bot_server!r}, not homeserver.server_name "
                f"{self.homeserver.server_name!r}",
            )
        for name, policy in self.policies.items():
            if "email" in policy.channels and not self.outbound_email.enabled:
                raise FieldProblem(
                    ("policies", name, "channels"),
                    "'email' needs outbound_email.enabled: true",
                )
            if policy.window_clock == "working" and not self.practice.working_hours.any_open:
                raise FieldProblem(
                    ("practice", "working_hours"),
                    f"has no opening hours, but policy {name!r} counts working time",
                )
        if self.outbound_email.notify_unread_after and not self.outbound_email.enabled:
            raise FieldProblem(
                ("outbound_email", "notify_unread_after"), "needs outbound_email.enabled: true"
            )
        return self

    def policy(self, name: str) -> Policy:
        """The policy called `name`; raises `UnknownPolicyError` naming the known ones."""
        try:
            return self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise UnknownPolicyError(
                f"no policy named {name!r} in the config (policies: {known})"
            ) from None

    @property
    def database_url(self) -> str:
        """The URL to give `open_database`: the configured one or `sqlite://<data_dir>/...`."""
        return self.database.url or "sqlite://" + str(self.data_dir / "confidant.db")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None when the database is PostgreSQL."""
        url = self.database_url
        return Path(url.removeprefix("sqlite://")) if url.startswith("sqlite://") else None

    @property
    def crypto_store_dir(self) -> Path:
        """Where nio keeps the bot's E2EE keys (pickled with bot.pickle_key)."""
        return self.data_dir / "crypto"

    @property
    def media_cache_dir(self) -> Path:
        """Where downloaded and converted media wait (deleted after use)."""
        return self.data_dir / "media"

    @property
    def state_dir(self) -> Path:
        """Where the bot keeps its session (device id, sync token, cross-signing seeds)."""
        return self.data_dir / "state"

    def ensure_data_dirs(self) -> None:
        """Create data_dir and its subdirectories, readable by the service user only."""
        for path in (self.data_dir, self.crypto_store_dir, self.media_cache_dir, self.state_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)


# ---------------------------------------------------------------- loading


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


def _yaml_problem(exc: yaml.YAMLError) -> ConfigProblem:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        text = exc.problem or "invalid YAML"
        if exc.context:
            text = f"{text} ({exc.context})"
        if "'@'" in text or "'`'" in text:
            text += "; put values that start with @ or ` in quotes"
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return ConfigProblem(where, " ".join(text.split()))
    return ConfigProblem("", " ".join(f"invalid YAML: {exc}".split()))


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
        raise ConfigError(source, [_yaml_problem(exc)]) from None
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
    problems = [ConfigProblem(format_path(path), message) for path, message in reference_problems]
    try:
        config = Config.model_validate(resolved, context={"base_dir": base})
    except ValidationError as exc:
        # A key whose secret could not be resolved fails validation too; say it once.
        reported = [path for path, _ in reference_problems]
        for loc, message in _validation_problems(exc):
            if not any(loc[: len(path)] == path for path in reported):
                problems.append(ConfigProblem(format_path(loc), message))
    else:
        if not problems:
            return config
    raise ConfigError(source, problems)


# Values at these keys are never repeated in error messages.
_SECRET_KEYS = frozenset(
    {"password", "access_token", "pickle_key", "secret", "content_keys", "signing_key",
     "auth_users", "admin_tokens", "url"}
)  # fmt: skip

_SHOULD = re.compile(r"^(?:Input|String|List|Value|Dictionary|Tuple|Set|Object|Data) should ")


def _validation_problems(exc: ValidationError) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    for error in exc.errors():
        loc: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            out.append(((*loc, *cause.key), cause.message))
            continue
        out.append((loc, _describe(error, loc)))
    return out


def _describe(error: Any, loc: KeyPath) -> str:
    kind, message, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "is required"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(?:Value error|Assertion failed), ", "", message)
    message = _SHOULD.sub("must ", message)
    message = message[:1].lower() + message[1:]
    secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
    if kind == "string_type" and isinstance(value, int | float | bool):
        message += "; put the value in quotes"
    if not secret and isinstance(value, str | int | float | bool) and len(repr(value)) <= 60:
        message += f" (got {value!r})"
    return message


def _unknown_key(loc: KeyPath) -> str:
    allowed = _fields_at(loc[:-1])
    if not allowed:
        return "unknown key"
    guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if guess:
        return f"unknown key; did you mean {guess[0]!r}?"
    return f"unknown key (expected one of: {', '.join(allowed)})"


def _fields_at(loc: KeyPath) -> list[str] | None:
    """The keys the model at `loc` accepts, found by walking the model annotations."""
    current: Any = Config
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) in (list, tuple):
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


# ---------------------------------------------------------------- tests of other modules

#: The smallest valid configuration, as a dict. Its keys are fixed and public: for tests only.
MINIMAL_CONFIG: dict[str, Any] = {
    "homeserver": {"url": "http://127.0.0.1:8008", "server_name": "localhost"},
    "bot": {
        "user_id": "@confidant:localhost",
        "password": "test-bot-password",
        "pickle_key": "test-pickle-key-0123456789",
    },
    "audit": {
        "content_keys": {"k1": base64.b64encode(bytes(range(32))).decode()},
        "signing_key": base64.b64encode(bytes(range(32, 64))).decode(),
    },
}


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def minimal_config_dict(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of `MINIMAL_CONFIG` with `overrides` merged in, section by section."""
    return _merge(copy.deepcopy(MINIMAL_CONFIG), overrides)


def minimal_config(**overrides: Any) -> Config:
    """A valid `Config` for tests: `MINIMAL_CONFIG` with `overrides` merged in.

    For example `minimal_config(data_dir=tmp_path, practice={"timezone": "Europe/Berlin"})`.
    Nested mappings merge; other values replace. Raises `ConfigError` like `parse_config`.
    """
    return parse_config(minimal_config_dict(**overrides), "minimal_config", env={})
