"""`confidant run`: the bridge until SIGINT/SIGTERM (or waiting as the standby)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from bridge.cli.base import load_config_or_exit, setup_logging_for, with_config

log = logging.getLogger(__name__)

#: The checks wait no longer than this for the homeserver, the relay and Jitsi.
START_CHECKS_TIMEOUT_S = 30


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.adapters.listen import ListenError
    from bridge.app import App, warm_standby

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    from bridge.standby import run_when_active

    check_at_start(cfg)

    # With PostgreSQL, only the instance holding the advisory lock runs; others wait.
    try:
        asyncio.run(run_when_active(App(cfg), warm_standby(cfg)))
    except ListenError as err:
        # A configuration problem like any other: one line naming the key, exit 2.
        print(str(err), file=sys.stderr)
        return 2
    return 0


def check_at_start(cfg: Any) -> None:
    """Log doctor's start-up checks, one line each, as `confidant doctor` prints them.

    They never stop the bridge: it starts while the homeserver is down and catches up, and
    a set-up problem is better named once here than met later as a symptom.
    """
    from bridge.cli.doctor import ERROR, OK, Doctor, Finding

    def report(finding: Finding) -> None:
        level = {OK: logging.INFO, ERROR: logging.ERROR}.get(finding.severity, logging.WARNING)
        log.log(level, "doctor: %s", finding.line())

    try:
        asyncio.run(asyncio.wait_for(Doctor(cfg, report).at_start(), START_CHECKS_TIMEOUT_S))
    except TimeoutError:
        log.warning("doctor: start-up checks cut short after %d s", START_CHECKS_TIMEOUT_S)


def register(sub: Any) -> None:
    """Add `confidant run`."""
    p = with_config(sub.add_parser("run", help="run the bridge until SIGINT/SIGTERM"))
    p.set_defaults(func=cmd_run)
