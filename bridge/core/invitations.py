"""What the audit records of a patient's invitation, from creation to use (no I/O)."""

from __future__ import annotations

from typing import Any

from bridge.core.model import AppendAudit


def invitation_entry(
    action: str, actor: str, details: dict[str, Any], pair_id: str | None = None
) -> AppendAudit:
    """An invitation's entry (`invitation.*`, or an onboarding step such as a refusal)."""
    return AppendAudit(pair_id, action, actor, details)


def invitation_created(
    invitation_id: str, actor: str, therapist: str, expires_at_ms: int
) -> AppendAudit:
    details = {"invitation_id": invitation_id, "therapist": therapist, "expires_at": expires_at_ms}
    return AppendAudit(None, "invitation.created", actor, details)


def invitation_sent(invitation_id: str, actor: str, count: int) -> AppendAudit:
    """The invitation's e-mail went out for the `count`-th time."""
    return AppendAudit(
        None, "invitation.sent", actor, {"invitation_id": invitation_id, "count": count}
    )


def invitation_closed(invitation_id: str, actor: str, status: str) -> AppendAudit:
    """The invitation ended without use (`status`: revoked, expired)."""
    return AppendAudit(None, f"invitation.{status}", actor, {"invitation_id": invitation_id})


def invitation_used(invitation_id: str, actor: str, pair_id: str, patient: str) -> AppendAudit:
    """The invited patient's account appeared and has its pair."""
    details = {"invitation_id": invitation_id, "patient": patient}
    return AppendAudit(pair_id, "invitation.used", actor, details)
