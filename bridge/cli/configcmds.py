"""`confidant check-config FILE` and `confidant hash-token [TOKEN]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.config import ConfigError, load_config

    try:
        cfg = load_config(Path(args.file))
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2
    except FileNotFoundError:
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    db = "PostgreSQL" if cfg.sqlite_path is None else f"SQLite at {cfg.sqlite_path}"
    print(f"{args.file}: OK (bot {cfg.bot.user_id}, {db}, {len(cfg.policies)} policies)")
    return 0


def cmd_hash_token(args: argparse.Namespace) -> int:
    from bridge.config import hash_token

    token = args.token or sys.stdin.readline().strip()
    if not token:
        print("give a token as argument or on standard input", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0


def register(sub: Any) -> None:
    """Add `confidant check-config` and `confidant hash-token`."""
    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("hash-token", help="hash an admin API token for http.admin_tokens")
    p.add_argument("token", nargs="?")
    p.set_defaults(func=cmd_hash_token)
