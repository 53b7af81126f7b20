"""The dashboard's pages through the real aiohttp application on SQLite, without a homeserver.

A small practice is written through the store with clocks whose state is known; the pages
are fetched as a browser would (cookies, CSRF field). Chromium and Synapse are in
test_dashboard.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.dashboard import offline_deps
from bridge.config import minimal_config
from bridge.config.minimal import MINIMAL_ADMIN_TOKEN
from bridge.core.model import AppendAudit
from bridge.core.sla import ESCALATION_WAITING, Clock, ClockState, clock_id_for
from bridge.features.dashboard import link_digest
from bridge.parts import open_parts
from bridge.store import audit, clocks, dashboard, pairs
from bridge.store.base import to_ms
from bridge.store.inbox import get as get_inbound
from bridge.store.inbox import mark_failed, store_inbound
from bridge.web.auth import CSRF_COOKIE
from bridge.web.server import build_web_app

# Tuesday 1 December 2026, 11:00 UTC: the practice (Europe/London by default) is open.
NOW = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
ALICE, BOB = "@alice:localhost", "@bob:localhost"


def _clock(pair_id: str, therapist: str, event: str, opened: datetime, **kw: Any) -> Clock:
    return Clock(
        pair_id=pair_id,
        clock_id=clock_id_for(pair_id, event),
        therapist_id=therapist,
        policy="default",
        opened_at=opened,
        first_event_id=event,
        first_kind="text",
        due_at=kw.pop("due_at", opened + timedelta(hours=4)),
        escalate_at=kw.pop("escalate_at", None),
        **kw,
    )


class FakeDesk:
    """The onboarding feature's invitation desk as the dashboard calls it (its own use
    cases, with their audit entries, have their tests in tests/features/test_onboarding.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def mail_on(self) -> bool:
        return True

    async def resend(self, invitation_id: str) -> Any:
        self.calls.append(("resend", invitation_id))

    async def revoke(self, invitation_id: str) -> Any:
        if invitation_id == "GONE":
            raise LookupError("no invitation GONE")
        self.calls.append(("revoke", invitation_id))

    async def invite(
        self,
        email: str,
        therapist: str,
        *,
        name: str | None,
        policy: str,
        valid_for: Any,
        language: str | None = None,
    ) -> Any:
        self.calls.append(("invite", f"{email} {therapist} {name} {policy} {language}"))
        return SimpleNamespace(email_sent=True)


