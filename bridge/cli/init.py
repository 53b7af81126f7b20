"""`confidant init`: a first, complete configuration with generated secrets, and the bot's
account made ready on Synapse (created or checked, exempt from rate limits).

The configuration is the commented example with the practice's values and fresh secrets
(pickle key, audit keys, an admin token whose hash alone is kept). An existing file is
never overwritten. With a homeserver admin's token the bot account is created (or its
password checked) and exempted from rate limits; without one the exact commands are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from bridge.cli.base import DEFAULT_CONFIG

ADMIN_TOKEN_ENV = "CONFIDANT_SYNAPSE_ADMIN_TOKEN"


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def config_values(args: argparse.Namespace, bot_password: str, admin_hash: str) -> dict[str, Any]:
    """The example's key paths and what `init` puts there."""
    server_name = args.bot.split(":", 1)[1]
    values: dict[str, Any] = {
        "homeserver.url": args.homeserver.rstrip("/"),
        "homeserver.server_name": server_name,
        "bot.user_id": args.bot,
        "bot.password": bot_password,
        "bot.pickle_key": new_key(),
        "data_dir": args.data_dir,
        "database.url": args.database_url,
        "audit.content_keys": {"k1": new_key()},
        "audit.signing_key": new_key(),
        "http.admin_tokens": [admin_hash],
        # The example's supervisor and Jitsi are example.org's: a practice names its own.
        "policies.default.escalate_after": None,
        "policies.default.supervisors": [],
        "jitsi.domain": args.jitsi_domain,
        "synapse_admin.access_token": admin_token(args) if args.onboarding else None,
    }
    if args.practice_name:
        values["practice.name"] = args.practice_name
    if args.listen_host:
        values["http.host"] = args.listen_host
        values["smtp.host"] = args.listen_host
    return values


def admin_token(args: argparse.Namespace) -> str | None:
    token = args.synapse_admin_token or os.environ.get(ADMIN_TOKEN_ENV)
    return token or None


async def prepare_bot(args: argparse.Namespace, password: str, given: bool) -> list[str]:
    """Create or check the bot account; return what was done. Raises `InitError`."""
    from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError, MatrixRest
    from bridge.cli.botaccount import SynapseBotAdmin, password_works

    token = admin_token(args)
    assert token is not None
    async with MatrixRest(args.homeserver.rstrip("/"), None) as rest:
        admin = SynapseBotAdmin(rest, token)
        try:
            account = await admin.account(args.bot)
            if account is None:
                await admin.create(args.bot, password, args.display_name)
                return [f"bot account {args.bot}: created (not a server admin)"]
            if account.get("deactivated"):
                raise InitError(
                    f"bot account {args.bot} is deactivated; reactivate it or pick another"
                )
            if not given:
                raise InitError(
                    f"bot account {args.bot} exists; give its password with --bot-password "
                    "(or pick another --bot)"
                )
            if not await password_works(rest, args.bot, password):
                raise InitError(
                    f"bot account {args.bot} exists, but --bot-password does not log in"
                )
            return [f"bot account {args.bot}: exists, password checked"]
        except MatrixError as err:
            raise InitError(admin_error(err)) from None
        except HomeserverUnavailable as err:
            raise InitError(f"homeserver {args.homeserver} does not answer ({err})") from None


async def exempt_bot(args: argparse.Namespace) -> str:
    from bridge.adapters.matrix.rest import MatrixRest
    from bridge.cli.botaccount import SynapseBotAdmin, is_exempt

    token = admin_token(args)
    assert token is not None
    async with MatrixRest(args.homeserver.rstrip("/"), None) as rest:
        admin = SynapseBotAdmin(rest, token)
        if is_exempt(await admin.rate_limit(args.bot)):
            return "rate limits: the bot was already exempt"
        await admin.exempt(args.bot)
        if not is_exempt(await admin.rate_limit(args.bot)):
            raise InitError("rate limits: the homeserver did not keep the bot's exemption")
        return "rate limits: the bot is now exempt (override_ratelimit 0 messages/s, burst 0)"


def admin_error(err: Any) -> str:
    if err.status in (401, 403):
        return (
            "the Synapse admin token was refused: give the access token of a server admin "
            f"(--synapse-admin-token or ${ADMIN_TOKEN_ENV})"
        )
    if err.status == 404:
        return "the homeserver has no Synapse admin API; create the bot account by hand"
    return f"the Synapse admin API answered {err.status} {err.errcode}"


