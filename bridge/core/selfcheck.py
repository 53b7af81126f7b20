"""What the audit records of the self-check of the bot's posts (policy only, no I/O).

The witness device reads every post the bot makes; one it cannot read is posted once more
under its own txn id after a fresh room key (`post_unreadable`), and the repost that is
then read closes the case (`post_repaired`).
"""

from __future__ import annotations

from typing import Any

from bridge.core.model import AppendAudit

#: Who the self-check's entries are from.
ACTOR = "confidant:selfcheck"


def post_unreadable(
    pair_id: str | None,
    room_id: str,
    txn_id: str,
    *,
    repost_txn_id: str | None,
    event_id: str,
) -> AppendAudit:
    """A post the witness could not read, reposted under `repost_txn_id` (None: the post
    could not be repeated, e.g. its content is gone)."""
    details: dict[str, Any] = {"room_id": room_id, "txn_id": txn_id}
    if repost_txn_id is not None:
        details["repost_txn_id"] = repost_txn_id
    return AppendAudit(
        pair_id,
        "post.unreadable",
        ACTOR,
        details,
        event_id=event_id,
        outcome="reposted" if repost_txn_id else "not_repaired",
    )


def post_repaired(
    pair_id: str | None, original_event_id: str, txn_id: str, event_id: str
) -> AppendAudit:
    """The repost `txn_id` (event `event_id`) of an unreadable post was read."""
    return AppendAudit(
        pair_id,
        "post.repaired",
        ACTOR,
        {"original_event_id": original_event_id, "txn_id": txn_id},
        event_id=event_id,
    )
