"""`confidant session add|list|cancel --pair ...`: scheduled live sessions from the command line.

Only the database is touched: the session and its timers are written here, and the
running bridge arms the timers of new sessions within seconds (it polls for them), or at
its next start. Times are in the practice's time zone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


async def _resolve(db: Any, ref: str) -> Any:
    from bridge.store import pairs

    for getter in (pairs.get, pairs.get_by_label, pairs.get_by_room):
        record = await getter(db, ref)
        if record is not None:
            return record
    return None


def cmd_session(args: argparse.Namespace) -> int:
    from bridge.adapters.render import Renderer
    from bridge.audit.log import AuditLog
    from bridge.cli.base import load_config_or_exit, now, setup_logging_for
    from bridge.core import sessions as core
    from bridge.features.sessions import (
        SessionDesk,
        SessionRefused,
        cancel_session,
        schedule_session,
        view,
    )
    from bridge.parts import make_sealer
    from bridge.store import open_database, sessions
    from bridge.store.base import to_ms

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    tz = cfg.practice.tzinfo
    kinds = {"video": "video call", "text": "live chat"}

    def line(record: Any) -> str:
        shown = core.describe(view(record), tz)
        return (
            f"{shown['session_id']}  {shown['starts']}-{shown['ends']} {shown['timezone']}"
            f"  {kinds[record.kind]}"
        )

    async def work() -> int:
        db = await open_database(cfg.database_url)
        try:
            sealer = make_sealer(cfg)
            desk = SessionDesk(
                db=db,
                audit=AuditLog(
                    db,
                    sealer,
                    cfg.audit.signing_key.get_secret_value(),
                    checkpoint_every=cfg.audit.checkpoint_every,
                ),
                renderer=Renderer(overrides=cfg.templates_dir),
                sealer=sealer,
                tz=tz,
                video_on=cfg.jitsi.domain is not None,
            )
            pair = await _resolve(db, args.pair)
            if pair is None:
                print(f"no pair {args.pair!r} (give a pair id, label or room id)", file=sys.stderr)
                return 1
            moment = now()
            if args.session_cmd == "list":
                upcoming = await sessions.list_for_pair(
                    db, pair.pair_id, ending_after=to_ms(moment)
                )
                if upcoming:
                    print("session   when                             kind")
                for record in upcoming:
                    print(line(record))
                return 0
            try:
                if args.session_cmd == "cancel":
                    cancelled = await cancel_session(
                        desk, pair, args.session_id, moment, actor=args.actor
                    )
                    print(f"cancelled {cancelled.session_id}; the pair room is told")
                    return 0
                words = [args.date, args.time, *([args.length] if args.length else [])]
                words += [args.kind] if args.kind else []
                record = await schedule_session(desk, pair, words, moment, actor=args.actor)
            except SessionRefused as refused:
                print(str(refused), file=sys.stderr)
                return 1 if args.session_cmd == "cancel" else 2
            print(line(record))
            return 0
        finally:
            await db.close()

    return asyncio.run(work())


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
