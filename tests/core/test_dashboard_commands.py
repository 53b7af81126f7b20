"""!dashboard in a desk room, and the dashboard's audit entries (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.core import dashboard_commands as dc
from bridge.core.command_set import build_commands
from bridge.core.commands import DESK_ROOM, PAIR_ROOM, CommandContext
from bridge.core.model import AppendAudit, Invoke, Role, SendMessage

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _ctx(role: Role = Role.THERAPIST, room_kind: str = DESK_ROOM) -> CommandContext:
    return CommandContext(
        room_kind=room_kind,
        room_id="!desk:hs",
        sender="@doc:hs",
        role=role,
        event_id="$cmd",
        now=NOW,
        registry=build_commands(),
    )


def test_dashboard_asks_for_a_link_for_the_sender_in_their_desk() -> None:
    registry = build_commands()
    audit, invoke = registry.dispatch(_ctx(), "!dashboard")
    assert isinstance(audit, AppendAudit) and audit.details["command"] == "dashboard"
    assert invoke == Invoke(
        dc.LINK_OPERATION, "!desk:hs", {"therapist": "@doc:hs", "event_id": "$cmd"}
    )
    # It is a desk-room command of therapists: listed there, not in pair rooms.
    assert "dashboard" in {c.name for c in registry.available(DESK_ROOM, Role.THERAPIST)}
    assert "dashboard" not in {c.name for c in registry.available(PAIR_ROOM, Role.PATIENT)}
    assert "dashboard" not in {c.name for c in registry.available(PAIR_ROOM, Role.THERAPIST)}


def test_link_message_carries_the_link_once_per_command() -> None:
    expires = NOW + timedelta(minutes=5)
    msg = dc.link_message("!desk:hs", "$cmd", "https://dash.example/dashboard/link/T", expires, 5)
    assert isinstance(msg, SendMessage)
    assert msg.template == dc.LINK_TEMPLATE and msg.txn_id == "dashboard-link.$cmd"
    assert msg.context["url"].endswith("/link/T") and msg.context["minutes"] == 5
    off = dc.link_message("!desk:hs", "$cmd", None, expires, 5)
    assert off.template == dc.OFF_TEMPLATE and off.context == {}


def test_audit_entries_name_ids_and_times_only() -> None:
    until = NOW + timedelta(days=3)
    assert dc.absence_set("dashboard:admin", "@doc:hs", until, "@cover:hs") == AppendAudit(
        None,
        "therapist.away",
        "dashboard:admin",
        {"therapist": "@doc:hs", "cover": "@cover:hs", "until": until.isoformat()},
    )
    assert dc.absence_set("@doc:hs", "@doc:hs", None, None).action == "therapist.back"
    assert dc.signed_in("admin", "token").details == {"via": "token"}
    assert dc.link_refused("expired").outcome == "refused"
    assert dc.signed_out_everywhere("@doc:hs", 3).details == {"sessions": 3}