class InitError(Exception):
    """`init` cannot go on; the text says why and what to do."""


def cmd_init(args: argparse.Namespace) -> int:
    import yaml

    from bridge.cli.botaccount import curl_commands
    from bridge.cli.configcmds import new_admin_token
    from bridge.config import ConfigError, hash_token, parse_config
    from bridge.config.example import example_path, set_values
    from bridge.config.values import USER_ID_RE

    path = Path(args.config)
    if path.exists():
        print(f"{path} exists; init never overwrites a configuration", file=sys.stderr)
        return 2
    if not USER_ID_RE.fullmatch(args.bot):
        print(
            f"--bot {args.bot!r} is not a Matrix user id like @confidant:example.org",
            file=sys.stderr,
        )
        return 2
    if args.onboarding and admin_token(args) is None:
        print(
            "--onboarding keeps the Synapse admin token: give --synapse-admin-token",
            file=sys.stderr,
        )
        return 2
    if args.admin_token_file and Path(args.admin_token_file).exists():
        print(f"{args.admin_token_file} exists; init never overwrites it", file=sys.stderr)
        return 2
    given = args.bot_password is not None
    password = args.bot_password or secrets.token_urlsafe(24)
    token = new_admin_token()
    values = config_values(args, password, hash_token(token))
    text = set_values(example_path().read_text(encoding="utf-8"), values)
    base = path.resolve().parent
    try:
        parse_config(yaml.safe_load(text), str(path), base_dir=base)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2

    done: list[str] = []
    if admin_token(args) is not None:
        try:
            done += asyncio.run(prepare_bot(args, password, given))
        except InitError as err:
            print(str(err), file=sys.stderr)
            return 2
    base.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: the file holds the bot's password and the keys.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {path} (mode 0600) from the commented example, with new secrets")
    for line in done:
        print(line)
    status = 0
    if admin_token(args) is not None:
        try:
            print(asyncio.run(exempt_bot(args)))
        except Exception as err:  # the config is written; say what is left to do
            print(f"rate limits: not exempted ({err}); as a server admin run:", file=sys.stderr)
            print(
                "  " + curl_commands(args.homeserver.rstrip("/"), args.bot, args.display_name)[1],
                file=sys.stderr,
            )
            status = 1
    else:
        print(
            f"bot account: not created (no --synapse-admin-token). As a homeserver admin, with "
            f"ADMIN_TOKEN set to your access token and BOT_PASSWORD to bot.password from {path}:"
        )
        for command in curl_commands(args.homeserver.rstrip("/"), args.bot, args.display_name):
            print("  " + command)
    if args.admin_token_file:
        # In a container stdout is a log that is kept: the token goes to a private file.
        fd = os.open(args.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        print(f"admin token: written to {args.admin_token_file} (read it once, then delete it)")
    else:
        print(f"admin token (shown once; {path} keeps only its hash): {token}")
    print(f"next: confidant doctor -c {path}")
    return status


def register(sub: Any) -> None:
    """Add `confidant init`."""
    p = sub.add_parser("init", help="write a first configuration and prepare the bot account")
    p.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help="the file to write (never overwritten)"
    )
    p.add_argument(
        "--homeserver", required=True, help="client-server API URL, as the bot reaches it"
    )
    p.add_argument("--bot", required=True, help="the bot's Matrix id, like @confidant:example.org")
    p.add_argument("--bot-password", help="password of an existing bot account (else one is made)")
    p.add_argument(
        "--synapse-admin-token",
        help=f"a server admin's access token (or ${ADMIN_TOKEN_ENV}): create the bot, exempt it",
    )
    p.add_argument(
        "--onboarding",
        action="store_true",
        help="keep the admin token as synapse_admin.access_token (invitations by e-mail)",
    )
    p.add_argument("--display-name", default="Confidant", help="the bot's display name")
    p.add_argument("--practice-name", help="the practice's name in messages and e-mails")
    p.add_argument("--data-dir", default="data", help="data directory (relative to the config)")
    p.add_argument(
        "--database-url", help="postgresql://... (default: SQLite in the data directory)"
    )
    p.add_argument("--jitsi-domain", help="Jitsi server for !video (default: off)")
    p.add_argument(
        "--listen-host",
        help="address the admin API and SMTP listen on (0.0.0.0 inside a container)",
    )
    p.add_argument(
        "--admin-token-file",
        help="write the new admin token to this file (mode 0600) instead of printing it",
    )
    p.set_defaults(func=cmd_init)
