"""The configuration loader: good files load, broken ones fail with one line naming the key."""

from __future__ import annotations

import base64
import re
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import (
    MINIMAL_ADMIN_TOKEN,
    MINIMAL_CONFIG,
    Config,
    ConfigError,
    UnknownPolicyError,
    WorkRange,
    hash_token,
    load_config,
    minimal_config,
    minimal_config_dict,
    parse_config,
    parse_duration,
    verify_token,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "configs"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def with_overrides(**overrides: Any) -> str:
    return yaml.safe_dump(minimal_config_dict(**overrides), allow_unicode=True, sort_keys=False)


MINIMAL_YAML = with_overrides()

#: What switches inbound SMTP on: a switched-off section is not checked.
SMTP_ON = {"enabled": True, "inbound_domain": "mail.localhost"}


# Each case: id, YAML text, environment, key path the error must name, words it must say.
BROKEN: list[tuple[str, str, dict[str, str], str, str]] = [
    (
        "wrong type",
        with_overrides(smtp={"port": "abc", **SMTP_ON}),
        {},
        "smtp.port",
        "valid integer",
    ),
    (
        "unknown key with a suggestion",
        with_overrides(practice={"timezon": "Europe/Berlin"}),
        {},
        "practice.timezon",
        "unknown key; did you mean 'timezone'?",
    ),
    (
        "a witness without a password",
        with_overrides(bot={"password": None, "access_token": "tok", "witness": {"enabled": True}}),
        {},
        "bot.witness.enabled",
        "needs bot.password",
    ),
    (
        "unknown top-level section",
        with_overrides(logs={"level": "INFO"}),
        {},
        "logs",
        "unknown key",
    ),
    (
        "bad time zone",
        with_overrides(practice={"timezone": "Europe/Atlantis"}),
        {},
        "practice.timezone",
        "'Europe/Atlantis' is not an IANA time zone",
    ),
    (
        "bad working hours",
        with_overrides(practice={"working_hours": {"mon": "9-17"}}),
        {},
        "practice.working_hours.mon",
        "'9-17' is not HH:MM-HH:MM",
    ),
    (
        "working hours ending before they start",
        with_overrides(practice={"working_hours": {"tue": ["17:00-09:00"]}}),
        {},
        "practice.working_hours.tue",
        "ends before it starts",
    ),
    (
        "overlapping working hours",
        with_overrides(practice={"working_hours": {"wed": ["09:00-13:00", "12:00-17:00"]}}),
        {},
        "practice.working_hours.wed",
        "overlap",
    ),
    (
        "unknown weekday",
        with_overrides(practice={"working_hours": {"monday": ["09:00-17:00"]}}),
        {},
        "practice.working_hours.monday",
        "unknown key",
    ),
    (
        "bad duration",
        with_overrides(policies={"default": {"window": "3 days"}}),
        {},
        "policies.default.window",
        "is not a duration",
    ),
    (
        "duration without a unit",
        with_overrides(policies={"default": {"window": 3600}}),
        {},
        "policies.default.window",
        "with units",
    ),
    (
        "heads-up not shorter than the window",
        with_overrides(policies={"default": {"window": "1h", "heads_up_before": "2h"}}),
        {},
        "policies.default.heads_up_before",
        "shorter than window",
    ),
    (
        "bad window clock",
        with_overrides(policies={"default": {"window_clock": "office"}}),
        {},
        "policies.default.window_clock",
        "'working' or 'calendar'",
    ),
    (
        "missing environment variable",
        with_overrides(bot={"pickle_key": "${CONFIDANT_PICKLE_KEY}"}),
        {},
        "bot.pickle_key",
        "environment variable CONFIDANT_PICKLE_KEY is not set",
    ),
    (
        "unreadable secret file",
        with_overrides(bot={"password": "file:secrets/no-such-file"}),
        {},
        "bot.password",
        "cannot read secret file",
    ),
    (
        "placeholder",
        with_overrides(bot={"pickle_key": "CHANGE-ME-pickle-key"}),
        {},
        "bot.pickle_key",
        "is the placeholder from config.example.yaml; set a secret",
    ),
    (
        "placeholder coming from the environment",
        with_overrides(synapse_admin={"access_token": "${ADMIN_TOKEN}"}),
        {"ADMIN_TOKEN": "CHANGE-ME-token"},
        "synapse_admin.access_token",
        "placeholder from config.example.yaml (from $ADMIN_TOKEN)",
    ),
    (
        "bad Matrix id",
        with_overrides(bot={"user_id": "confidant@localhost"}),
        {},
        "bot.user_id",
        "is not a Matrix user id",
    ),
    (
        "bot on another server",
        with_overrides(homeserver={"server_name": "example.org"}),
        {},
        "bot.user_id",
        "not homeserver.server_name 'example.org'",
    ),
    (
        "bad holidays country",
        with_overrides(practice={"holidays": {"country": "XX"}}),
        {},
        "practice.holidays.country",
        "'XX' is not a country",
    ),
    (
        "bad holidays subdivision",
        with_overrides(practice={"holidays": {"country": "DE", "subdivision": "ZZ"}}),
        {},
        "practice.holidays.subdivision",
        "'ZZ' is not a subdivision of DE",
    ),
    (
        "country code read as a YAML boolean",
        MINIMAL_YAML + "practice:\n  holidays:\n    country: NO\n",
        {},
        "practice.holidays.country",
        "in quotes",
    ),
    (
        "bad supervisor id",
        with_overrides(policies={"default": {"supervisors": ["@boss:localhost", "boss"]}}),
        {},
        "policies.default.supervisors[1]",
        "'boss' is not a Matrix user id",
    ),
    (
        "no default policy",
        with_overrides(policies={"urgent": {"window": "1h"}}),
        {},
        "policies",
        "a policy named 'default' is required",
    ),
    (
        "e-mail reminders without outbound e-mail",
        with_overrides(policies={"default": {"channels": ["desk", "email"]}}),
        {},
        "policies.default.channels",
        "outbound_email.enabled",
    ),
    (
        "current key id not among the keys",
        with_overrides(audit={"current_key_id": "k2"}),
        {},
        "audit.current_key_id",
        "'k2' is not in content_keys",
    ),
    (
        "audit key of the wrong size",
        with_overrides(audit={"content_keys": {"k1": base64.b64encode(b"x" * 16).decode()}}),
        {},
        "audit.content_keys.k1",
        "32 bytes",
    ),
    (
        "behind an MTA without authserv-id",
        with_overrides(smtp={"sender_auth": "behind_mta", **SMTP_ON}),
        {},
        "smtp.authserv_id",
        "required with sender_auth: behind_mta",
    ),
    (
        "TLS certificate without key",
        with_overrides(smtp={"tls_cert": "cert.pem", **SMTP_ON}),
        {},
        "smtp.tls_key",
        "tls_cert and tls_key must be set together",
    ),
    (
        "plain admin token",
        with_overrides(http={"admin_tokens": ["not-a-hash-but-a-token"]}),
        {},
        "http.admin_tokens[0]",
        "confidant hash-token",
    ),
    (
        "no bot credentials",
        with_overrides(bot={"password": None}),
        {},
        "bot.password",
        "access_token",
    ),
    (
        "missing section",
        yaml.safe_dump({k: v for k, v in MINIMAL_CONFIG.items() if k != "audit"}),
        {},
        "audit",
        "is required",
    ),
    (
        "unsupported database",
        with_overrides(database={"url": "mysql://db/confidant"}),
        {},
        "database.url",
        "postgresql://",
    ),
    (
        "outbound e-mail enabled without a sender",
        with_overrides(outbound_email={"enabled": True, "host": "smtp.localhost"}),
        {},
        "outbound_email.from_address",
        "required",
    ),
    (
        "bad log level",
        with_overrides(logging={"level": "chatty"}),
        {},
        "logging.level",
        "'DEBUG'",
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "key_path", "words"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_config_names_the_key_in_one_line(
    tmp_path: Path, text: str, env: dict[str, str], key_path: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key_path}: "), message
    assert words in message


# Each case: id, YAML text, where the error must say it is, words of the likely fix.
YAML_ERRORS = [
    (
        "unclosed bracket",
        MINIMAL_YAML + "practice:\n  name: [unclosed\n",
        "(below practice.name)",
        "close the quote or bracket",
    ),
    (
        "unquoted Matrix id",
        MINIMAL_YAML.replace("'@confidant:localhost'", "@confidant:localhost"),
        "(at bot.user_id)",
        "must be in quotes",
    ),
    (
        "duplicate key",
        MINIMAL_YAML + "practice:\n  name: A\n  name: B\n",
        "(below practice.name)",
        "duplicate key 'name'",
    ),
    (
        "tab indentation",
        MINIMAL_YAML + "practice:\n\tname: A\n",
        "(below practice)",
        "replace the tab with spaces",
    ),
    (
        "key indented too deep",
        MINIMAL_YAML + "practice:\n  name: A\n    timezone: UTC\n",
        "(below practice.name)",
        "indented deeper than the key above",
    ),
    (
        "key indented too little",
        MINIMAL_YAML + "practice:\n  name: A\n timezone: UTC\n",
        "(below practice.name)",
        "start in the same column",
    ),
    (
        "value with a colon",
        MINIMAL_YAML + "practice:\n  name: Dr A: Practice\n",
        "(at practice.name)",
        "needs quotes",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "words"), [c[1:] for c in YAML_ERRORS], ids=[c[0] for c in YAML_ERRORS]
)
def test_yaml_errors_name_the_line_the_key_and_the_fix(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert re.match(
        rf"{re.escape(str(path))}: line \d+, column \d+ {re.escape(where)}: ", message
    ), message
    assert words in message
    # PyYAML's own token names are not what a person editing the file needs.
    assert "<block" not in message and "<stream" not in message, message


def test_yaml_syntax_error_points_at_the_right_line(tmp_path: Path) -> None:
    lines = MINIMAL_YAML.splitlines()
    text = "\n".join([*lines, "practice:", "  name: x", "  timezone: 'UTC", ""])
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    # The unterminated quote is found at the end of the file.
    line = int(re.search(r"line (\d+)", str(caught.value)).group(1))  # type: ignore[union-attr]
    assert line >= len(lines) + 3


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file: No such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(write(tmp_path, "# nothing\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_the_witness_is_on_by_default_only_with_a_password() -> None:
    assert minimal_config().bot.witness_on
    assert minimal_config().bot.witness.deadline == timedelta(seconds=30)
    token_only = minimal_config(bot={"password": None, "access_token": "tok"})
    assert not token_only.bot.witness_on
    off = minimal_config(bot={"witness": {"enabled": False, "deadline": "5s"}})
    assert not off.bot.witness_on and off.bot.witness.deadline == timedelta(seconds=5)


def test_secret_values_are_not_repeated_in_errors(tmp_path: Path) -> None:
    cases = [
        (with_overrides(bot={"pickle_key": "tooshort-secret"}), "tooshort-secret"),
        (with_overrides(http={"admin_tokens": ["tooshort-secret"]}), "tooshort-secret"),
        (with_overrides(audit={"signing_key": "tooshort-secret"}), "tooshort-secret"),
        (with_overrides(bot={"password": 987654321}), "987654321"),
    ]
    for text, secret in cases:
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, text))
        assert secret not in str(caught.value)
        assert "\n" not in str(caught.value)


def test_several_problems_are_counted(tmp_path: Path) -> None:
    text = with_overrides(
        practice={"timezone": "Nowhere/Town"},
        bot={"pickle_key": "CHANGE-ME-x", "password": "CHANGE-ME-y"},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    error = caught.value
    assert str(error).endswith("(+2 more)")
    assert [line.split(": ")[1] for line in error.lines()] == [
        "bot.password",
        "bot.pickle_key",
        "practice.timezone",
    ]


# ---------------------------------------------------------------- good configs


def test_minimal_config_file_loads_with_defaults(tmp_path: Path) -> None:
    shutil.copy(DATA / "minimal.yaml", tmp_path / "config.yaml")
    config = load_config(tmp_path / "config.yaml", env={})
    assert config.homeserver.server_name == "localhost"
    assert config.bot.pickle_key.get_secret_value() == "test-pickle-key-0123456789"
    assert config.data_dir == tmp_path / "data"
    assert config.sqlite_path == tmp_path / "data" / "confidant.db"
    assert config.database_url == f"sqlite://{tmp_path}/data/confidant.db"
    assert config.audit.current_key_id == "k1"
    assert config.audit.keys == {"k1": bytes(range(32))}
    assert config.audit.signing_seed() == bytes(range(32, 64))
    default = config.policy("default")
    assert default.window == timedelta(hours=8)
    assert default.window_clock == "working"
    assert default.channels == ("desk",)
    assert config.practice.working_hours.on(0) == (WorkRange(540, 1020),)
    assert config.practice.working_hours.on(6) == ()
    assert config.practice.federate is False
    assert config.smtp.enabled is False
    assert config.http.token_ok(MINIMAL_ADMIN_TOKEN)
    assert config.logging.level == "INFO"


def test_minimal_helper_matches_minimal_file() -> None:
    from_file = load_config(DATA / "minimal.yaml", env={})
    from_helper = minimal_config(data_dir=str(DATA / "data"))
    assert from_helper == from_file


def test_minimal_helper_merges_overrides(tmp_path: Path) -> None:
    config = minimal_config(
        data_dir=tmp_path,
        practice={"timezone": "Europe/Berlin", "working_hours": {"sat": ["10:00-12:00"]}},
    )
    assert config.data_dir == tmp_path
    assert config.practice.timezone == "Europe/Berlin"
    assert config.practice.working_hours.on(5) == (WorkRange(600, 720),)
    # Untouched neighbours keep their defaults; the shared dict is not changed.
    assert config.practice.working_hours.on(0) == (WorkRange(540, 1020),)
    assert "practice" not in MINIMAL_CONFIG


def test_secrets_from_environment_and_files(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pickle").write_text("  from-a-file-0123456789\n")
    text = with_overrides(
        bot={"password": "${BOT_PASSWORD}", "pickle_key": "file:secrets/pickle"},
        database={"url": "postgresql://confidant:${DB_PASSWORD}@db/confidant"},
        practice={"crisis_line": "Call $$5 line"},
    )
    config = load_config(
        write(tmp_path, text), env={"BOT_PASSWORD": "pw-from-env", "DB_PASSWORD": "s3cret"}
    )
    assert config.bot.password is not None
    assert config.bot.password.get_secret_value() == "pw-from-env"
    assert config.bot.pickle_key.get_secret_value() == "from-a-file-0123456789"
    assert config.database_url == "postgresql://confidant:s3cret@db/confidant"
    assert config.sqlite_path is None
    assert config.practice.crisis_line == "Call $5 line"
    # Secrets stay out of repr, which may end up in a log or a traceback.
    shown = repr(config)
    assert "pw-from-env" not in shown
    assert "s3cret" not in shown
    assert "from-a-file" not in shown


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    text = with_overrides(bot={"password": "file:empty"})
    with pytest.raises(ConfigError, match=r"bot\.password: secret file .* is empty"):
        load_config(write(tmp_path, text), env={})


def test_sqlite_paths(tmp_path: Path) -> None:
    relative = load_config(write(tmp_path, with_overrides(database={"url": "db/x.sqlite"})))
    assert relative.sqlite_path == tmp_path / "db" / "x.sqlite"
    absolute = load_config(
        write(tmp_path, with_overrides(database={"url": "sqlite:///var/lib/c/x.db"}))
    )
    assert absolute.sqlite_path == Path("/var/lib/c/x.db")
    assert absolute.database_url == "sqlite:///var/lib/c/x.db"


def test_working_hours_and_closures(tmp_path: Path) -> None:
    config = minimal_config(
        practice={
            "timezone": "Europe/Berlin",
            "working_hours": {
                "mon": "08:00-12:00, 13:00-17:30",
                "sat": ["00:00-24:00"],
                "fri": None,
            },
            "holidays": {"country": "de", "subdivision": "be"},
            "closures": [date(2025, 8, 1), "2025-12-29..2026-01-02"],
        }
    )
    practice = config.practice
    assert practice.working_hours.on(0) == (WorkRange(480, 720), WorkRange(780, 1050))
    assert str(practice.working_hours.on(5)[0]) == "00:00-24:00"
    assert practice.working_hours.on(4) == ()
    assert practice.holidays is not None and practice.holidays.country == "DE"
    assert practice.closed_on(date(2025, 10, 3))  # German Unity Day
    assert practice.closed_on(date(2025, 3, 8))  # International Women's Day, Berlin only
    assert practice.closed_on(date(2025, 12, 31))
    assert practice.closed_on(date(2025, 8, 1))
    assert not practice.closed_on(date(2025, 8, 4))
    assert practice.opening_hours(date(2025, 8, 4)) == practice.working_hours.on(0)
    assert practice.opening_hours(date(2025, 12, 29)) == ()
    assert len(practice.closures) == 6
    assert practice.tzinfo.key == "Europe/Berlin"


def test_working_clock_needs_opening_hours() -> None:
    closed: dict[str, list[str]] = {day: [] for day in ("mon", "tue", "wed", "thu", "fri")}
    with pytest.raises(ConfigError, match=r"practice\.working_hours: has no opening hours"):
        minimal_config(practice={"working_hours": closed})
    config = minimal_config(
        practice={"working_hours": closed},
        policies={"default": {"window_clock": "calendar", "window": "1d"}},
    )
    assert config.policy("default").window == timedelta(days=1)


def test_several_policies_and_unknown_policy() -> None:
    config = minimal_config(
        policies={
            "default": {"window": "1d", "window_clock": "calendar", "heads_up_before": None},
            "urgent": {
                "window": "2h",
                "escalate_after": "30m",
                "supervisors": ["@lead:localhost"],
                "patient_notice": "always",
            },
        }
    )
    urgent = config.policy("urgent")
    assert urgent.escalate_after == timedelta(minutes=30)
    assert urgent.supervisors == ("@lead:localhost",)
    assert config.policy("default").heads_up_before is None
    with pytest.raises(UnknownPolicyError, match=r"'slow'.*default, urgent"):
        config.policy("slow")


def test_admin_tokens_hash_and_verify() -> None:
    hashed = hash_token("tok-123")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", hashed)
    config = minimal_config(http={"admin_tokens": [hash_token("other"), hashed]})
    assert config.http.token_ok("tok-123")
    assert not config.http.token_ok("tok-124")
    assert not config.http.token_ok("")
    assert verify_token("other", config.http.admin_tokens)
    assert not verify_token("tok-123", [])


def test_outbound_email_port_follows_security() -> None:
    base = {"enabled": True, "host": "smtp.localhost", "from_address": "care@localhost"}
    assert minimal_config(outbound_email=base).outbound_email.effective_port == 587
    tls = minimal_config(outbound_email={**base, "security": "tls"})
    assert tls.outbound_email.effective_port == 465
    explicit = minimal_config(outbound_email={**base, "port": 2525})
    assert explicit.outbound_email.effective_port == 2525


def test_config_is_immutable() -> None:
    config = minimal_config()
    with pytest.raises(ValueError, match="frozen"):
        config.practice.name = "Other"


def test_parse_config_names_its_source() -> None:
    data = minimal_config_dict(practice={"timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="inline", env={})
    assert str(caught.value).startswith("inline: practice.timezone: ")
    assert isinstance(parse_config(minimal_config_dict(), env={}), Config)


DURATIONS = [
    ("90s", timedelta(seconds=90)),
    ("30m", timedelta(minutes=30)),
    ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)),
    ("1w", timedelta(weeks=1)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1d 12h", timedelta(days=1, hours=12)),
    ("0s", timedelta(0)),
]


@pytest.mark.parametrize(("text", "expected"), DURATIONS)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "10", "1.5h", "2 days", "30m1h", "-1h", 10, None, True])
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="with units"):
        parse_duration(text)


def test_retention_takes_days_or_durations() -> None:
    assert minimal_config(practice={"retention": 30}).practice.retention == timedelta(days=30)
    assert minimal_config(practice={"retention": "52w"}).practice.retention == timedelta(weeks=52)
    assert minimal_config().practice.retention is None


# ---------------------------------------------------------------- config.example.yaml


def _placeholder_free(data: Any, path: tuple[str | int, ...] = ()) -> Any:
    """Replace each CHANGE-ME value with a real-looking one of the right kind."""
    if isinstance(data, dict):
        return {k: _placeholder_free(v, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_placeholder_free(v, (*path, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and data.startswith("CHANGE-ME"):
        if path[:2] == ("http", "admin_tokens"):
            return hash_token("an-admin-token")
        return base64.b64encode(bytes([len(path)] * 32)).decode()
    return data


def test_example_fails_only_because_of_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    shutil.copy(EXAMPLE, path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    problems = caught.value.problems
    assert problems
    assert all(
        p.message == "is the placeholder from config.example.yaml; set a secret" for p in problems
    ), caught.value.lines()
    assert {p.path for p in problems} >= {"bot.pickle_key", "audit.signing_key"}


def test_example_loads_once_placeholders_are_replaced(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    path = write(tmp_path, yaml.safe_dump(_placeholder_free(data), allow_unicode=True))
    config = load_config(path, env={})
    assert config.homeserver.server_name == "example.org"
    assert config.practice.timezone == "Europe/Berlin"
    assert config.practice.working_hours.on(4) == (WorkRange(540, 780),)
    assert config.practice.closed_on(date(2025, 12, 25))
    assert config.policy("default").escalate_after == timedelta(hours=4)
    assert config.jitsi.jwt is not None and config.jitsi.jwt.lifetime == timedelta(hours=2)
    assert config.http.token_ok("an-admin-token")
    assert config.data_dir == tmp_path / "data"


# Entries of a mapping whose own key carries the comment.
EXEMPT_KEYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun", "k1", "relay", "default"}


def test_every_example_key_has_a_comment() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        entry = re.match(r"^\s*([a-z_0-9]+):", line)
        if entry and entry.group(1) not in EXEMPT_KEYS:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#"), f"line {number + 1} has no comment: {line.strip()}"
