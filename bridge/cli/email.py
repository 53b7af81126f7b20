"""`confidant email status` and `confidant email retry`: the inbound e-mail queue.

Both read and write only the database (no homeserver needed). Output carries ids,
pair labels, times and reason codes, never senders, subjects or content.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from bridge.cli.base import LATE_CONFIG, load_config_or_exit, now, setup_logging_for, with_config


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


async def _status(cfg: Any, at: datetime) -> dict[str, Any]:
    from bridge.email import inbox
    from bridge.store import open_database, pairs

    db = await open_database(cfg.database_url)
    try:
        counts = await inbox.status_counts(db)
        posts_waiting = await inbox.relayed_posts_waiting(db)
        waiting = await inbox.pending(db, limit=1)
        failed = []
        for item in await inbox.failed(db):
            record = await pairs.get(db, item.pair_id)
            failed.append(
                {
                    "id": item.id,
                    "pair": record.label if record is not None else item.pair_id,
                    "received_at": _iso(item.received_at),
                    "reason": item.last_error,
                }
            )
    finally:
        await db.close()
    oldest = None
    if waiting:
        oldest = max(0, round(at.timestamp() - waiting[0].received_at / 1000))
    return {
        "counts": {status.value: n for status, n in counts.items()},
        # Relayed, but the post has not reached the homeserver yet (e.g. during an outage).
        "posts_waiting": posts_waiting,
        "oldest_pending_seconds": oldest,
        "failed": failed,
    }


def cmd_email_status(args: argparse.Namespace) -> int:
    """Print how many e-mails wait, were relayed or failed, and why the failed ones did."""
    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    data = asyncio.run(_status(cfg, now()))
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    counts = data["counts"]
    posted = counts["relayed"] - data["posts_waiting"]
    waiting = counts["accepted"] + data["posts_waiting"]
    print(f"waiting: {waiting}  relayed: {posted}  failed: {counts['failed']}")
    if data["posts_waiting"]:
        print(f"of which converted, post waiting for the homeserver: {data['posts_waiting']}")
    if data["oldest_pending_seconds"] is not None:
        print(f"oldest waiting: {data['oldest_pending_seconds']} s")
    for item in data["failed"]:
        print(f"failed {item['id']}  pair {item['pair']}  {item['received_at']}  {item['reason']}")
    return 0


async def _retry(cfg: Any, email_id: str, at: datetime) -> bool:
    from bridge.audit.log import AuditLog
    from bridge.features.email.retry import retry_email
    from bridge.parts import make_sealer
    from bridge.store import open_database

    db = await open_database(cfg.database_url)
    try:
        audit = AuditLog(db, make_sealer(cfg), cfg.audit.signing_key.get_secret_value())
        return await retry_email(db, audit, email_id, at)
    finally:
        await db.close()


def cmd_email_retry(args: argparse.Namespace) -> int:
    """Queue a failed e-mail again; the running bridge relays it within a minute."""
    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    if not asyncio.run(_retry(cfg, args.email_id, now())):
        print(f"no failed e-mail with id {args.email_id}", file=sys.stderr)
        return 1
    print(f"queued {args.email_id} again")
    return 0


def register(sub: Any) -> None:
    """Add `confidant email status` and `confidant email retry ID`."""
    email = with_config(sub.add_parser("email", help="the inbound e-mail queue"))
    esub = email.add_subparsers(dest="email_cmd", required=True)
    status = esub.add_parser(
        "status",
        help="e-mails waiting, relayed and failed (ids and reasons)",
        parents=[LATE_CONFIG],
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_email_status)
    retry = esub.add_parser(
        "retry", help="queue a failed e-mail again (e.g. once its pair is active)",
        parents=[LATE_CONFIG],
    )  # fmt: skip
    retry.add_argument("email_id", help="the id shown by `confidant email status`")
    retry.set_defaults(func=cmd_email_retry)
