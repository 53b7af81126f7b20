"""`confidant export --pair REF --out FILE`: a pair's transcript as a zip."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.cli.base import load_config_or_exit, now, run_with_parts, setup_logging_for, with_config


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_export(args: argparse.Namespace) -> int:
    from bridge.features.export import export_transcript
    from bridge.provision import PairError

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    start, end = _date(args.start), _date(args.end)

    async def work(parts: Any) -> int:
        try:
            record = await parts.pairs.resolve(args.pair)
        except PairError as err:
            print(str(err), file=sys.stderr)
            return 1
        result = await export_transcript(
            parts, record, Path(args.out), actor="cli", now=now(), start=start, end=end
        )
        print(f"{result.path}: {result.entry_count} entries, sha256 {result.sha256}")
        return 0

    return run_with_parts(cfg, work)


def register(sub: Any) -> None:
    """Add `confidant export`."""
    p = with_config(sub.add_parser("export", help="export a pair's transcript as a zip"))
    p.add_argument("--pair", required=True, help="pair id, label or room id")
    p.add_argument("--from", dest="start", help="ISO date or time (inclusive)")
    p.add_argument("--to", dest="end", help="ISO date or time (exclusive)")
    p.add_argument("--out", required=True, help="the zip file to write")
    p.set_defaults(func=cmd_export)
