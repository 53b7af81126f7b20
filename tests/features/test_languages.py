"""Each reader's language against the real Synapse: a German patient reads her welcome,
consent and reply-time notice in German while her English therapist's desk gets its notices
and reminders in English; `!language es` switches her next texts; a practice that asks again
on a change of language posts the consent text in the new one, with its own hash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.app import App, default_features
from bridge.core.consent import text_digest
from bridge.store import languages, pairs, therapists
from tests.support.bridge_app import bridge_config, notice_containing

pytestmark = pytest.mark.integration

SECRET = "Mir geht es heute nicht gut"


async def audit_details(app: App, pair_id: str, action: str) -> list[dict[str, Any]]:
    rows = await app.parts.db.fetch(
        "SELECT details FROM audit_entries WHERE pair_id = ? AND action = ? ORDER BY seq",
        pair_id,
        action,
    )
    return [json.loads(str(row["details"])) for row in rows]


@pytest.fixture
async def start_bridge(homeserver, make_user, tmp_path: Path):
    started: list[App] = []

    async def start(**practice: Any) -> App:
        bot = make_user("bot")
        cfg = bridge_config(
            homeserver,
            bot.user_id,
            bot.password,
            tmp_path / f"data{len(started)}",
            practice={"ask_consent": True, "timezone": "Europe/Berlin", **practice},
            policies={
                "default": {
                    "window": "3s",
                    "window_clock": "calendar",
                    "heads_up_before": None,
                    "patient_notice": "always",
                }
            },
        )
        app = App(cfg, features=default_features())
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


async def test_a_german_patient_reads_german_while_her_therapists_desk_reads_english(
    start_bridge, make_nio_user
) -> None:
    app = await start_bridge()
    therapist = await make_nio_user("therapist")
    patient = await make_nio_user("patient", auto_join=False)
    await languages.set_language(app.parts.db, patient.user_id, "de", now=0)
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    room = record.room_id
    assert room is not None
    desk_row = await therapists.get(app.parts.db, therapist.user_id)
    assert desk_row is not None and desk_row.desk_room_id is not None
    desk = desk_row.desk_room_id
    await therapist.wait_for(desk, notice_containing("New conversation: pair"), timeout=30)

    await patient.join(room)
    welcome = await patient.wait_for(room, notice_containing("Willkommen"), timeout=30)
    assert "Ende-zu-Ende-verschlüsselt" in welcome.body and "+44 800 000 000" in welcome.body
    # The policy's window, written for German ("1 minute" in English).
    assert "Sie erhalten eine Antwort innerhalb von 1 Minute." in welcome.body
    consent = await patient.wait_for(room, notice_containing("!accept"), timeout=30)
    assert consent.body.startswith("Bevor Sie beginnen: So funktioniert")
    assert "Nicht für Notfälle" in consent.body and "Wenn Sie in einer Krise sind" in consent.body
    (requested,) = await audit_details(app, record.pair_id, "consent.requested")
    assert requested == {"consent_sha256": text_digest(consent.body), "language": "de"}
    await therapist.wait_for(desk, notice_containing("has not yet accepted"), timeout=30)

    await patient.send_text(room, "!accept")
    await patient.wait_for(room, notice_containing("Ihre Zustimmung ist festgehalten"), 30)
    (accepted,) = await audit_details(app, record.pair_id, "consent.accepted")
    assert accepted == {"consent_sha256": text_digest(consent.body)}

    await patient.send_text(room, SECRET)
    expected = await patient.wait_for(room, notice_containing("Vielen Dank für Ihre"), 30)
    # A German date in the policy's time zone ("1. Dezember 2026, 07:31").
    assert re.search(
        r"Sie erhalten eine Antwort bis zum \d{1,2}\. [A-Z][a-zä]+ \d{4}, \d{2}:\d{2} "
        r"\(Europe/Berlin\)\.",
        expected.body,
    ), expected.body
    reminder = await therapist.wait_for(desk, notice_containing("Reminder: pair"), timeout=40)
    assert record.label in reminder.body and SECRET not in reminder.body

    await patient.send_text(room, "!language es")
    await patient.wait_for(room, notice_containing("A partir de ahora el asistente"), 30)
    assert await languages.of_user(app.parts.db, patient.user_id) == "es"
    assert (await audit_details(app, record.pair_id, "language.changed"))[-1]["language"] == "es"
    await patient.send_text(room, "!help")
    help_text = await patient.wait_for(room, notice_containing("Comandos que puede usar"), 30)
    assert "!language" in help_text.body and "!accept" in help_text.body
    # Consent stays as it was: this practice does not ask again on a change of language.
    stored = await pairs.get(app.parts.db, record.pair_id)
    assert stored is not None and stored.consent_state == "accepted"

    # The therapist's own choice changes his desk, not the patient's room.
    await therapist.send_text(desk, "!language de")
    await therapist.wait_for(desk, notice_containing("Ab jetzt schreibt Ihnen"), 30)
    await therapist.send_text(desk, "!due")
    await therapist.wait_for(desk, notice_containing("Warten auf Ihre Antwort"), 30)


async def test_a_practice_that_asks_again_posts_the_consent_in_the_new_language(
    start_bridge, make_nio_user
) -> None:
    app = await start_bridge(reconsent_on_language_change=True)
    therapist = await make_nio_user("therapist")
    patient = await make_nio_user("patient", auto_join=False)
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    room = record.room_id
    assert room is not None
    await patient.join(room)
    english = await patient.wait_for(room, notice_containing("reply: !accept"), timeout=30)
    await patient.send_text(room, "!accept")
    await patient.wait_for(room, notice_containing("agreement is recorded"), timeout=30)

    await patient.send_text(room, "!language de")
    german = await patient.wait_for(room, notice_containing("antworten Sie: !accept"), 30)
    await patient.wait_for(room, notice_containing("Ab jetzt schreibt Ihnen"), 30)
    stored = await pairs.get(app.parts.db, record.pair_id)
    assert stored is not None and stored.consent_state == "pending"
    first, again = await audit_details(app, record.pair_id, "consent.requested")
    assert first == {"consent_sha256": text_digest(english.body), "language": "en"}
    assert again == {
        "consent_sha256": text_digest(german.body),
        "language": "de",
        "reason": "language_changed",
    }
    assert first["consent_sha256"] != again["consent_sha256"]
    await patient.send_text(room, "!accept")
    await patient.wait_for(room, notice_containing("Ihre Zustimmung ist festgehalten"), 30)
    accepted = await audit_details(app, record.pair_id, "consent.accepted")
    assert accepted[-1] == {"consent_sha256": text_digest(german.body)}
