"""Prometheus metrics of the running bridge, gathered at scrape time.

`gather(app)` reads counters and the database into a `Snapshot`; `render(snapshot)`
turns it into the Prometheus text format through a private prometheus-client registry
(no module-level state). Labels carry only values from small fixed sets (event kinds,
statuses, outcomes, reasons): every label value passes `safe_label`, so no user id,
address, subject or content can ever become a label.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.core.sla import ESCALATION_WAITING
from bridge.store import audit as audit_store
from bridge.store import clocks, inbox, outbox, pairs
from bridge.store.base import Executor, to_ms

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.ports import SelfCheckFigures

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LABEL = re.compile(r"[a-z0-9][a-z0-9_.]{0,39}")


def safe_label(value: object) -> str:
    """`value` if it is a short lowercase token (a kind, status, reason code), else "other"."""
    text = str(value).lower()
    return text if _LABEL.fullmatch(text) else "other"


@dataclass
class Snapshot:
    """Everything one scrape shows; counts only."""

    messages_by_kind: dict[str, int] = field(default_factory=dict)
    decryption_failures: int = 0
    outsiders_removed: int = 0
    invites_refused: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    emails_by_status: dict[str, int] = field(default_factory=dict)
    emails_rejected: dict[str, int] = field(default_factory=dict)
    #: Mail to patients that bounced, by the report's status code; and late ones.
    emails_bounced: dict[str, int] = field(default_factory=dict)
    emails_delayed: int = 0
    reminders: dict[str, int] = field(default_factory=dict)
    escalations: int = 0
    breaches: int = 0
    open_clocks: int = 0
    overdue_clocks: int = 0
    escalations_waiting: int = 0
    pairs: dict[str, int] = field(default_factory=dict)
    sync_lag_seconds: float | None = None
    sync_errors: int = 0
    last_sync_ok_at: float | None = None
    undecryptable_waiting: int = 0
    key_share_failures: int = 0
    #: The self-check of the bot's posts; None when it is off.
    witness: SelfCheckFigures | None = None


def _merge(into: dict[str, int], values: Mapping[Any, int]) -> dict[str, int]:
    """Add `values` under their safe labels (two raw values may fold into "other")."""
    for key, count in values.items():
        label = safe_label(key)
        into[label] = into.get(label, 0) + int(count)
    return into


def _counted(counts: Mapping[Any, int]) -> dict[str, int]:
    """The statuses that have rows, under their safe labels (empty ones are left out)."""
    return _merge({}, {status: count for status, count in counts.items() if count})


class AuditTally:
    """Counts of audit entries by action, kept up to date incrementally.

    The audit log has no index on its action, and only grows (retention removes content,
    never entries), so each scrape reads only the entries appended since the last one
    (a range on the primary key) instead of scanning the whole log.
    """

    ACTIONS = (
        "sla.reminded",
        "sla.escalated",
        "sla.breached",
        "email.rejected",
        "email.bounced",
        "email.delayed",
    )

    def __init__(self) -> None:
        self.last_seq = -1
        self.reminders: dict[str, int] = {}
        self.escalations = 0
        self.breaches = 0
        self.email_rejections: dict[str, int] = {}
        self.email_bounces: dict[str, int] = {}
        self.email_delays = 0

    async def update(self, db: Executor) -> None:
        top = await audit_store.max_seq(db)
        if top is None or top <= self.last_seq:
            return
        for record in await audit_store.actions_in_range(db, self.last_seq, top, self.ACTIONS):
            self.add(record.action, record.outcome, record.details)
        self.last_seq = top

    def add(self, action: str, outcome: str | None, details: str | None) -> None:
        if action == "sla.reminded":
            key = safe_label(outcome or "ok")
            self.reminders[key] = self.reminders.get(key, 0) + 1
        elif action == "sla.escalated":
            self.escalations += 1
        elif action == "sla.breached":
            self.breaches += 1
        elif action == "email.rejected":
            reason = _detail(details, "reason")
            # "malformed:<detail>" counts as "malformed": the label stays a fixed code.
            key = safe_label(reason.partition(":")[0])
            self.email_rejections[key] = self.email_rejections.get(key, 0) + 1
        elif action == "email.bounced":
            # The report's RFC 3463 code ("5.1.1"): a fixed form that names no one.
            key = safe_label(_detail(details, "status"))
            self.email_bounces[key] = self.email_bounces.get(key, 0) + 1
        elif action == "email.delayed":
            self.email_delays += 1


def _detail(details: str | None, name: str) -> str:
    try:
        return str(json.loads(details or "{}").get(name, "other"))
    except (ValueError, AttributeError):
        return "other"


async def gather(app: Host, now: datetime, tally: AuditTally | None = None) -> Snapshot:
    """Read the App's counters and the database into a Snapshot.

    Pass the same `tally` to every call so audit counts are read incrementally.
    """
    tally = tally if tally is not None else AuditTally()
    snap = Snapshot()
    if app.service is not None:
        counters = app.service.counters
        _merge(snap.messages_by_kind, counters.events)
        snap.decryption_failures = counters.decryption_failures
        snap.outsiders_removed = counters.outsiders_removed
        snap.invites_refused = counters.invites_refused
    if app.bot is not None:
        stats = app.bot.stats
        snap.sync_lag_seconds = stats.lag_seconds if stats.synced_batches else None
        snap.sync_errors = stats.errors
        snap.last_sync_ok_at = stats.last_sync_ok_at or None
        snap.decryption_failures = max(snap.decryption_failures, stats.decryption_failures)
        snap.undecryptable_waiting = stats.pending_undecryptable
        snap.key_share_failures = stats.key_share_failures
    if app.selfcheck is not None:
        snap.witness = await app.selfcheck.figures()
    db = app.parts.db
    snap.outbox = _counted(await outbox.status_counts(db))
    snap.pairs = _counted(await pairs.status_counts(db))
    snap.emails_by_status = _counted(await inbox.status_counts(db))
    await tally.update(db)
    snap.reminders = dict(tally.reminders)
    snap.escalations = tally.escalations
    snap.breaches = tally.breaches
    _merge(snap.emails_rejected, tally.email_rejections)
    _merge(snap.emails_bounced, tally.email_bounces)
    snap.emails_delayed = tally.email_delays
    open_now = await clocks.list_open(db)
    snap.open_clocks = len(open_now)
    snap.overdue_clocks = sum(1 for c in open_now if to_ms(c.due_at) < to_ms(now))
    snap.escalations_waiting = sum(1 for c in open_now if ESCALATION_WAITING in c.steps_done)
    return snap


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        messages = CounterMetricFamily(
            "confidant_messages", "Events seen in pair rooms, by kind.", labels=["kind"]
        )
        for kind, count in sorted(s.messages_by_kind.items()):
            messages.add_metric([kind], count)
        yield messages
        yield CounterMetricFamily(
            "confidant_decryption_failures",
            "Events the bot could not decrypt.",
            value=s.decryption_failures,
        )
        yield CounterMetricFamily(
            "confidant_outsiders_removed",
            "Users removed from pair rooms they do not belong to.",
            value=s.outsiders_removed,
        )
        yield CounterMetricFamily(
            "confidant_invites_refused",
            "Invites to rooms the bot did not create.",
            value=s.invites_refused,
        )
        yield _gauge("confidant_outbox", "Outbox rows by status.", "status", s.outbox)
        yield _gauge(
            "confidant_outbox_depth",
            "Outbox rows waiting to be sent.",
            None,
            {"": s.outbox.get("pending", 0)},
        )
        emails = CounterMetricFamily(
            "confidant_emails_accepted", "Inbound e-mails accepted, by status.", labels=["status"]
        )
        for status, count in sorted(s.emails_by_status.items()):
            emails.add_metric([status], count)
        yield emails
        rejected = CounterMetricFamily(
            "confidant_emails_rejected", "Inbound e-mails refused, by reason.", labels=["reason"]
        )
        for reason, count in sorted(s.emails_rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        bounced = CounterMetricFamily(
            "confidant_emails_bounced",
            "Mail to patients reported undelivered (RFC 3464), by status code.",
            labels=["status"],
        )
        for status, count in sorted(s.emails_bounced.items()):
            bounced.add_metric([status], count)
        yield bounced
        yield CounterMetricFamily(
            "confidant_emails_delayed",
            "Delivery reports saying mail to a patient is late (still being tried).",
            value=s.emails_delayed,
        )
        reminders = CounterMetricFamily(
            "confidant_sla_reminders", "SLA reminders, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(s.reminders.items()):
            reminders.add_metric([outcome], count)
        yield reminders
        yield CounterMetricFamily(
            "confidant_sla_escalations", "SLA escalations to a supervisor.", value=s.escalations
        )
        yield CounterMetricFamily(
            "confidant_sla_breaches", "SLA clocks that went past due.", value=s.breaches
        )
        yield GaugeMetricFamily(
            "confidant_sla_open_clocks", "Open SLA clocks.", value=s.open_clocks
        )
        yield GaugeMetricFamily(
            "confidant_sla_overdue_clocks", "Open SLA clocks past due.", value=s.overdue_clocks
        )
        yield GaugeMetricFamily(
            "confidant_sla_escalations_waiting",
            "SLA escalations due that reached no supervisor yet (retried).",
            value=s.escalations_waiting,
        )
        yield _gauge("confidant_pairs", "Pairs by status.", "status", s.pairs)
        if s.sync_lag_seconds is not None:
            yield GaugeMetricFamily(
                "confidant_sync_lag_seconds",
                "How late the last sync came back, beyond its long-poll timeout.",
                value=s.sync_lag_seconds,
            )
        if s.last_sync_ok_at is not None:
            yield GaugeMetricFamily(
                "confidant_last_sync_ok_timestamp_seconds",
                "When the last sync succeeded (Unix time).",
                value=s.last_sync_ok_at,
            )
        yield CounterMetricFamily(
            "confidant_sync_errors", "Failed sync requests.", value=s.sync_errors
        )
        yield GaugeMetricFamily(
            "confidant_undecryptable_waiting",
            "Events held (durably) while they wait for their room key.",
            value=s.undecryptable_waiting,
        )
        yield CounterMetricFamily(
            "confidant_key_share_failures",
            "Posts held back because a member device had not received the room key.",
            value=s.key_share_failures,
        )
        if s.witness is not None:
            yield from _witness_metrics(s.witness)
        yield GaugeMetricFamily(
            "confidant_scrape_timestamp_seconds", "When this scrape was taken.", value=time.time()
        )


def _witness_metrics(w: SelfCheckFigures) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "confidant_witness_up", "Whether the witness device is syncing.", value=int(w.up)
    )
    checks = CounterMetricFamily(
        "confidant_witness_checks",
        "Bot posts the witness device checked, by outcome.",
        labels=["outcome"],
    )
    for outcome, count in sorted(w.checks.items()):
        checks.add_metric([safe_label(outcome)], count)
    yield checks
    yield GaugeMetricFamily(
        "confidant_witness_checks_waiting",
        "Bot posts not read by the witness yet.",
        value=w.waiting,
    )
    yield CounterMetricFamily(
        "confidant_witness_reposts", "Unreadable bot posts sent again.", value=w.reposts
    )
    yield GaugeMetricFamily(
        "confidant_witness_repairs_pending",
        "Reposts the witness has not read yet.",
        value=w.repairs_pending,
    )


def _gauge(name: str, doc: str, label: str | None, values: Mapping[str, int]) -> Metric:
    if label is None:
        return GaugeMetricFamily(name, doc, value=sum(values.values()))
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family


def render(snap: Snapshot) -> bytes:
    """The Prometheus text exposition of `snap`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
