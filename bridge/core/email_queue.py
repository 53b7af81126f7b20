"""What the audit records when an administrator queues a failed e-mail again (no I/O)."""

from __future__ import annotations

from bridge.core.model import AppendAudit


def email_requeued(pair_id: str | None, email_id: str, previous_error: str | None) -> AppendAudit:
    return AppendAudit(
        pair_id=pair_id,
        action="email.requeued",
        actor="admin",
        details={"email_id": email_id, "previous_error": previous_error},
    )
