"""Logging setup: JSON lines, text lines, library caps and the content guard."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bridge.logging_setup import LIBRARY_LEVELS, ContentGuard, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and the capped library loggers back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_levels = {name: logging.getLogger(name).level for name in LIBRARY_LEVELS}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in library_levels.items():
        logging.getLogger(name).setLevel(old)
    logging.captureWarnings(False)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_is_one_object_per_line_with_extras() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    log = logging.getLogger("bridge.test")
    log.info("relayed %d messages", 3, extra={"pair_id": "p1", "kind": "voice"})
    log.debug("not shown at INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("send failed", extra={"txn_id": "t9"})
    first, second = json_lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "bridge.test"
    assert first["msg"] == "relayed 3 messages"
    assert first["pair_id"] == "p1" and first["kind"] == "voice"
    assert isinstance(first["ts"], str) and first["ts"].endswith("Z")
    assert second["level"] == "ERROR"
    assert second["txn_id"] == "t9"
    assert "RuntimeError: boom" in str(second["exc"])


def test_json_survives_values_it_cannot_encode() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    logging.getLogger("bridge.test").info("odd", extra={"when": object(), "count": 2})
    (entry,) = json_lines(stream)
    assert entry["count"] == 2
    assert str(entry["when"]).startswith("<object object")


def test_text_format_carries_extras() -> None:
    stream = io.StringIO()
    setup_logging("debug", "text", stream=stream)
    logging.getLogger("bridge.test").debug("timer fired", extra={"timer_id": "sla:p1"})
    line = stream.getvalue().strip()
    assert " DEBUG   bridge.test: timer fired timer_id=sla:p1" in line


@pytest.mark.parametrize(
    "field", ["body", "content", "subject", "formatted_body", "Body", "password"]
)
def test_guard_drops_records_carrying_content(field: str) -> None:
    stream = io.StringIO()
    guard = setup_logging("INFO", "json", stream=stream)
    log = logging.getLogger("bridge.careless")
    log.info("message seen", extra={field: "I feel awful today", "pair_id": "p1"})
    log.info("message seen", extra={"pair_id": "p1", "content_sha256": "ab12"})
    entries = json_lines(stream)
    assert len(entries) == 1
    assert entries[0]["content_sha256"] == "ab12"
    assert "awful" not in stream.getvalue()
    assert guard.dropped == {"bridge.careless": 1}


def test_guard_as_a_plain_filter() -> None:
    guard = ContentGuard(frozenset({"subject"}))
    keep = logging.LogRecord("a", logging.INFO, __file__, 1, "ok", None, None)
    drop = logging.LogRecord("a", logging.INFO, __file__, 1, "mail", None, None)
    drop.subject = "Re: my diagnosis"
    assert guard.filter(keep)
    assert not guard.filter(drop)


def test_nio_is_capped_at_warning_even_at_debug() -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream=stream)
    nio_log = logging.getLogger("nio.rooms")
    nio_log.debug("event content here")
    nio_log.info("sync details")
    nio_log.warning("key upload failed")
    logging.getLogger("bridge.matrix").debug("sync done")
    entries = json_lines(stream)
    assert [(e["logger"], e["msg"]) for e in entries] == [
        ("nio.rooms", "key upload failed"),
        ("bridge.matrix", "sync done"),
    ]


def test_library_cap_never_lowers_the_level() -> None:
    setup_logging("ERROR", "text", stream=io.StringIO())
    assert logging.getLogger("nio").level == logging.ERROR


def test_setup_twice_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", "json", stream=first)
    setup_logging("INFO", "text", stream=second)
    logging.getLogger("bridge.test").info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_bad_arguments_are_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError):
        setup_logging(level, fmt, stream=io.StringIO())
