"""`confidant pair add|list|show|remove|reassign`: patient-therapist pairs and their rooms."""

from __future__ import annotations

import argparse
import json
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


def _pair_dict(record: Any, cfg: Any) -> dict[str, Any]:
    data = {
        "pair_id": record.pair_id,
        "label": record.label,
        "patient": record.patient_id,
        "therapist": record.therapist_id,
        "room_id": record.room_id,
        "status": record.status.value,
        "policy": record.policy,
        "consent": record.consent_state,
    }
    if cfg.smtp.enabled and cfg.smtp.inbound_domain:
        data["email_address"] = f"pair-{record.email_token}@{cfg.smtp.inbound_domain}"
    return data


def _print_pair(record: Any, cfg: Any, as_json: bool) -> None:
    data = _pair_dict(record, cfg)
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key:>14}: {value}")


async def missing_account(parts: Any, args: argparse.Namespace) -> str | None:
    """Why `pair add` must not go ahead: the line naming an account that does not exist.

    A room would otherwise be created and an invite sent to nobody; a patient without an
    account is invited by e-mail instead, and the pair follows once she registers.
    """
    from bridge.provision import has_account

    token = parts.cfg.synapse_admin.access_token
    admin_token = token.get_secret_value() if token else None
    if await has_account(parts.rest, args.therapist, admin_token=admin_token) is False:
        return (
            f"{args.therapist} has no account on the homeserver: create the therapist's "
            "account first (therapists are ordinary accounts), then add the pair"
        )
    if args.patient is None:
        # An e-mail pair: the patient has no account and is reached at her address only.
        if not args.patient_email:
            return "give --patient, or --patient-email for a patient reached by e-mail only"
        return None
    if await has_account(parts.rest, args.patient, admin_token=admin_token) is False:
        email = args.patient_email or "ADDRESS"
        return (
            f"{args.patient} has no account on the homeserver: invite the patient by e-mail "
            f"instead (`confidant invite --email {email} --therapist {args.therapist} "
            f"-c {args.config}`), the pair is created when the account appears"
        )
    return None


async def put_key(parts: Any, args: argparse.Namespace, record: Any) -> int:
    """`pair key PAIR FILE`: the patient's OpenPGP public key on file, its fingerprint shown."""
    import asyncio
    from pathlib import Path

    from bridge.email.openpgp import KeyProblem
    from bridge.features.email.outbound.keys import put_patient_key

    try:
        data = await asyncio.to_thread(Path(args.file).read_bytes)
        key = await put_patient_key(
            parts.db, parts.sealer, parts.audit, record.pair_id, data, now()
        )
    except (KeyProblem, OSError) as err:
        print(f"{args.file}: {err}", file=sys.stderr)
        return 1
    # Read it out to the patient: she compares it with her own before anything is sent.
    print(f"fingerprint: {key.spaced}")
    return 0


def cmd_pair(args: argparse.Namespace) -> int:
    from bridge.provision import PairError
    from bridge.store import pairs

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)

    async def work(parts: Any) -> int:
        try:
            if args.pair_cmd == "add":
                if args.policy not in cfg.policies:
                    print(
                        f"unknown policy {args.policy!r}; defined: {sorted(cfg.policies)}",
                        file=sys.stderr,
                    )
                    return 2
                refusal = await missing_account(parts, args)
                if refusal is not None:
                    print(refusal, file=sys.stderr)
                    return 1
                record, created = await parts.pairs.add_pair(
                    args.patient,
                    args.therapist,
                    now(),
                    policy=args.policy,
                    patient_email=args.patient_email,
                )
                print("created" if created else "exists", file=sys.stderr)
                _print_pair(record, cfg, args.json)
            elif args.pair_cmd == "list":
                records = await pairs.list_pairs(parts.db)
                if args.json:
                    print(json.dumps([_pair_dict(r, cfg) for r in records], indent=2))
                else:
                    print_table(
                        ("LABEL", "STATUS", "PATIENT", "THERAPIST", "POLICY", "ROOM"),
                        (
                            (
                                r.label,
                                r.status.value,
                                r.patient_id,
                                r.therapist_id,
                                r.policy,
                                r.room_id,
                            )
                            for r in records
                        ),
                    )
            elif args.pair_cmd == "show":
                _print_pair(await parts.pairs.resolve(args.pair), cfg, args.json)
            elif args.pair_cmd == "remove":
                _print_pair(await parts.pairs.remove_pair(args.pair, now()), cfg, args.json)
            elif args.pair_cmd == "reassign":
                record = await parts.pairs.reassign(args.pair, args.therapist, now())
                _print_pair(record, cfg, args.json)
            elif args.pair_cmd == "language":
                return await print_or_set_language(
                    parts, args, await parts.pairs.resolve(args.pair)
                )
            elif args.pair_cmd == "key":
                return await put_key(parts, args, await parts.pairs.resolve(args.pair))
        except PairError as err:
            print(str(err), file=sys.stderr)
            return 1
        return 0

    return run_with_parts(cfg, work)


def register(sub: Any) -> None:
    """Add `confidant pair ...`."""
    pair = with_config(sub.add_parser("pair", help="manage patient-therapist pairs"))
    pair.add_argument("--json", action="store_true", help="print JSON")
    psub = pair.add_subparsers(dest="pair_cmd", required=True)
    p = psub.add_parser(
        "add", help="create a pair and its E2EE room (idempotent)", parents=[LATE_CONFIG]
    )
    p.add_argument(
        "--patient", help="the patient's Matrix id; leave out for a patient reached by e-mail only"
    )
    p.add_argument("--therapist", required=True)
    p.add_argument("--patient-email")
    p.add_argument("--policy", default="default")
    psub.add_parser("list", help="list pairs", parents=[LATE_CONFIG])
    for name, text in (("show", "show one pair"), ("remove", "close a pair (audit is kept)")):
        p = psub.add_parser(name, help=text, parents=[LATE_CONFIG])
        p.add_argument("pair", help="pair id, label or room id")
    p = psub.add_parser(
        "reassign", help="hand a pair over to another therapist", parents=[LATE_CONFIG]
    )
    p.add_argument("pair")
    p.add_argument("--therapist", required=True)
    p = psub.add_parser(
        "language",
        help="show or set the language the patient's texts are written in",
        parents=[LATE_CONFIG],
    )
    p.add_argument("pair")
    add_language_argument(p)
    p = psub.add_parser(
        "key",
        help="put the patient's OpenPGP public key on file: mail to her is encrypted to it",
        parents=[LATE_CONFIG],
    )
    p.add_argument("pair", help="pair id, label or room id")
    p.add_argument("file", help="the public key, armored or binary")
    pair.set_defaults(func=cmd_pair)