@pytest.fixture
async def practice(tmp_path: Path) -> Any:
    cfg = minimal_config(
        data_dir=str(tmp_path / "data"),
        practice={"working_hours": {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}},
    )
    parts = await open_parts(cfg, defer_login=True)
    labels: dict[str, str] = {}
    async with parts.db.transaction() as tx:
        for name, therapist in (("late", ALICE), ("soon", ALICE), ("waiting", BOB), ("quiet", BOB)):
            record = await pairs.create(
                tx,
                patient_id=f"@p-{name}:localhost",
                therapist_id=therapist,
                now=to_ms(NOW - timedelta(days=30)),
                room_id=f"!{name}:localhost",
                consent_state="pending" if name == "quiet" else "accepted",
            )
            labels[name] = record.label
        ids = {n: (await pairs.get_by_label(tx, lbl)).pair_id for n, lbl in labels.items()}  # type: ignore[union-attr]
        await clocks.insert_many(
            tx,
            [
                # Due 2 h 15 min ago, reminder sent, escalation in 45 min.
                _clock(
                    ids["late"],
                    ALICE,
                    "$late",
                    NOW - timedelta(hours=6, minutes=15),
                    escalate_at=NOW + timedelta(minutes=45),
                    steps_done=frozenset({"due"}),
                ),
                _clock(ids["soon"], ALICE, "$soon", NOW - timedelta(hours=1)),
                _clock(
                    ids["waiting"],
                    BOB,
                    "$waiting",
                    NOW - timedelta(hours=9),
                    escalate_at=NOW - timedelta(hours=1),
                    steps_done=frozenset({"due", ESCALATION_WAITING}),
                ),
                # Answered last week in 2 h and 6 h (one late) for the trends.
                _clock(
                    ids["quiet"],
                    BOB,
                    "$old1",
                    NOW - timedelta(days=7),
                    state=ClockState.CLOSED,
                    closed_at=NOW - timedelta(days=7) + timedelta(hours=2),
                    response_working=timedelta(hours=2),
                    response_calendar=timedelta(hours=2),
                    met=True,
                ),
                _clock(
                    ids["quiet"],
                    BOB,
                    "$old2",
                    NOW - timedelta(days=6),
                    state=ClockState.CLOSED,
                    closed_at=NOW - timedelta(days=6) + timedelta(hours=6),
                    response_working=timedelta(hours=6),
                    response_calendar=timedelta(hours=6),
                    met=False,
                ),
            ],
        )
    # Every patient joined but the one of "quiet".
    for name in ("late", "soon", "waiting"):
        await parts.audit.record(
            AppendAudit(ids[name], "room.membership", f"@p-{name}:localhost", {}), NOW
        )
    deps = offline_deps(parts, lambda: NOW)
    desk = FakeDesk()
    recorded: list[AppendAudit] = []
    invoked: list[Any] = []

    async def record(entry: AppendAudit) -> None:
        recorded.append(entry)
        await parts.audit.record(entry, NOW)

    async def invoke(op: Any) -> None:
        invoked.append(op)

    from dataclasses import replace

    deps = replace(deps, record_audit=record, invoke=invoke, invitations=desk)
    async with TestClient(
        TestServer(build_web_app(deps)), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as client:
        client.desk = desk  # type: ignore[attr-defined]
        yield client, parts, labels, recorded, invoked
    await parts.close()


def _csrf(client: TestClient[web.Request, web.Application]) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == CSRF_COOKIE)


async def _admin(client: TestClient[web.Request, web.Application]) -> None:
    await client.get("/dashboard/login")
    resp = await client.post(
        "/dashboard/login", data={"token": MINIMAL_ADMIN_TOKEN, "csrf_token": _csrf(client)}
    )
    assert resp.status == 200 and resp.url.path == "/dashboard"


def _rows(html: str, table_id: str) -> list[str]:
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", "<tr" + row)).strip()
        for row in body.split("<tr")[1:]
    ]


