"""The `confidant` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge import __version__

DEFAULT_CONFIG = os.environ.get("CONFIDANT_CONFIG", "config.yaml")


def _load(path: str) -> Any:
    from bridge.config import ConfigError, load_config

    try:
        return load_config(Path(path))
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError:
        print(f"{path}: no such file (give the config with -c FILE)", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(cfg: Any) -> None:
    from bridge.logging_setup import setup_logging

    setup_logging(cfg.logging.level, cfg.logging.format)


def _now() -> datetime:
    return datetime.now(UTC)


async def _with_parts(cfg: Any, work: Callable[[Any], Awaitable[int]]) -> int:
    from bridge.app import open_parts

    parts = await open_parts(cfg)
    try:
        return await work(parts)
    finally:
        await parts.close()


# ---------------------------------------------------------------- commands


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


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.adapters.listen import ListenError
    from bridge.app import App, warm_standby

    cfg = _load(args.config)
    _setup_logging(cfg)
    from bridge.standby import run_when_active

    # With PostgreSQL, only the instance holding the advisory lock runs; others wait.
    try:
        asyncio.run(run_when_active(App(cfg), warm_standby(cfg)))
    except ListenError as err:
        # A configuration problem like any other: one line naming the key, exit 2.
        print(str(err), file=sys.stderr)
        return 2
    return 0


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


def cmd_pair(args: argparse.Namespace) -> int:
    from bridge.provision import PairError
    from bridge.store import pairs

    cfg = _load(args.config)
    _setup_logging(cfg)

    async def work(parts: Any) -> int:
        try:
            if args.pair_cmd == "add":
                if args.policy not in cfg.policies:
                    print(
                        f"unknown policy {args.policy!r}; defined: {sorted(cfg.policies)}",
                        file=sys.stderr,
                    )
                    return 2
                record, created = await parts.pairs.add_pair(
                    args.patient,
                    args.therapist,
                    _now(),
                    policy=args.policy,
                    patient_email=args.patient_email,
                )
                print("created" if created else "exists", file=sys.stderr)
                _print_pair(record, cfg, args.json)
            elif args.pair_cmd == "list":
                records = await pairs.list_pairs(parts.db)
                if args.json:
                    print(json.dumps([_pair_dict(r, cfg) for r in records], indent=2))
                for r in records if not args.json else []:
                    print(
                        f"{r.label:8} {r.status.value:12} {r.patient_id:30} "
                        f"{r.therapist_id:30} {r.room_id or '-'}"
                    )
            elif args.pair_cmd == "show":
                _print_pair(await parts.pairs.resolve(args.pair), cfg, args.json)
            elif args.pair_cmd == "remove":
                _print_pair(await parts.pairs.remove_pair(args.pair, _now()), cfg, args.json)
            elif args.pair_cmd == "reassign":
                record = await parts.pairs.reassign(args.pair, args.therapist, _now())
                _print_pair(record, cfg, args.json)
        except PairError as err:
            print(str(err), file=sys.stderr)
            return 1
        return 0

    return asyncio.run(_with_parts(cfg, work))


def cmd_therapist(args: argparse.Namespace) -> int:
    from bridge.store import pairs, therapists
    from bridge.store.pairs import PairStatus

    cfg = _load(args.config)
    _setup_logging(cfg)

    async def work(parts: Any) -> int:
        if args.therapist_cmd == "add":
            desk = await parts.pairs.ensure_therapist(
                args.user, _now(), email=args.email, supervisor=args.supervisor
            )
            print(f"{args.user}: desk room {desk}")
        elif args.therapist_cmd == "list":
            for t in await therapists.list_therapists(parts.db):
                print(
                    f"{t.user_id:30} desk={t.desk_room_id or '-'} "
                    f"supervisor={t.supervisor_id or '-'}"
                )
        elif args.therapist_cmd == "remove":
            live = [
                p
                for p in await pairs.list_pairs(parts.db)
                if p.therapist_id == args.user and p.status is not PairStatus.REMOVED
            ]
            if live:
                labels = ", ".join(p.label for p in live)
                print(
                    f"{args.user} still has pairs: {labels}; reassign or remove them first",
                    file=sys.stderr,
                )
                return 1
            await therapists.remove(parts.db, args.user)
            print(f"{args.user}: removed")
        return 0

    return asyncio.run(_with_parts(cfg, work))


def cmd_audit(args: argparse.Namespace) -> int:
    from bridge.audit.verify import run_purge, run_verify
    from bridge.config import parse_duration

    cfg = _load(args.config)
    _setup_logging(cfg)

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
                now=_now(),
            )
            print(message, file=sys.stdout if code == 0 else sys.stderr)
            return code
        count = await run_purge(
            parts.db, parse_duration(args.older_than), _now(), audit_log=parts.audit
        )
        print(f"purged content of {count} entries; the chain is kept")
        return 0

    return asyncio.run(_with_parts(cfg, work))


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_export(args: argparse.Namespace) -> int:
    from bridge.audit.export import export_pair

    cfg = _load(args.config)
    _setup_logging(cfg)

    async def work(parts: Any) -> int:
        record = await parts.pairs.resolve(args.pair)
        result = await export_pair(
            parts.db,
            parts.sealer,
            cfg.audit.signing_key.get_secret_value(),
            record.pair_id,
            _date(args.start),
            _date(args.end),
            Path(args.out),
            parts.renderer.templates_dir,
            now=_now(),
            actor="cli",
            tz=cfg.practice.timezone,
            audit_log=parts.audit,
        )
        print(f"{result.path}: {result.entry_count} entries, sha256 {result.sha256}")
        return 0

    return asyncio.run(_with_parts(cfg, work))


def cmd_verify_export(args: argparse.Namespace) -> int:
    from bridge.audit.checkpoint import load_public_key
    from bridge.audit.export import verify_export

    public_key: bytes | None = None
    if args.public_key:
        public_key = load_public_key(Path(args.public_key).read_text().strip())
    elif args.config and Path(args.config).exists():
        cfg = _load(args.config)
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


# ---------------------------------------------------------------- parser


def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a command the `-c/--config FILE` option."""
    p.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help="configuration file (default: $CONFIDANT_CONFIG or config.yaml)",
    )
    return p


