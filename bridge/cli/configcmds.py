"""`confidant check-config -c FILE` and `confidant hash-token [TOKEN | --generate]`."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bridge.cli.base import DEFAULT_CONFIG, with_config

#: Shorter admin tokens are refused: the config keeps a fast hash, safe only for long
#: random tokens (`--generate` makes 43 characters).
MIN_TOKEN_LENGTH = 32


async def schema_current(db: Any) -> bool:
    """Whether the database has every migration this version ships (read-only check)."""
    from bridge.store.migrate import discover, schema_version

    try:
        return await schema_version(db) >= max(m.version for m in discover())
    except Exception:  # no schema table yet, or one this version cannot read
        return False


async def therapists_without_supervisor(cfg: Any) -> list[str] | None:
    """Therapists with live pairs on an escalating policy without supervisors of its own
    who have no supervisor either; None without a database (only an existing SQLite file)."""
    from bridge.store import StoreError, open_database, pairs, therapists

    path = cfg.sqlite_path
    if path is None or not path.exists():
        return None
    relying = {n for n, p in cfg.policies.items() if p.escalate_after and not p.supervisors}
    db = await open_database(cfg.database_url, apply_migrations=False)
    try:
        if not await schema_current(db):
            return None  # an older schema: `run` migrates it, and then this reads it
        staff = {t.user_id: t for t in await therapists.list_therapists(db)}
        missing = {
            pair.therapist_id
            for pair in await pairs.list_pairs(db)
            if pair.status == pairs.PairStatus.ACTIVE
            and pair.policy in relying
            and not (staff.get(pair.therapist_id) and staff[pair.therapist_id].supervisor_id)
        }
        return sorted(missing)
    except StoreError:
        return None
    finally:
        await db.close()


async def policies_in_use(cfg: Any) -> Counter[str] | None:
    """Policy names used by live pairs and pending invitations; None without a database.

    Only an existing SQLite file is read (check-config must not create one, nor wait on a
    PostgreSQL server: `confidant doctor` checks that).
    """
    from bridge.store import StoreError, invitations, open_database, pairs

    path = cfg.sqlite_path
    if path is None or not path.exists():
        return None
    db = await open_database(cfg.database_url, apply_migrations=False)
    try:
        if not await schema_current(db):
            return None  # an older schema: `run` migrates it, and then this reads it
        used: Counter[str] = Counter()
        for pair in await pairs.list_pairs(db):
            if pair.status != pairs.PairStatus.REMOVED:
                used[pair.policy] += 1
        pending = invitations.InvitationStatus.PENDING
        for invitation in await invitations.list_invitations(db, status=pending):
            used[invitation.policy] += 1
        return used
    except StoreError:
        return None  # not migrated yet: `run` will migrate it
    finally:
        await db.close()


def override_problems(cfg: Any) -> list[str]:
    """The practice's template overrides that would fail in some language."""
    from bridge.adapters.render import Renderer
    from bridge.adapters.template_check import template_problems

    if cfg.templates_dir is None:
        return []
    return template_problems(Renderer(overrides=cfg.templates_dir, language=cfg.practice.language))


def checked_path(args: argparse.Namespace) -> str | None:
    """The file check-config reads: `-c FILE`, or the deprecated positional FILE that older
    scripts give, else $CONFIDANT_CONFIG or config.yaml; None, the error said, when a FILE and
    `-c` name different files."""
    if args.file is not None and args.config is not None and args.file != args.config:
        print(
            f"check-config: two configurations given ({args.file} and -c {args.config}); "
            "give one, with -c FILE",
            file=sys.stderr,
        )
        return None
    path: str = args.config or args.file or DEFAULT_CONFIG
    return path


def cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.config import ConfigError, load_config
    from bridge.config.usage import escalation_warnings, policy_warnings

    path = checked_path(args)
    if path is None:
        return 2
    try:
        cfg = load_config(Path(path))
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2
    except FileNotFoundError:
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    broken = override_problems(cfg)
    for line in broken:
        print(f"{path}: templates_dir: {line}", file=sys.stderr)
    if broken:
        return 1
    warnings = policy_warnings(cfg, asyncio.run(policies_in_use(cfg)))
    warnings += escalation_warnings(cfg, asyncio.run(therapists_without_supervisor(cfg)))
    for problem in warnings:
        print(f"warning: {problem.line(path)}", file=sys.stderr)
    db = "PostgreSQL" if cfg.sqlite_path is None else f"SQLite at {cfg.sqlite_path}"
    off = [
        name
        for name, on in (
            ("smtp", cfg.smtp.enabled),
            ("outbound_email", cfg.outbound_email.enabled),
            ("http", cfg.http.enabled),
            ("jitsi", cfg.jitsi.domain is not None),
            ("synapse_admin", cfg.synapse_admin.access_token is not None),
        )
        if not on
    ]
    extra = f", off and not checked: {', '.join(off)}" if off else ""
    more = f", {len(warnings)} warning(s)" if warnings else ""
    print(f"{path}: OK (bot {cfg.bot.user_id}, {db}, {len(cfg.policies)} policies{extra}{more})")
    return 0


def new_admin_token() -> str:
    """A fresh admin token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def cmd_hash_token(args: argparse.Namespace) -> int:
    from bridge.config import hash_token

    if args.generate:
        if args.token:
            print("give either a token or --generate, not both", file=sys.stderr)
            return 2
        token = new_admin_token()
        # The token itself is shown once, here; the config only ever holds the hash.
        print(f"token (give it to the admin, it is not stored): {token}", file=sys.stderr)
        print(hash_token(token))
        return 0
    token = args.token or sys.stdin.readline().strip()
    if not token:
        print("give a token as argument or on standard input, or use --generate", file=sys.stderr)
        return 2
    if len(token) < MIN_TOKEN_LENGTH:
        print(
            f"the token has {len(token)} characters; an admin token needs at least "
            f"{MIN_TOKEN_LENGTH} random ones: use `confidant hash-token --generate`",
            file=sys.stderr,
        )
        return 2
    print(hash_token(token))
    return 0


def register(sub: Any) -> None:
    """Add `confidant check-config` and `confidant hash-token`."""
    p = with_config(sub.add_parser("check-config", help="validate a configuration file"))
    p.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="deprecated: use -c FILE (a FILE given here is still read)",
    )
    # No -c default here: a FILE and a -c naming another file are refused, not guessed between.
    p.set_defaults(func=cmd_check_config, config=None)

    p = sub.add_parser("hash-token", help="hash an admin API token for http.admin_tokens")
    p.add_argument("token", nargs="?")
    p.add_argument(
        "--generate",
        action="store_true",
        help="make a new random token: the token goes to stderr, its hash to stdout",
    )
    p.set_defaults(func=cmd_hash_token)