async def test_the_queue_reads_the_clocks(practice: Any) -> None:
    client, _parts, labels, _rec, _inv = practice
    resp = await client.get("/dashboard", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"
    await _admin(client)
    resp = await client.get("/dashboard")
    html = await resp.text()
    rows = _rows(html, "queue")
    # Soonest due first: "waiting" (due 5 h ago), "late" (2 h 15 min ago), "soon" (in 3 h).
    assert [r.split()[0] for r in rows] == [labels["waiting"], labels["late"], labels["soon"]]
    assert "5 h 00 min" in rows[0] and "escalation waiting: no supervisor reachable" in rows[0]
    assert "2 h 15 min" in rows[1] and "escalation 11:45" in rows[1]
    assert "reminder 14:00" in rows[2]
    assert 'id="flag-never-joined">Never joined: 1' in html
    assert 'id="flag-consent">Consent not accepted: 1' in html
    assert "@p-" not in html  # no patient id, let alone a name
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_pairs_page_filters_and_pages(practice: Any) -> None:
    client, _parts, labels, _rec, _inv = practice
    await _admin(client)
    html = await (await client.get("/dashboard/pairs?state=never_joined")).text()
    assert [r.split()[0] for r in _rows(html, "pair-table")] == [labels["quiet"]]
    html = await (await client.get(f"/dashboard/pairs?therapist={ALICE}")).text()
    assert sorted(r.split()[0] for r in _rows(html, "pair-table")) == sorted(
        [labels["late"], labels["soon"]]
    )
    html = await (await client.get(f"/dashboard/pairs?q={labels['late'][:3].lower()}")).text()
    assert labels["late"] in html
    html = await (await client.get("/dashboard/pairs?state=overdue")).text()
    assert sorted(r.split()[0] for r in _rows(html, "pair-table")) == sorted(
        [labels["late"], labels["waiting"]]
    )


async def test_a_desk_link_signs_a_therapist_in_once_to_their_own_pairs(practice: Any) -> None:
    client, parts, labels, recorded, _inv = practice
    token = "desk-link-token-for-tests"
    await dashboard.add_link(
        parts.db, link_digest(token), BOB, to_ms(NOW), to_ms(NOW + timedelta(minutes=5))
    )
    form = await client.get(f"/dashboard/link/{token}")
    assert form.status == 200
    # Looking at the link does not use it; the POST does, once.
    resp = await client.post(f"/dashboard/link/{token}", data={"csrf_token": _csrf(client)})
    assert resp.status == 200 and resp.url.path == "/dashboard"
    html = await resp.text()
    assert labels["waiting"] in html and labels["late"] not in html
    pairs_html = await (await client.get(f"/dashboard/pairs?therapist={ALICE}")).text()
    assert labels["late"] not in pairs_html and labels["quiet"] in pairs_html
    assert (await client.get(f"/dashboard/pairs/{labels['late']}")).status == 404
    again = await client.post(f"/dashboard/link/{token}", data={"csrf_token": _csrf(client)})
    assert again.status == 401
    assert [e.action for e in recorded][:2] == ["dashboard.signed_in", "dashboard.link_refused"]
    # Sign out everywhere ends this session.
    resp = await client.post("/dashboard/logout/everywhere", data={"csrf_token": _csrf(client)})
    assert resp.url.path == "/dashboard/login"
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303
    assert await dashboard.session_count(parts.db, BOB, to_ms(NOW)) == 0


async def test_an_expired_link_is_refused(practice: Any) -> None:
    client, parts, _labels, _rec, _inv = practice
    token = "expired-link-token"
    await dashboard.add_link(
        parts.db,
        link_digest(token),
        BOB,
        to_ms(NOW - timedelta(minutes=10)),
        to_ms(NOW - timedelta(minutes=5)),
    )
    await client.get(f"/dashboard/link/{token}")
    resp = await client.post(f"/dashboard/link/{token}", data={"csrf_token": _csrf(client)})
    assert resp.status == 401


async def test_actions_need_the_csrf_token_and_are_audited(practice: Any) -> None:
    client, parts, _labels, recorded, invoked = practice
    await _admin(client)
    refused = await client.post(
        "/dashboard/away", data={"therapist": ALICE, "until": "2026-12-08T09:00"}
    )
    assert refused.status == 403 and not invoked
    resp = await client.post(
        "/dashboard/away",
        data={
            "therapist": ALICE,
            "until": "2026-12-08T09:00",
            "cover": BOB,
            "csrf_token": _csrf(client),
        },
    )
    assert resp.status == 200 and resp.url.path == "/dashboard"
    assert invoked[0].operation == "sla.away" and invoked[0].params["cover"] == BOB
    assert recorded[-1].action == "therapist.away" and recorded[-1].actor == "dashboard:admin"
    # The entry is in the chain, with the dashboard as its actor.
    stored = await audit.entries_after(parts.db, 0, 100)
    assert any(r.action == "therapist.away" and r.actor == "dashboard:admin" for r in stored)


async def test_the_trends_chart_carries_the_report_numbers(practice: Any) -> None:
    client, _parts, _labels, _rec, _inv = practice
    await _admin(client)
    html = await (await client.get("/dashboard/trends?from=2026-11-16&to=2026-11-30")).text()
    # Weeks of 16, 23 and 30 Nov; the replies of 24 and 25 Nov: 2 h and 6 h.
    reply = html.split('id="chart-reply"', 1)[1].split("</svg>", 1)[0]
    assert 'data-name="median" data-values=" 4 "' in reply
    assert 'data-name="90th percentile" data-values=" 6 "' in reply
    met = html.split('id="chart-met"', 1)[1].split("</svg>", 1)[0]
    assert 'data-values=" 50 "' in met
    breaches = html.split('id="chart-breaches"', 1)[1].split("</svg>", 1)[0]
    assert 'data-values="0 1 0"' in breaches


async def test_invitation_actions_are_the_admins_and_need_the_csrf_token(practice: Any) -> None:
    client, parts, _labels, _rec, _inv = practice
    desk = client.desk
    token = "therapist-link-token"
    await dashboard.add_link(
        parts.db, link_digest(token), BOB, to_ms(NOW), to_ms(NOW + timedelta(minutes=5))
    )
    await client.get(f"/dashboard/link/{token}")
    await client.post(f"/dashboard/link/{token}", data={"csrf_token": _csrf(client)})
    # A therapist may not revoke.
    resp = await client.post(
        "/dashboard/invitations/AB12/revoke", data={"csrf_token": _csrf(client)}
    )
    assert resp.status == 403 and desk.calls == []
    await client.post("/dashboard/logout", data={"csrf_token": _csrf(client)})
    await _admin(client)
    resp = await client.post("/dashboard/invitations/AB12/revoke", data={})
    assert resp.status == 403 and desk.calls == []
    resp = await client.post(
        "/dashboard/invitations/AB12/resend", data={"csrf_token": _csrf(client)}
    )
    assert resp.status == 200 and resp.url.query.get("done") == "resent"
    resp = await client.post(
        "/dashboard/invitations/AB12/revoke", data={"csrf_token": _csrf(client)}
    )
    assert resp.url.query.get("done") == "revoked"
    assert desk.calls == [("resend", "AB12"), ("revoke", "AB12")]
    resp = await client.post(
        "/dashboard/invitations/GONE/revoke", data={"csrf_token": _csrf(client)}
    )
    assert resp.status == 409 and "no invitation GONE" in await resp.text()


async def test_the_range_table_per_therapist_is_the_reports(practice: Any) -> None:
    client, _parts, _labels, _rec, _inv = practice
    await _admin(client)
    plain = await (await client.get("/dashboard/trends?from=2026-11-16&to=2026-11-30")).text()
    assert 'id="table-link"' in plain
    html = await (
        await client.get("/dashboard/trends?from=2026-11-16&to=2026-11-30&table=therapists")
    ).text()
    table = html.split('id="by-therapist"', 1)[1]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table))
    # Bob: two replies, 2 h and 6 h; one late. The practice's row says the same.
    assert "The practice 2 4.0 6.0 50% 1" in text
    assert f"{BOB} 2 4.0 6.0 50% 1" in text


