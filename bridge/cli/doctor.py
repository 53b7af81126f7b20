"""`confidant doctor -c FILE`: what a practice's set-up still lacks, one line per check, each
with its fix. Exit status by the worst finding: 0 all well, 1 warnings, 2 errors.

It asks the homeserver, the database and the local ports, and changes nothing on any of
them (a password check logs its device out again).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from bridge.cli.base import load_config_or_exit, with_config

OK, WARN, ERROR = 0, 1, 2
_LABEL = {OK: "ok   ", WARN: "WARN ", ERROR: "ERROR"}


def _spec_order(version: str) -> tuple[int, ...]:
    """`v1.10` after `v1.9`: spec versions compared by their numbers, not as text."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


@dataclass(frozen=True)
class Finding:
    severity: int
    check: str
    text: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix and self.severity != OK else ""
        return f"{_LABEL[self.severity]} {self.check}: {self.text}{fix}"


class Doctor:
    """Runs the checks in the order a set-up is done, collecting findings."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.findings: list[Finding] = []
        self.bot_token: str | None = None

    def add(self, severity: int, check: str, text: str, fix: str = "") -> None:
        finding = Finding(severity, check, text, fix)
        self.findings.append(finding)
        print(finding.line(), flush=True)

    async def run(self) -> int:
        from bridge.adapters.matrix.rest import MatrixRest

        cfg = self.cfg
        async with MatrixRest(
            cfg.homeserver.url, None, verify_tls=cfg.homeserver.verify_tls
        ) as rest:
            if await self.homeserver(rest):
                await self.bot_login(rest)
                await self.rate_limits(rest)
                await self.registration(rest)
                db_people = await self.database()
                await self.people(rest, db_people)
            else:
                await self.database()
        self.smtp()
        return max((f.severity for f in self.findings), default=OK)

    # ------------------------------------------------------------ homeserver

    async def homeserver(self, rest: Any) -> bool:
        from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError

        url = self.cfg.homeserver.url
        try:
            versions = await rest.request("GET", "/_matrix/client/versions", retries=0)
        except (HomeserverUnavailable, MatrixError) as err:
            self.add(
                ERROR,
                "homeserver",
                f"{url} does not answer ({err})",
                "check homeserver.url and that Synapse runs",
            )
            return False
        try:
            server = await rest.request("GET", "/_synapse/admin/v1/server_version", retries=0)
            name = f"Synapse {server.get('server_version', '?')}"
        except (HomeserverUnavailable, MatrixError):
            name = "not Synapse (no admin API)"
        spec = max(versions.get("versions") or ["?"], key=_spec_order)
        self.add(OK, "homeserver", f"{url} answers: {name}, client API up to {spec}")
        return True

    async def bot_login(self, rest: Any) -> None:
        from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError
        from bridge.adapters.matrix.session import stored_credentials
        from bridge.cli.botaccount import password_works

        cfg = self.cfg
        user = cfg.bot.user_id
        saved = stored_credentials(cfg.data_dir, user)
        token = (saved.access_token if saved else "") or (
            cfg.bot.access_token.get_secret_value() if cfg.bot.access_token else ""
        )
        try:
            if token:
                who = await rest.request("GET", "/_matrix/client/v3/account/whoami", token=token)
                if who.get("user_id") != user:
                    self.add(
                        ERROR,
                        "bot login",
                        f"the token is {who.get('user_id')}'s, not {user}'s",
                        "set bot.access_token to a token of the bot account",
                    )
                    return
                self.bot_token = token
                source = "saved session" if saved else "bot.access_token"
                self.add(
                    OK, "bot login", f"{user} signed in ({source}, device {who.get('device_id')})"
                )
                return
            assert cfg.bot.password is not None
            if await password_works(rest, user, cfg.bot.password.get_secret_value()):
                self.add(OK, "bot login", f"{user}: the password logs in")
            else:
                self.add(
                    ERROR,
                    "bot login",
                    f"{user}: the homeserver refuses bot.password",
                    "create the account (`confidant init` prints how) or fix bot.password",
                )
        except MatrixError as err:
            self.add(ERROR, "bot login", f"{user}: {err}", "check the bot account and bot.password")
        except HomeserverUnavailable as err:
            self.add(ERROR, "bot login", f"homeserver unavailable ({err})", "retry when it answers")

    async def rate_limits(self, rest: Any) -> None:
        from bridge.adapters.matrix.rest import MatrixError
        from bridge.cli.botaccount import SynapseBotAdmin, curl_commands, is_exempt

        cfg = self.cfg
        admin_token = (
            cfg.synapse_admin.access_token.get_secret_value()
            if cfg.synapse_admin.access_token
            else self.bot_token
        )
        fix = "as a server admin: " + curl_commands(cfg.homeserver.url, cfg.bot.user_id, "")[1]
        if admin_token is None:
            self.add(WARN, "rate limits", "unknown, needs an admin token", fix)
            return
        try:
            override = await SynapseBotAdmin(rest, admin_token).rate_limit(cfg.bot.user_id)
        except MatrixError as err:
            if err.status in (401, 403, 404):
                self.add(
                    WARN,
                    "rate limits",
                    "unknown, needs an admin token (set synapse_admin.access_token)",
                    fix,
                )
            else:
                self.add(WARN, "rate limits", f"unknown ({err})", fix)
            return
        if is_exempt(override):
            self.add(OK, "rate limits", f"{cfg.bot.user_id} is exempt")
        else:
            self.add(
                ERROR,
                "rate limits",
                f"{cfg.bot.user_id} has the stock limits: "
                "creating pairs in a row slows to one a minute",
                fix,
            )

    async def registration(self, rest: Any) -> None:
        from bridge.adapters.matrix.rest import HomeserverUnavailable
        from bridge.features.onboarding.registration import probe_registration

        if self.cfg.synapse_admin.access_token is None:
            self.add(OK, "registration", "onboarding is off (no synapse_admin.access_token)")
            return
        hs = self.cfg.homeserver
        try:
            self.add(*await probe_registration(hs.url, verify_tls=hs.verify_tls))
        except HomeserverUnavailable as err:
            self.add(ERROR, "registration", f"no answer ({err})", "retry when it answers")

    # ------------------------------------------------------------ database and people

    async def database(self) -> set[str] | None:
        from bridge.store import StoreError, open_database
        from bridge.store import therapists as therapist_rows
        from bridge.store.migrate import discover, schema_version

        cfg = self.cfg
        path = cfg.sqlite_path
        where = "PostgreSQL" if path is None else f"SQLite at {path}"
        if path is not None and not path.exists():
            self.add(OK, "database", f"{where} does not exist yet; `run` creates it")
            return set()
        try:
            db = await asyncio.wait_for(
                open_database(cfg.database_url, apply_migrations=False), timeout=10
            )
        except Exception as err:  # each driver fails to connect in its own way: one finding
            self.add(
                ERROR,
                "database",
                f"{where} cannot be opened ({type(err).__name__})",
                "check database.url, the server and its password",
            )
            return None
        try:
            latest = max(m.version for m in discover())
            try:
                version = await schema_version(db)
            except StoreError:
                version = 0
            if version == latest:
                self.add(OK, "database", f"{where} answers, schema {version} (current)")
            elif version < latest:
                self.add(
                    WARN,
                    "database",
                    f"{where} has schema {version} of {latest}",
                    "`confidant run` migrates it at start",
                )
            else:
                self.add(
                    ERROR,
                    "database",
                    f"{where} has schema {version}, newer than this Confidant ({latest})",
                    "upgrade Confidant",
                )
            if version == 0:
                return set()
            return {t.user_id for t in await therapist_rows.list_therapists(db)}
        finally:
            await db.close()

    async def people(self, rest: Any, therapists: set[str] | None) -> None:
        from bridge.adapters.matrix.rest import MatrixError, q

        cfg = self.cfg
        supervisors = {s for policy in cfg.policies.values() for s in policy.supervisors}
        if not supervisors:
            self.add(OK, "supervisors", "none named (no escalation)")
        if not therapists:
            self.add(OK, "therapists", "none yet (`confidant therapist add @t:server`)")
        token = self.bot_token
        for role, users in (("supervisor", supervisors), ("therapist", therapists or set())):
            for user in sorted(users):
                try:
                    await rest.request("GET", f"/_matrix/client/v3/profile/{q(user)}", token=token)
                except MatrixError as err:
                    if err.status == 404:
                        self.add(
                            ERROR,
                            role,
                            f"{user} has no account on the homeserver",
                            f"create the account or correct the {role}",
                        )
                    else:
                        self.add(WARN, role, f"{user}: cannot tell ({err.errcode})")
                    continue
                self.add(OK, role, f"{user} exists")

    # ------------------------------------------------------------ local listeners

    def smtp(self) -> None:
        smtp = self.cfg.smtp
        if not smtp.enabled:
            self.add(OK, "smtp", "off")
            return
        where = f"{smtp.host}:{smtp.port}"
        try:
            with socket.create_server((smtp.host, smtp.port), reuse_port=False):
                pass
            self.add(OK, "smtp", f"{where} is free")
        except OSError as err:
            self.add(
                WARN,
                "smtp",
                f"{where} is taken ({err.strerror}); the bridge itself, if it runs",
                "stop what holds the port, or change smtp.port",
            )
        if smtp.tls_cert is not None and smtp.tls_key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(smtp.tls_cert, smtp.tls_key)
            except (OSError, ssl.SSLError) as err:
                self.add(
                    ERROR,
                    "smtp tls",
                    f"{smtp.tls_cert} / {smtp.tls_key} do not load ({err})",
                    "give a PEM certificate chain and its private key",
                )
            else:
                self.add(OK, "smtp tls", "certificate and key load")


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    status = asyncio.run(Doctor(cfg).run())
    print({OK: "all well", WARN: "warnings only", ERROR: "errors found"}[status])
    return status


def register(sub: Any) -> None:
    """Add `confidant doctor`."""
    p = with_config(
        sub.add_parser("doctor", help="check a set-up: homeserver, bot, database, ports")
    )
    p.set_defaults(func=cmd_doctor)
