"""`confidant sla report`: response times per therapist from the SLA clocks.

The report reads only the database (no homeserver needed): clocks closed by a reply
in the period, and clocks opened in the period that are still open and past due at its
end. Times without a zone are the practice's local time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.cli.base import LATE_CONFIG, load_config_or_exit, now, setup_logging_for, with_config

#: The period when `--from` is not given: this many days before `--to`.
DEFAULT_DAYS = 30


def _moment(text: str, tz: ZoneInfo) -> datetime:
    """An ISO date or date-time; without an offset it is local to the practice."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _period(args: argparse.Namespace, tz: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
    end = _moment(args.end, tz) if args.end else at
    start = _moment(args.start, tz) if args.start else end - timedelta(days=DEFAULT_DAYS)
    return start, end


async def _report(cfg: Any, start: datetime, end: datetime, fmt: str, at: datetime, by: str) -> str:
    from bridge.core.sla_report import GroupBy, render_csv, render_table
    from bridge.features.sla import sla_report
    from bridge.store import open_database

    group: GroupBy = "policy" if by == "policy" else "therapist"
    db = await open_database(cfg.database_url)
    try:
        rows = await sla_report(db, cfg, start, end, at, by=group)
    finally:
        await db.close()
    if fmt == "csv":
        return render_csv(rows, key="policy" if group == "policy" else "therapist_id")
    if not rows:
        return "No replies and nothing overdue in this period.\n"
    return render_table(rows, heading=group) + (
        "\nTimes count in each policy's own clock (working time or calendar time).\n"
    )


def cmd_sla_report(args: argparse.Namespace) -> int:
    """Print the report for the period, as a table or CSV."""
    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    tz = cfg.practice.tzinfo
    try:
        start, end = _period(args, tz, now())
    except ValueError:
        print("--from and --to take an ISO date or time, e.g. 2026-11-01", file=sys.stderr)
        return 2
    if start >= end:
        print("--from must be before --to", file=sys.stderr)
        return 2
    sys.stdout.write(asyncio.run(_report(cfg, start, end, args.format, now(), args.by)))
    return 0


def register(sub: Any) -> None:
    """Add `confidant sla report`."""
    sla = with_config(sub.add_parser("sla", help="response-time (SLA) reports"))
    ssub = sla.add_subparsers(dest="sla_cmd", required=True)
    p = ssub.add_parser(
        "report",
        help="per therapist or policy: replies, median and p90, share met, breaches, lateness",
        parents=[LATE_CONFIG],
    )
    p.add_argument(
        "--from",
        dest="start",
        help=f"ISO date or time, inclusive (default: {DEFAULT_DAYS} days before --to)",
    )
    p.add_argument("--to", dest="end", help="ISO date or time, exclusive (default: now)")
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.add_argument(
        "--by", choices=("therapist", "policy"), default="therapist", help="one row per what"
    )
    sla.set_defaults(func=cmd_sla_report)
