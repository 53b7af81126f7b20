"""`confidant run`: the bridge until SIGINT/SIGTERM (or waiting as the standby)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bridge.cli.base import load_config_or_exit, setup_logging_for, with_config


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.adapters.listen import ListenError
    from bridge.app import App, warm_standby

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    from bridge.standby import run_when_active

    # With PostgreSQL, only the instance holding the advisory lock runs; others wait.
    try:
        asyncio.run(run_when_active(App(cfg), warm_standby(cfg)))
    except ListenError as err:
        # A configuration problem like any other: one line naming the key, exit 2.
        print(str(err), file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    """Add `confidant run`."""
    p = with_config(sub.add_parser("run", help="run the bridge until SIGINT/SIGTERM"))
    p.set_defaults(func=cmd_run)
