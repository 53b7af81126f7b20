"""`invite --language de`: the invitation e-mail in German with a German date, and the
patient's texts in German once her account appears (until she picks another language)."""

from __future__ import annotations

import re

import pytest

from bridge.features.onboarding.invitations import invite_patient
from bridge.store import languages
from tests.adapters.test_mailer import body_of
from tests.adapters.test_mailer import smtp_sink as smtp_sink  # the fixture
from tests.features.test_onboarding import onboarding as onboarding  # the fixture

pytestmark = pytest.mark.integration


async def test_an_invitation_in_german(onboarding) -> None:
    ob, therapist, sink, _admin = onboarding
    invited = await invite_patient(
        ob, "greta@example.org", therapist.user_id, ob.clock(), name="Greta", language="de"
    )
    assert invited.email_sent, invited.email_error
    (msg,) = await sink.wait()
    body = body_of(msg)
    assert body.startswith("Guten Tag Greta,")
    assert "SO BEGINNEN SIE" in body and "WELCHE APP" in body
    assert re.search(r"läuft am \d{1,2}\. [A-Z][a-zä]+ \d{4}, \d{2}:\d{2} \(", body), body
    assert "Wenn Sie in einer Krise sind, rufen Sie +44 800 000 000 an." in body
    assert (
        str(msg["Subject"]) == "Ihre Einladung zum sicheren Nachrichtendienst von Harbour Therapy"
    )
    record = invited.record
    assert await languages.of_invitation(ob.db, record.invitation_id) == "de"

    # Once the account that used the code is known, her texts are German too.
    patient = "@greta:example.org"
    await ob.db.execute(
        "UPDATE invitations SET patient_id = ? WHERE invitation_id = ?",
        patient,
        record.invitation_id,
    )
    assert await languages.of_user(ob.db, patient) == "de"
    await languages.set_language(ob.db, patient, "es", now=0)
    assert await languages.of_user(ob.db, patient) == "es"
