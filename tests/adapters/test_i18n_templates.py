"""Every template in every language: each renders in English, German and Spanish with the
variables the code passes it (tests/adapters/i18n_samples.py), and every text of every
template, and every command's `!help` summary, has a translation that can ship."""

from __future__ import annotations

import re

import jinja2
import pytest

from bridge.adapters.i18n import missing_translations, shipped_messages, template_names
from bridge.adapters.render import Renderer, default_templates_dir
from bridge.core.language import LANGUAGES
from tests.adapters.i18n_samples import SAMPLES

ROOT = default_templates_dir()
RENDERER = Renderer()
#: What the bot sends and mails; admin/ and the transcript are pages (tests/web, export).
SENT = [name for name in template_names(ROOT) if name.split("/")[0] in ("messages", "email")]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def test_every_sent_template_has_the_variables_the_code_passes() -> None:
    assert sorted(set(SENT) - set(SAMPLES)) == [], "add the template's contexts to i18n_samples"
    assert sorted(set(SAMPLES) - set(SENT)) == [], "a sample for a template that is gone"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_template_renders_in_each_language(name: str, language: str) -> None:
    template = RENDERER.environment(language).get_template(name)
    english = RENDERER.environment("en").get_template(name)
    for context in SAMPLES[name]:
        text = template.render(**context).strip()
        assert text, f"{name} renders empty in {language}"
        assert "%(" not in text and "{{" not in text and "{%" not in text
        if language != "en" and english.render(**context).strip() == text:
            # Only texts without words (a link, a name) may read the same in every language.
            assert not re.search(r"[A-Za-z]{4,} [a-z]{3,}", text), f"{name}: not translated"


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_text_has_a_translation_that_can_ship(language: str) -> None:
    from bridge.audit.export import label_messages

    messages = shipped_messages(RENDERER.env, ROOT, label_messages())
    assert len(messages) > 100
    missing = missing_translations(messages, [ROOT], language)
    assert [m.msgid for m in missing] == [], (
        f"untranslated in {language} (python -m dev.i18n, then fill in "
        f"templates/locale/{language}/LC_MESSAGES/messages.po): "
        + ", ".join(f"{m.where}:{m.line}" for m in missing)
    )


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_translations_keep_their_placeholders(language: str) -> None:
    from bridge.adapters.i18n import catalogue_path, read_catalogue

    catalog = read_catalogue(catalogue_path(ROOT, language), language)
    for entry in catalog:
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        expected = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        for string in filter(None, strings):
            assert set(PLACEHOLDER.findall(string)) <= expected, entry.id
            assert set(PLACEHOLDER.findall(ids[0])) <= set(PLACEHOLDER.findall(string)) or (
                len(ids) == 2
            ), f"{language} drops a placeholder of {entry.id!r}"


def test_every_template_parses_in_every_language() -> None:
    for language in LANGUAGES:
        env = RENDERER.environment(language)
        for name in template_names(ROOT):
            try:
                env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:  # pragma: no cover - the failure itself
                pytest.fail(f"{name} in {language}: {exc}")


def test_german_and_spanish_dates_in_the_patients_notice() -> None:
    context = SAMPLES["messages/sla_expected_reply.txt.j2"][0]
    german = RENDERER.text("sla_expected_reply", context, "de")
    spanish = RENDERER.text("sla_expected_reply", context, "es")
    assert "bis zum 1. Dezember 2026, 07:31 (Europe/Berlin)" in german
    assert "+49 800 111 0 111" in german and "Krise" in german
    assert "antes del 1 de diciembre de 2026, 7:31 (Europe/Berlin)" in spanish
    assert "2026-12-01 07:31 (Europe/Berlin)" in RENDERER.text("sla_expected_reply", context)


def test_help_explains_the_same_commands_in_the_readers_language() -> None:
    from bridge.core.command_set import build_commands
    from bridge.core.commands import PAIR_ROOM
    from bridge.core.model import Role

    available = build_commands().available(PAIR_ROOM, Role.PATIENT)
    commands = [{"name": c.name, "usage": c.usage, "summary": c.summary} for c in available]
    german = RENDERER.text("help", {"commands": commands, "room_kind": PAIR_ROOM}, "de")
    assert german.startswith("Befehle, die Sie hier verwenden können:")
    for cmd in available:
        assert f"!{cmd.name}" in german and cmd.summary not in german


def test_the_transcript_in_the_practices_language() -> None:
    item = {
        "kind": "voice",
        "role": "patient",
        "seq": 3,
        "time": "2026-12-01 07:31",
        "actor": "@greta:hs",
        "label": "Voice message",
        "outcome": "ok",
        "email": None,
        "relates_seq": None,
        "relates_to": None,
        "status": "purged",
        "html": None,
        "text": None,
        "media": {
            "path": None,
            "category": "audio",
            "filename": "note.ogg",
            "mimetype": "audio/ogg",
            "size": 2048,
            "duration_s": 4,
        },
        "attachments": [],
        "link": None,
        "edited_by": [],
        "redacted_by": 5,
        "notes": [],
    }
    # Rendered as the export renders it: through the practice's renderer.
    html = Renderer(language="de").page(
        "transcript.html.j2",
        {
            "title": "Transcript 7F3A",
            "pair_id": "p1",
            "period_from": None,
            "period_to": None,
            "created": "2026-12-01 08:00",
            "timezone": "Europe/Berlin",
            "items": [item],
            "head_hash": "ab" * 32,
            "chain_count": 7,
            "key_id": "k1",
        },
    )
    assert '<html lang="de">' in html
    for german in (
        "Zeitraum",
        "Beginn – Export",
        "Sprachnachricht",
        "(Patient/in)",
        "Datei nicht aufbewahrt",
        "2048 Byte",
        "Hash des Eintrags bleibt erhalten",
        'Aus dem Raum entfernt durch <a href="#e5">#5</a>',
        "Kopf der Audit-Kette nach 7 Einträgen",
    ):
        assert german in html, german


@pytest.mark.parametrize(
    ("language", "expected"), [("de", "Anmelden"), ("es", "Iniciar sesión"), ("en", "Sign in")]
)
def test_the_dashboards_sign_in_page_in_the_practices_language(
    language: str, expected: str
) -> None:
    page = Renderer(language=language).page(
        "admin/login.html.j2",
        {
            "practice_name": "Praxis Sonnenweg",
            "live_script": "",
            "viewer": None,
            "error": None,
            "csrf_token": "t",
            "refresh_seconds": None,
            "here": "/dashboard/login",
        },
    )
    assert f'<html lang="{language}">' in page
    assert f"<h2>{expected}</h2>" in page