#: Parent parser for sub-sub-commands: `-c` is accepted after them too
#: (`confidant pair list -c FILE`).
LATE_CONFIG = argparse.ArgumentParser(add_help=False)
LATE_CONFIG.add_argument("-c", "--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def load_config_or_exit(path: str) -> Any:
    """The config, or a one-line error and exit status 2."""
    return _load(path)


def setup_logging_for(cfg: Any) -> None:
    _setup_logging(cfg)


def run_with_parts(cfg: Any, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run `work(parts)` with the database, homeserver client and managers open."""
    return asyncio.run(_with_parts(cfg, work))


def now() -> datetime:
    return _now()


def register_feature_commands(sub: Any) -> None:
    """Every module in `bridge.cli_ext` adds its commands with `register(sub)`."""
    import importlib
    import pkgutil

    import bridge.cli_ext as ext

    for info in sorted(pkgutil.iter_modules(ext.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"bridge.cli_ext.{info.name}")
        module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="confidant", description="Secure Matrix bridge for therapy practices."
    )
    parser.add_argument("--version", action="version", version=f"confidant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    late_config = LATE_CONFIG

    p = with_config(sub.add_parser("run", help="run the bridge until SIGINT/SIGTERM"))
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("hash-token", help="hash an admin API token for http.admin_tokens")
    p.add_argument("token", nargs="?")
    p.set_defaults(func=cmd_hash_token)

    pair = with_config(sub.add_parser("pair", help="manage patient-therapist pairs"))
    pair.add_argument("--json", action="store_true", help="print JSON")
    psub = pair.add_subparsers(dest="pair_cmd", required=True)
    p = psub.add_parser(
        "add", help="create a pair and its E2EE room (idempotent, parents=[late_config])"
    )
    p.add_argument("--patient", required=True)
    p.add_argument("--therapist", required=True)
    p.add_argument("--patient-email")
    p.add_argument("--policy", default="default")
    psub.add_parser("list", help="list pairs", parents=[late_config])
    for name, text in (("show", "show one pair"), ("remove", "close a pair (audit is kept)")):
        p = psub.add_parser(name, help=text, parents=[late_config])
        p.add_argument("pair", help="pair id, label or room id")
    p = psub.add_parser(
        "reassign", help="hand a pair over to another therapist", parents=[late_config]
    )
    p.add_argument("pair")
    p.add_argument("--therapist", required=True)
    pair.set_defaults(func=cmd_pair)

    th = with_config(sub.add_parser("therapist", help="manage therapists"))
    tsub = th.add_subparsers(dest="therapist_cmd", required=True)
    p = tsub.add_parser(
        "add", help="add a therapist and create their desk room", parents=[late_config]
    )
    p.add_argument("user")
    p.add_argument("--email")
    p.add_argument("--supervisor")
    tsub.add_parser("list", help="list therapists", parents=[late_config])
    p = tsub.add_parser("remove", help="remove a therapist without pairs", parents=[late_config])
    p.add_argument("user")
    th.set_defaults(func=cmd_therapist)

    au = with_config(sub.add_parser("audit", help="verify or purge the audit trail"))
    asub = au.add_subparsers(dest="audit_cmd", required=True)
    p = asub.add_parser(
        "verify", help="verify the hash chain (non-zero exit on a break)", parents=[late_config]
    )
    p.add_argument("--pair")
    p.add_argument("--checkpoint", help="a checkpoint file kept elsewhere")
    p = asub.add_parser(
        "purge", help="delete content older than a duration; keep the chain", parents=[late_config]
    )
    p.add_argument("--older-than", required=True, help="e.g. 3650d")
    au.set_defaults(func=cmd_audit)

    p = asub.add_parser("verify-export", help="check an export zip offline", parents=[late_config])
    p.add_argument("file")
    p.add_argument("--public-key", help="the practice's audit public key (file)")
    p.set_defaults(func=cmd_verify_export)

    p = with_config(sub.add_parser("export", help="export a pair's transcript as a zip"))
    p.add_argument("--pair", required=True, help="pair id, label or room id")
    p.add_argument("--from", dest="start", help="ISO date or time (inclusive)")
    p.add_argument("--to", dest="end", help="ISO date or time (exclusive)")
    p.add_argument("--out", required=True, help="the zip file to write")
    p.set_defaults(func=cmd_export)

    register_feature_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
