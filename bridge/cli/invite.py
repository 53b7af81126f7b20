"""`confidant invite`: invite a patient by e-mail; list, resend, revoke and match invitations."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
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
from bridge.core.language import LANGUAGES, parse_language


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _line(record: Any) -> str:
    who = record.patient_id or record.email
    return (
        f"{record.invitation_id}  {record.status.value:9}  {record.therapist_id:28}  "
        f"{who:30}  expires {_when(record.expires_at)}  sent {record.sent_count}x"
    )


def _stored(mail_error: str) -> str:
    """What to say when the e-mail failed: the invitation is kept, to be sent again."""
    return (
        f"{mail_error}; the invitation is stored: send it again with `confidant invite resend ID`"
    )


def cmd_invite(args: argparse.Namespace) -> int:
    from bridge.adapters.mailer import MailError, build_mailer
    from bridge.config import parse_duration
    from bridge.features.onboarding.invitations import Onboarding, invite_patient
    from bridge.ports import OnboardingError
    from bridge.store import invitations

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    sub = getattr(args, "invite_cmd", None)
    if sub is None and (not args.email or not args.therapist):
        print(
            "give --email and --therapist (or one of: list, resend, revoke, match)",
            file=sys.stderr,
        )
        return 2
    language = parse_language(args.language) if getattr(args, "language", None) else None
    if getattr(args, "language", None) and language is None:
        print(
            f"{args.language!r} is not a language of the texts; use one of {', '.join(LANGUAGES)}",
            file=sys.stderr,
        )
        return 2

    async def work(parts: Any) -> int:
        onboarding = Onboarding(parts, build_mailer(cfg, parts.renderer), actor="admin")
        try:
            if sub is None:
                invited = await invite_patient(
                    onboarding,
                    args.email,
                    args.therapist,
                    now(),
                    name=args.name,
                    policy=args.policy,
                    valid_for=parse_duration(args.valid_for),
                    language=language,
                )
                if invited.email_error is not None:
                    print(_stored(invited.email_error), file=sys.stderr)
                    return 1
                record = invited.record
                print(_line(record))
                if onboarding.mailer is None:
                    print(
                        f"outbound_email is not enabled: give the patient the invitation "
                        f"code {record.token} (valid until {_when(record.expires_at)}) yourself",
                        file=sys.stderr,
                    )
                else:
                    print("invitation e-mailed", file=sys.stderr)
            elif sub == "list":
                print_table(
                    ("INVITATION", "STATUS", "THERAPIST", "PATIENT", "EXPIRES", "SENT"),
                    (
                        (
                            r.invitation_id,
                            r.status.value,
                            r.therapist_id,
                            r.patient_id or r.email,
                            _when(r.expires_at),
                            r.sent_count,
                        )
                        for r in await invitations.list_invitations(parts.db, sealer=parts.sealer)
                    ),
                )
            elif sub == "resend":
                print(_line(await onboarding.resend(args.invitation, now())))
            elif sub == "revoke":
                print(_line(await onboarding.revoke(args.invitation, now())))
            elif sub == "match":
                print(_line(await onboarding.match(args.invitation, args.user, now())))
        except OnboardingError as err:
            print(str(err), file=sys.stderr)
            return 1
        except MailError as err:
            print(_stored(str(err)), file=sys.stderr)
            return 1
        return 0

    return run_with_parts(cfg, work)


def register(sub: Any) -> None:
    """Add `confidant invite ...` to the command line."""
    p = with_config(
        sub.add_parser(
            "invite",
            help="invite a patient by e-mail with a single-use registration code",
            description=(
                "Without a sub-command: create an invitation (a single-use registration "
                "token on the homeserver) and e-mail it. The running bridge creates the "
                "pair once the account appears."
            ),
        )
    )
    p.add_argument("--email", help="the patient's e-mail address")
    p.add_argument("--therapist", help="the therapist's Matrix user id")
    p.add_argument("--name", help="how the e-mail greets the patient")
    p.add_argument("--policy", default="default", help="the pair's reply-time policy")
    p.add_argument("--valid-for", default="7d", help="how long the code works (default 7d)")
    p.add_argument(
        "--language",
        help=f"the language of the e-mail and of the patient's texts ({', '.join(LANGUAGES)}; "
        "default: the practice's)",
    )
    isub = p.add_subparsers(dest="invite_cmd", required=False)
    isub.add_parser("list", help="list invitations", parents=[LATE_CONFIG])
    for name, text in (
        ("resend", "e-mail a pending invitation again"),
        ("revoke", "withdraw a pending invitation (its code stops working)"),
    ):
        q = isub.add_parser(name, help=text, parents=[LATE_CONFIG])
        q.add_argument("invitation", help="the invitation id (see `invite list`)")
    q = isub.add_parser(
        "match",
        help="say which account used an invitation the bridge could not match",
        parents=[LATE_CONFIG],
    )
    q.add_argument("invitation")
    q.add_argument("user", help="the patient's Matrix user id")
    p.set_defaults(func=cmd_invite)
