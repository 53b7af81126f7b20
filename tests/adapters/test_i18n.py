"""The machinery of the languages: catalogues read from .po at start, `{% trans %}` in the
templates, a practice's own catalogue and templates per language, and the formats."""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bridge.adapters.i18n import Formats, catalogue_path
from bridge.adapters.render import Renderer
from bridge.config import minimal_config
from bridge.core.language import parse_language


def write_catalogue(root: Path, language: str, entries: dict[str, str], fuzzy: bool = False):
    catalog = Catalog(locale=language)
    for msgid, msgstr in entries.items():
        catalog.add(msgid, msgstr, flags=("fuzzy",) if fuzzy else ())
    path = catalogue_path(root, language)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog)


def make_templates(root: Path) -> Path:
    (root / "messages").mkdir(parents=True)
    (root / "messages" / "hello.txt.j2").write_text(
        "{% trans name=name %}Hello, {{ name }}.{% endtrans %}\n"
        "{% trans count=count %}One message waits.{% pluralize %}"
        "{{ count }} messages wait.{% endtrans %}\n"
    )
    return root


def test_a_trans_block_renders_its_english_msgid_and_a_catalogue_language(tmp_path: Path) -> None:
    root = make_templates(tmp_path / "shipped")
    write_catalogue(
        root,
        "de",
        {
            "Hello, %(name)s.": "Guten Tag, %(name)s.",
            ("One message waits.", "%(count)s messages wait."): (  # type: ignore[dict-item]
                "Eine Nachricht wartet.",
                "%(count)s Nachrichten warten.",
            ),
        },
    )
    renderer = Renderer(root)
    assert renderer.text("hello", {"name": "Ada", "count": 1}) == "Hello, Ada.\nOne message waits."
    assert renderer.text("hello", {"name": "Ada", "count": 3}, "de") == (
        "Guten Tag, Ada.\n3 Nachrichten warten."
    )
    # A language the texts do not exist in falls back to the practice's.
    assert renderer.text("hello", {"name": "Ada", "count": 2}, "fr").startswith("Hello")
    german_practice = Renderer(root, language="de")
    assert german_practice.text("hello", {"name": "Ada", "count": 1}).startswith("Guten Tag")
    assert german_practice.text("hello", {"name": "Ada", "count": 1}, "en").startswith("Hello")


def test_fuzzy_and_empty_translations_fall_back_to_english(tmp_path: Path) -> None:
    root = make_templates(tmp_path / "shipped")
    write_catalogue(root, "es", {"Hello, %(name)s.": "Hola, %(name)s."}, fuzzy=True)
    assert Renderer(root).text("hello", {"name": "Ada", "count": 1}, "es").startswith("Hello")


def test_a_practice_catalogue_and_a_language_directory_override_the_shipped(
    tmp_path: Path,
) -> None:
    root = make_templates(tmp_path / "shipped")
    write_catalogue(root, "de", {"Hello, %(name)s.": "Guten Tag, %(name)s."})
    practice = tmp_path / "practice"
    write_catalogue(practice, "de", {"Hello, %(name)s.": "Hallo %(name)s!"})
    renderer = Renderer(root, overrides=practice)
    assert renderer.text("hello", {"name": "Ada", "count": 1}, "de").startswith("Hallo Ada!")
    (practice / "es" / "messages").mkdir(parents=True)
    (practice / "es" / "messages" / "hello.txt.j2").write_text("¡Hola, {{ name }}!")
    assert renderer.text("hello", {"name": "Ada", "count": 1}, "es") == "¡Hola, Ada!"
    assert renderer.text("hello", {"name": "Ada", "count": 1}).startswith("Hello, Ada.")


def test_dates_times_and_durations_per_language() -> None:
    due = "2026-12-01T07:31:00+01:00"
    assert Formats("en").datetime_local(due) == "2026-12-01 07:31"
    assert Formats("de").datetime_local(due) == "1. Dezember 2026, 07:31"
    assert Formats("es").datetime_local(due) == "1 de diciembre de 2026, 7:31"
    # A UTC time moves into the zone it is asked for.
    assert Formats("de").datetime_local("2026-12-01T06:31:00Z", "Europe/Berlin") == (
        "1. Dezember 2026, 07:31"
    )
    assert Formats("de").datetime_local("2026-12-01 07:31") == "1. Dezember 2026, 07:31"
    assert Formats("de").date_local("2026-12-01") == "1. Dezember 2026"
    assert Formats("es").time_local("14:05") == "14:05"
    assert Formats("en").duration(8 * 3600) == "8 hours"
    assert Formats("en").duration(5400) == "1.5 hours"
    assert Formats("de").duration(8 * 3600) == "8 Stunden"
    assert Formats("de").duration(8 * 3600, add_direction=True) == "in 8 Stunden"
    assert Formats("es").duration(86400) == "1 día"
    assert Formats("de").duration(1800) == "30 Minuten"
    assert Formats("en").days(3650) == "10 years"
    assert Formats("es").days(30) == "30 días"


def test_the_practice_language_is_configured_and_checked() -> None:
    import pytest

    from bridge.config import ConfigError

    assert minimal_config().practice.language == "en"
    assert minimal_config(practice={"language": "de-DE"}).practice.language == "de"
    with pytest.raises(ConfigError, match=r"practice\.language: .*'fr' is not a language"):
        minimal_config(practice={"language": "fr"})
    assert parse_language("ES") == "es" and parse_language("pt") is None


def test_an_email_is_written_in_the_language_it_carries() -> None:
    from bridge.adapters.mailer import Mailer
    from bridge.config import OutboundEmail
    from bridge.core.model import SendEmail

    settings = OutboundEmail(enabled=True, host="127.0.0.1", from_address="care@example.org")
    mailer = Mailer(settings, Renderer(), practice_name="Praxis Sonnenweg")
    context = {
        "pair_label": "7F3A",
        "room_link": "https://matrix.to/#/!pair:hs",
        "due_at": "2026-12-01T06:31:00Z",
        "due_at_local": "2026-12-01T07:31:00+01:00",
        "timezone": "Europe/Berlin",
        "step": "reminder",
    }
    german = mailer.compose(SendEmail("tom@example.org", "sla_reminder_email", context, "de"))
    assert german["Subject"] == "Praxis Sonnenweg: Ein Gespräch wartet auf Antwort"
    assert "fällig am 1. Dezember 2026, 07:31 (Europe/Berlin)" in german.get_content()
    english = mailer.compose(SendEmail("tom@example.org", "sla_reminder_email", context))
    assert english["Subject"] == "Praxis Sonnenweg: a conversation is waiting for a reply"
    assert "due 2026-12-01 07:31 (Europe/Berlin)" in english.get_content()