async def test_paging_through_a_practice(tmp_path: Path) -> None:
    from bench.dashboard import seed

    parts = await open_parts(minimal_config(data_dir=str(tmp_path / "data")), defer_login=True)
    try:
        await seed(parts, 120, NOW)
        app = build_web_app(offline_deps(parts, lambda: NOW))
        jar = aiohttp.CookieJar(unsafe=True)
        async with TestClient(TestServer(app), cookie_jar=jar) as client:
            await _admin(client)
            seen: list[str] = []
            path: str | None = "/dashboard/pairs"
            while path is not None:
                html = await (await client.get(path)).text()
                seen += [r.split()[0] for r in _rows(html, "pair-table")]
                found = re.search(r'href="([^"]+)" id="page-next"', html)
                path = "/dashboard/pairs" + found.group(1).replace("&amp;", "&") if found else None
            assert len(seen) == len(set(seen)) == 120 and seen == sorted(seen)
            assert "Page 3 of 3 (120 in all)" in html
            # The queue pages too: 24 of the 120 wait, 25 a page.
            html = await (await client.get("/dashboard")).text()
            assert len(_rows(html, "queue")) == 24 and 'id="page-next"' not in html
    finally:
        await parts.close()


async def test_an_expired_session_signs_in_again(practice: Any) -> None:
    from bridge.web.auth import SESSION_COOKIE
    from bridge.web.dashboard_page import cookie_digest

    client, parts, _labels, _rec, _inv = practice
    fresh = "a-fresh-session-cookie"
    await dashboard.add_session(
        parts.db, cookie_digest(fresh), BOB, to_ms(NOW), to_ms(NOW + timedelta(hours=1))
    )
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: fresh})
    assert (await client.get("/dashboard", allow_redirects=False)).status == 200
    cookie = "an-old-session-cookie"
    await dashboard.add_session(
        parts.db, cookie_digest(cookie), BOB, to_ms(NOW - timedelta(hours=9)), to_ms(NOW)
    )
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: cookie})
    resp = await client.get("/dashboard", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"


async def test_the_admin_invites_a_patient_from_the_dashboard(practice: Any) -> None:
    client, _parts, _labels, _rec, _inv = practice
    desk = client.desk
    await _admin(client)
    page = await (await client.get("/dashboard/invitations")).text()
    assert 'id="invite"' in page and f'value="{ALICE}"' in page
    form = {"email": "ann@example.org", "therapist": ALICE, "policy": "default"}
    resp = await client.post("/dashboard/invitations", data=form)
    assert resp.status == 403 and desk.calls == []  # no CSRF token
    resp = await client.post(
        "/dashboard/invitations",
        data={**form, "email": "not an address", "csrf_token": _csrf(client)},
    )
    assert resp.status == 409 and desk.calls == []
    resp = await client.post(
        "/dashboard/invitations",
        data={**form, "therapist": "@nobody:localhost", "csrf_token": _csrf(client)},
    )
    assert resp.status == 409 and desk.calls == []
    resp = await client.post(
        "/dashboard/invitations", data={**form, "name": "Ann", "csrf_token": _csrf(client)}
    )
    assert resp.status == 200 and resp.url.query.get("done") == "invited"
    assert desk.calls == [("invite", f"ann@example.org {ALICE} Ann default None")]
    assert "the patient gets the code by e-mail" in await resp.text()
    assert 'name="language"' in page and '<option value="de" lang="de">Deutsch' in page
    resp = await client.post(
        "/dashboard/invitations",
        data={**form, "language": "klingon", "csrf_token": _csrf(client)},
    )
    assert resp.status == 409 and len(desk.calls) == 1
    resp = await client.post(
        "/dashboard/invitations", data={**form, "language": "de", "csrf_token": _csrf(client)}
    )
    assert resp.status == 200
    assert desk.calls[-1] == ("invite", f"ann@example.org {ALICE} None default de")


async def test_a_failed_email_is_listed_without_content_and_retried_by_the_admin(
    practice: Any,
) -> None:
    client, parts, labels, _rec, _inv = practice
    record = await pairs.get_by_label(parts.db, labels["late"])
    assert record is not None
    email_id, _ = await store_inbound(
        parts.db,
        parts.sealer,
        record.pair_id,
        "pat@example.org",
        "<m1@example.org>",
        b"Subject: my private worries\r\n\r\nsecret words\r\n",
        to_ms(NOW),
    )
    assert await mark_failed(parts.db, email_id, "malformed:no_body")
    await _admin(client)
    page = await (await client.get("/dashboard/email")).text()
    assert email_id in page and labels["late"] in page and "malformed:no_body" in page
    assert "private worries" not in page and "pat@example.org" not in page
    resp = await client.post(f"/dashboard/email/{email_id}/retry", data={})
    assert resp.status == 403  # no CSRF token
    resp = await client.post(
        f"/dashboard/email/{email_id}/retry", data={"csrf_token": _csrf(client)}
    )
    assert resp.status == 200 and resp.url.query.get("done") == "queued"
    item = await get_inbound(parts.db, email_id)
    assert item is not None and item.status.value == "accepted"
    entries = await parts.db.fetch(
        "SELECT actor FROM audit_entries WHERE action = 'email.requeued' AND pair_id = ?",
        record.pair_id,
    )
    assert len(entries) == 1
    resp = await client.post(
        f"/dashboard/email/{email_id}/retry", data={"csrf_token": _csrf(client)}
    )
    assert resp.status == 409  # not failed any more
