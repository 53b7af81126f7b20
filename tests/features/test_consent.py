"""Consent on first contact against the real Synapse: the text on the patient's join, the
therapist's notice, `!accept` and its audit entry with the hash of the exact text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.app import App, default_features
from bridge.core.consent import text_digest
from bridge.features.consent import install_consent
from bridge.store import pairs
from tests.support.bridge_app import bridge_config, notice_containing

pytestmark = pytest.mark.integration


async def audit_rows(app: App, pair_id: str, action: str) -> list[dict]:
    return await app.parts.db.fetch(
        "SELECT actor, details, event_id FROM audit_entries WHERE pair_id = ? AND action = ? "
        "ORDER BY seq",
        pair_id,
        action,
    )


@pytest.fixture
async def consent_app(homeserver, make_user, tmp_path: Path):
    bot = make_user("bot")
    cfg = bridge_config(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        practice={"ask_consent": True},
    )
    assert cfg.practice.ask_consent and cfg.practice.crisis_line  # merged, not replaced
    app = App(cfg, features=[*default_features(), install_consent])
    await app.start()
    yield app
    await app.stop()


async def test_consent_is_asked_on_first_join_then_accepted_and_audited(
    consent_app: App, make_nio_user
) -> None:
    app = consent_app
    therapist = await make_nio_user("therapist")
    patient = await make_nio_user("patient", auto_join=False)
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    assert record.consent_state == "pending"
    room = record.room_id
    desk = app.service.desk_of(therapist.user_id)
    assert desk is not None
    await therapist.wait_room(room, timeout=20)
    # Nothing is asked before the patient is there.
    assert therapist.find(room, notice_containing("!accept")) is None

    await patient.join(room)
    shown = await patient.wait_for(room, notice_containing("reply: !accept"), timeout=30)
    for part in ("Not for emergencies", "+44 800 000 000", "How records are kept", "Reply times"):
        assert part in shown.body
    await therapist.wait_room(desk, timeout=20)
    await therapist.wait_for(desk, notice_containing("not yet accepted"), timeout=30)
    (requested,) = await audit_rows(app, record.pair_id, "consent.requested")
    assert json.loads(requested["details"])["consent_sha256"] == text_digest(shown.body)

    # The therapist cannot accept for the patient.
    await therapist.send_text(room, "!accept")
    await therapist.wait_for(room, notice_containing("!accept"), timeout=30)
    stored = await pairs.get(app.parts.db, record.pair_id)
    assert stored is not None and stored.consent_state == "pending"

    await patient.send_text(room, "!accept")
    await patient.wait_for(room, notice_containing("agreement is recorded"), timeout=30)
    stored = await pairs.get(app.parts.db, record.pair_id)
    assert stored is not None and stored.consent_state == "accepted"
    (accepted,) = await audit_rows(app, record.pair_id, "consent.accepted")
    assert accepted["actor"] == patient.user_id
    assert json.loads(accepted["details"]) == {"consent_sha256": text_digest(shown.body)}

    # A second !accept changes nothing and says so.
    await patient.send_text(room, "!accept")
    await patient.wait_for(room, notice_containing("already agreed"), timeout=30)
    assert len(await audit_rows(app, record.pair_id, "consent.accepted")) == 1
    # The consent text was posted once.
    asking = notice_containing("reply: !accept")
    assert sum(1 for event in patient.timeline[room] if asking(event)) == 1


async def test_without_ask_consent_nothing_is_asked(homeserver, make_user, make_nio_user, tmp_path):
    bot = make_user("bot")
    cfg = bridge_config(homeserver, bot.user_id, bot.password, tmp_path / "data")
    app = App(cfg, features=[*default_features(), install_consent])
    await app.start()
    try:
        therapist = await make_nio_user("therapist")
        patient = await make_nio_user("patient")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        assert record.consent_state == "not_required"
        await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
        await patient.send_text(record.room_id, "!accept")
        await patient.wait_for(record.room_id, notice_containing("nothing to agree"), timeout=30)
        assert patient.find(record.room_id, notice_containing("reply: !accept")) is None
    finally:
        await app.stop()
