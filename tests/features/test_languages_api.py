"""PATCH /api/v1/pairs/{ref} sets the patient's language, audited, with named errors."""

from __future__ import annotations

import pytest

from bridge.store import languages
from tests.web.test_http_api import _auth, _register
from tests.web.test_http_api import api as api  # the fixture

pytestmark = pytest.mark.integration


async def test_the_admin_api_sets_the_patients_language(api, homeserver) -> None:
    app, _server, session = api
    patient = _register(homeserver, "langpatient")
    therapist = _register(homeserver, "langtherapist")
    body = {"patient": patient, "therapist": therapist}
    async with session.post("/api/v1/pairs", json=body, headers=_auth()) as resp:
        label = (await resp.json())["pair"]["label"]

    path = f"/api/v1/pairs/{label}"
    async with session.patch(path, json={"language": "de-DE"}, headers=_auth()) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer["language"] == "de" and answer["language_is_own"] is True
    assert answer["pair"]["label"] == label
    assert await languages.of_user(app.parts.db, patient) == "de"
    async with session.patch(path, json={"language": None}, headers=_auth()) as resp:
        assert (await resp.json())["language_is_own"] is False
    for wrong in ({"language": "fr"}, {"language": "de", "policy": "x"}, {}):
        async with session.patch(path, json=wrong, headers=_auth()) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "bad_request"
    async with session.patch(
        "/api/v1/pairs/NOPE", json={"language": "es"}, headers=_auth()
    ) as resp:
        assert resp.status == 404
    rows = await app.parts.db.fetch(
        "SELECT actor, details FROM audit_entries WHERE action = 'language.changed' ORDER BY seq"
    )
    assert [r["actor"] for r in rows][-2:] == ["api", "api"]
