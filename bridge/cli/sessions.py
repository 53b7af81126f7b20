"""`confidant session add|list|cancel --pair ...`: scheduled live sessions from the command line.

Only the database is touched: the session and its timers are written here, and the
running bridge arms the timers of new sessions within seconds (it polls for them), or at
its next start. Times are in the practice's time zone.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from typing import Any


async def _with_store(cfg: Any, work: Any) -> int:
    """Run `work(db, audit)` with the database and audit log, nothing else."""
    from bridge.audit.log import AuditLog
    from bridge.parts import make_sealer
    from bridge.store import open_database

    db = await open_database(cfg.database_url)
    try:
        audit = AuditLog(
            db,
            make_sealer(cfg),
            cfg.audit.signing_key.get_secret_value(),
            checkpoint_every=cfg.audit.checkpoint_every,
        )
        result: int = await work(db, audit)
        return result
    finally:
        await db.close()


async def _resolve(db: Any, ref: str) -> Any:
    from bridge.store import pairs

    for getter in (pairs.get, pairs.get_by_label, pairs.get_by_room):
        record = await getter(db, ref)
        if record is not None:
            return record
    return None


def cmd_session(args: argparse.Namespace) -> int:
    from bridge.adapters.video import new_room_name
    from bridge.cli.base import load_config_or_exit, now, setup_logging_for
    from bridge.core import sessions as core
    from bridge.features.sessions import store_session, view
    from bridge.store import sessions, timers
    from bridge.store.base import to_ms
    from bridge.store.pairs import PairStatus
    from bridge.store.sessions import SessionRecord

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    tz = cfg.practice.tzinfo
    renderer_kind = {"video": "video call", "text": "live chat"}

    async def work(db: Any, audit: Any) -> int:
        pair = await _resolve(db, args.pair)
        if pair is None:
            print(f"no pair {args.pair!r} (give a pair id, label or room id)", file=sys.stderr)
            return 1
        moment = now()
        if args.session_cmd == "list":
            for record in await sessions.list_for_pair(
                db, pair.pair_id, ending_after=to_ms(moment)
            ):
                shown = core.describe(view(record), tz)
                print(
                    f"{shown['session_id']}  {shown['starts']}-{shown['ends']} {shown['timezone']}"
                    f"  {renderer_kind[record.kind]}"
                )
            return 0
        if args.session_cmd == "cancel":
            wanted = args.session_id.upper()
            found = await sessions.get(db, wanted)
            if found is None or found.pair_id != pair.pair_id:
                print(f"no session {wanted} for pair {pair.label}", file=sys.stderr)
                return 1
            async with db.transaction() as tx:
                if not await sessions.cancel(tx, wanted, to_ms(moment)):
                    print(f"session {wanted} is already cancelled", file=sys.stderr)
                    return 1
                for step in core.STEPS:
                    await timers.cancel(tx, core.timer_id(wanted, step))
                await audit.append(
                    tx,
                    {
                        "pair_id": pair.pair_id,
                        "action": "session.cancelled",
                        "actor": args.actor,
                        "details": {"session_id": wanted},
                    },
                    moment,
                )
            print(f"cancelled {wanted}")
            return 0
        if pair.status is not PairStatus.ACTIVE:
            print(f"pair {pair.label} is {pair.status.value}, not active", file=sys.stderr)
            return 1
        words = [args.date, args.time, *([args.length] if args.length else []), args.kind or ""]
        try:
            request = core.parse_request(
                [w for w in words if w], moment, tz, video_on=cfg.jitsi.domain is not None
            )
        except core.SessionInputError as err:
            from bridge.adapters.render import Renderer

            print(Renderer().text(err.template, err.context), file=sys.stderr)
            return 2
        record = SessionRecord(
            session_id=core.session_id_for(secrets.token_hex(16)),
            pair_id=pair.pair_id,
            kind=request.kind,
            starts_at=to_ms(request.starts_at),
            ends_at=to_ms(request.ends_at),
            meeting=new_room_name() if request.kind == "video" else None,
            status="scheduled",
            created_by=args.actor,
            created_at=to_ms(moment),
            cancelled_at=None,
            armed=False,
        )
        async with db.transaction() as tx:
            await store_session(tx, audit, record, moment)
        shown = core.describe(view(record), tz)
        print(
            f"{record.session_id}  {shown['starts']}-{shown['ends']} {shown['timezone']}"
            f"  {renderer_kind[record.kind]}"
        )
        return 0

    return asyncio.run(_with_store(cfg, work))


def register(sub: Any) -> None:
    """Add `confidant session add|list|cancel`."""
    from bridge.cli.base import LATE_CONFIG, with_config

    session = with_config(sub.add_parser("session", help="scheduled live sessions"))
    ssub = session.add_subparsers(dest="session_cmd", required=True)
    p = ssub.add_parser("add", help="schedule a session (practice time)", parents=[LATE_CONFIG])
    p.add_argument("--pair", required=True, help="pair id, label or room id")
    p.add_argument("date", help="YYYY-MM-DD, today or tomorrow")
    p.add_argument("time", help="HH:MM, practice time zone")
    p.add_argument("--length", help="e.g. 50m or 1h30m (default 50m)")
    p.add_argument("--kind", choices=["video", "text"], help="default: video if Jitsi is set")
    p.add_argument("--actor", default="admin", help="who schedules it, for the audit")
    p = ssub.add_parser("list", help="list a pair's upcoming sessions", parents=[LATE_CONFIG])
    p.add_argument("--pair", required=True)
    p = ssub.add_parser("cancel", help="cancel a session", parents=[LATE_CONFIG])
    p.add_argument("--pair", required=True)
    p.add_argument("session_id")
    p.add_argument("--actor", default="admin", help="who cancels it, for the audit")
    session.set_defaults(func=cmd_session)
