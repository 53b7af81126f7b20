"""`confidant audit verify|checkpoint|purge|verify-export`: the chain, its witnesses, exports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bridge.cli.base import (
    LATE_CONFIG,
    load_config_or_exit,
    now,
    run_with_parts,
    setup_logging_for,
    with_config,
)


def cmd_audit(args: argparse.Namespace) -> int:
    from bridge.audit.checkpoint import witness_checkpoint
    from bridge.audit.verify import run_purge, run_verify
    from bridge.config import parse_duration

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)

    async def work(parts: Any) -> int:
        if args.audit_cmd == "verify":
            pair_id = None
            if args.pair:
                pair_id = (await parts.pairs.resolve(args.pair)).pair_id
            code, message = await run_verify(
                parts.db,
                pair_id=pair_id,
                checkpoint_file=args.checkpoint,
                sealer=parts.sealer,
                audit_log=parts.audit,
            )
            print(message, file=sys.stdout if code == 0 else sys.stderr)
            return code
        if args.audit_cmd == "checkpoint":
            try:
                path, signed = await witness_checkpoint(
                    parts.db, parts.audit.signing_key, now(), out=Path(args.out)
                )
            except OSError as exc:
                print(f"cannot write the checkpoint to {args.out}: {exc}", file=sys.stderr)
                return 2
            print(f"checkpoint at {signed.count} entries written to {path}")
            return 0
        count = await run_purge(
            parts.db, parse_duration(args.older_than), now(), audit_log=parts.audit
        )
        print(f"purged content of {count} entries; the chain is kept")
        return 0

    return run_with_parts(cfg, work)


def cmd_verify_export(args: argparse.Namespace) -> int:
    from bridge.audit.checkpoint import load_public_key
    from bridge.audit.export import verify_export

    public_key: bytes | None = None
    if args.public_key:
        public_key = load_public_key(Path(args.public_key).read_text().strip())
    elif args.config and Path(args.config).exists():
        cfg = load_config_or_exit(args.config)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        seed = cfg.audit.signing_key.get_secret_value()
        public_key = (
            Ed25519PrivateKey.from_private_bytes(seed)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
    ok, message = verify_export(Path(args.file), public_key)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def register(sub: Any) -> None:
    """Add `confidant audit ...`."""
    au = with_config(sub.add_parser("audit", help="verify or purge the audit trail"))
    asub = au.add_subparsers(dest="audit_cmd", required=True)
    p = asub.add_parser(
        "verify", help="verify the hash chain (non-zero exit on a break)", parents=[LATE_CONFIG]
    )
    p.add_argument("--pair")
    p.add_argument("--checkpoint", help="a checkpoint file kept elsewhere, or a directory of them")
    p = asub.add_parser(
        "checkpoint",
        help="sign the chain head and write it outside the database",
        parents=[LATE_CONFIG],
    )
    p.add_argument(
        "--out",
        required=True,
        help="a file, or a directory (one file per checkpoint), on another volume or host",
    )
    p = asub.add_parser(
        "purge", help="delete content older than a duration; keep the chain", parents=[LATE_CONFIG]
    )
    p.add_argument("--older-than", required=True, help="e.g. 3650d")
    au.set_defaults(func=cmd_audit)

    p = asub.add_parser("verify-export", help="check an export zip offline", parents=[LATE_CONFIG])
    p.add_argument("file")
    p.add_argument("--public-key", help="the practice's audit public key (file)")
    p.set_defaults(func=cmd_verify_export)
