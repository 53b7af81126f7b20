"""Metrics rendering: the Prometheus text of a snapshot, and labels that cannot carry PHI."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import AuditTally, Snapshot, _merge, render, safe_label


def _families(snap: Snapshot) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = render(snap).decode()
    return {
        family.name: [
            (dict(s.labels), s.value)
            for s in family.samples
            if s.name.endswith(("_total", "")) and not s.name.endswith("_created")
        ]
        for family in text_string_to_metric_families(text)
    }


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("text", "text"),
        ("VOICE", "voice"),
        ("dkim_fail", "dkim_fail"),
        ("5.7.1", "5.7.1"),
        ("@alice:example.org", "other"),
        ("!room:example.org", "other"),
        ("alice@example.org", "other"),
        ("My session notes", "other"),
        ("", "other"),
        ("x" * 41, "other"),
    ],
)
def test_safe_label_keeps_only_short_tokens(raw, label):
    assert safe_label(raw) == label


def test_merge_folds_unsafe_values_into_other():
    assert _merge({}, {"text": 2, "@a:x": 1, "b@c.org": 4}) == {"text": 2, "other": 5}


def test_render_shows_every_count():
    snap = Snapshot(
        messages_by_kind={"text": 5, "voice": 2},
        decryption_failures=3,
        outbox={"pending": 4, "sent": 10},
        emails_by_status={"relayed": 7},
        emails_rejected={"dkim_fail": 2},
        reminders={"ok": 6, "no_recipient": 1},
        escalations=1,
        breaches=2,
        open_clocks=3,
        overdue_clocks=1,
        pairs={"active": 9},
        sync_lag_seconds=0.25,
        sync_errors=1,
        last_sync_ok_at=1_700_000_000.0,
    )
    fams = _families(snap)
    assert {k["kind"]: v for k, v in fams["confidant_messages"]} == {"text": 5.0, "voice": 2.0}
    assert fams["confidant_outbox_depth"] == [({}, 4.0)]
    assert fams["confidant_decryption_failures"] == [({}, 3.0)]
    assert fams["confidant_emails_accepted"] == [({"status": "relayed"}, 7.0)]
    assert fams["confidant_emails_rejected"] == [({"reason": "dkim_fail"}, 2.0)]
    assert {k["outcome"]: v for k, v in fams["confidant_sla_reminders"]} == {
        "ok": 6.0,
        "no_recipient": 1.0,
    }
    assert fams["confidant_sla_breaches"] == [({}, 2.0)]
    assert fams["confidant_sla_overdue_clocks"] == [({}, 1.0)]
    assert fams["confidant_sync_lag_seconds"] == [({}, 0.25)]


def test_render_without_a_sync_leaves_lag_out():
    fams = _families(Snapshot())
    assert "confidant_sync_lag_seconds" not in fams
    assert fams["confidant_outbox_depth"] == [({}, 0.0)]


def test_audit_tally_counts_by_fixed_codes():
    tally = AuditTally()
    tally.add("sla.reminded", "ok", "{}")
    tally.add("sla.reminded", "no_recipient", "{}")
    tally.add("sla.reminded", "ok", "{}")
    tally.add("sla.escalated", "ok", "{}")
    tally.add("sla.breached", None, "{}")
    tally.add("email.rejected", "refused", '{"reason": "dkim_fail", "digest": "ab"}')
    tally.add("email.rejected", "refused", '{"reason": "malformed:Bad Header From bob@x"}')
    tally.add("email.rejected", "refused", '{"reason": "alice@example.org"}')
    tally.add("email.rejected", "refused", "not json")
    assert tally.reminders == {"ok": 2, "no_recipient": 1}
    assert (tally.escalations, tally.breaches) == (1, 1)
    assert tally.email_rejections == {"dkim_fail": 1, "malformed": 1, "other": 2}


def test_bounces_are_counted_by_status_code_and_never_by_address():
    tally = AuditTally()
    tally.add("email.bounced", "failed", '{"kind": "reply", "status": "5.1.1"}')
    tally.add("email.bounced", "failed", '{"kind": "reply", "status": "5.1.1"}')
    tally.add("email.bounced", "failed", '{"status": "pat@example.org"}')
    tally.add("email.bounced", "failed", "not json")
    tally.add("email.delayed", "deferred", '{"status": "4.4.1"}')
    assert tally.email_bounces == {"5.1.1": 2, "other": 2}
    assert tally.email_delays == 1
    fams = _families(Snapshot(emails_bounced=tally.email_bounces, emails_delayed=1))
    assert {k["status"]: v for k, v in fams["confidant_emails_bounced"]} == {
        "5.1.1": 2.0,
        "other": 2.0,
    }
    assert fams["confidant_emails_delayed"] == [({}, 1.0)]
