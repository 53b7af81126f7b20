"""`confidant therapist add|list|remove|language`: therapists, their desk rooms and the
language their desk is written in."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bridge.cli.base import (
    LATE_CONFIG,
    load_config_or_exit,
    now,
    print_table,
    run_with_parts,
    setup_logging_for,
    with_config,
)
from bridge.cli.language import add_language_argument, print_or_set_language


async def _warn_about_supervisor(parts: Any, supervisor: str) -> None:
    """Say so when escalations could not reach the supervisor just named (no account, or
    an account on another server while the practice does not federate); the therapist is
    added all the same, and escalations to them wait and are retried until it is fixed."""
    from bridge.provision import has_account

    cfg = parts.cfg
    server = cfg.homeserver.server_name
    if not cfg.practice.federate and supervisor.partition(":")[2] != server:
        print(
            f"warning: {supervisor} is not on {server} and practice.federate is off, so no "
            "desk room can reach them: escalations to them will wait",
            file=sys.stderr,
        )
        return
    token = cfg.synapse_admin.access_token
    admin_token = token.get_secret_value() if token else None
    if await has_account(parts.rest, supervisor, admin_token=admin_token) is False:
        print(
            f"warning: {supervisor} has no account on the homeserver: escalations to them "
            "will wait until it exists (create it, or name another supervisor)",
            file=sys.stderr,
        )


def cmd_therapist(args: argparse.Namespace) -> int:
    from bridge.provision import PairError
    from bridge.store import therapists

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)

    async def work(parts: Any) -> int:
        if args.therapist_cmd == "add":
            desk = await parts.pairs.ensure_therapist(
                args.user, now(), email=args.email, supervisor=args.supervisor
            )
            print(f"{args.user}: desk room {desk}")
            if args.supervisor:
                await _warn_about_supervisor(parts, args.supervisor)
        elif args.therapist_cmd == "list":
            print_table(
                ("THERAPIST", "EMAIL", "SUPERVISOR", "DESK ROOM"),
                (
                    (t.user_id, t.email, t.supervisor_id, t.desk_room_id)
                    for t in await therapists.list_therapists(parts.db)
                ),
            )
        elif args.therapist_cmd == "remove":
            try:
                await parts.pairs.remove_therapist(args.user)
            except PairError as err:
                print(str(err), file=sys.stderr)
                return 1
            print(f"{args.user}: removed")
        elif args.therapist_cmd == "language":
            return await print_or_set_language(parts, args)
        return 0

    return run_with_parts(cfg, work)


def register(sub: Any) -> None:
    """Add `confidant therapist ...`."""
    th = with_config(sub.add_parser("therapist", help="manage therapists"))
    tsub = th.add_subparsers(dest="therapist_cmd", required=True)
    p = tsub.add_parser(
        "add", help="add a therapist and create their desk room", parents=[LATE_CONFIG]
    )
    p.add_argument("user")
    p.add_argument("--email")
    p.add_argument("--supervisor")
    tsub.add_parser("list", help="list therapists", parents=[LATE_CONFIG])
    p = tsub.add_parser("remove", help="remove a therapist without pairs", parents=[LATE_CONFIG])
    p.add_argument("user")
    p = tsub.add_parser(
        "language",
        help="show or set the language the therapist's desk is written in",
        parents=[LATE_CONFIG],
    )
    p.add_argument("user")
    add_language_argument(p)
    th.set_defaults(func=cmd_therapist)
