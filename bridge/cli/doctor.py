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
from collections.abc import Callable
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

    def __init__(self, cfg: Any, report: Callable[[Finding], None] | None = None) -> None:
        self.cfg = cfg
        self.findings: list[Finding] = []
        self.bot_token: str | None = None
        self.bot_device: str | None = None
        self.report = report or (lambda finding: print(finding.line(), flush=True))

    def add(self, severity: int, check: str, text: str, fix: str = "") -> None:
        finding = Finding(severity, check, text, fix)
        self.findings.append(finding)
        self.report(finding)

    async def run(self) -> int:
        """Every check, as `confidant doctor` runs them; the worst severity."""
        return await self._checks(at_start=False)

    async def at_start(self) -> int:
        """The checks whose failure `run` would otherwise only show later, as a symptom.

        Left out: the bot's password (the bridge logs in itself and says so), the SMTP
        port (the bridge is about to take it) and the people (one lookup each).
        """
        return await self._checks(at_start=True)

    async def _checks(self, *, at_start: bool) -> int:
        from bridge.adapters.matrix.rest import MatrixRest

        cfg = self.cfg
        async with MatrixRest(
            cfg.homeserver.url, None, verify_tls=cfg.homeserver.verify_tls
        ) as rest:
            if await self.homeserver(rest):
                await self.bot_login(rest, with_password=not at_start)
                await self.cross_signing(rest)
                await self.rate_limits(rest)
                await self.registration(rest)
                await self.room_version(rest)
                db_people = await self.database()
                if not at_start:
                    await self.people(rest, db_people)
            else:
                await self.database()
        if not at_start:
            self.smtp()
        else:
            self.smtp_tls()
        await self.outbound_relay()
        await self.jitsi()
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

    async def bot_login(self, rest: Any, *, with_password: bool = True) -> None:
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
                self.bot_device = who.get("device_id")
                source = "saved session" if saved else "bot.access_token"
                self.add(
                    OK, "bot login", f"{user} signed in ({source}, device {who.get('device_id')})"
                )
                return
            assert cfg.bot.password is not None
            if not with_password:
                self.add(OK, "bot login", f"{user}: no saved session yet, the bridge logs in")
                return
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
        self.smtp_tls()

    def smtp_tls(self) -> None:
        smtp = self.cfg.smtp
        if smtp.enabled and smtp.tls_cert is not None and smtp.tls_key is not None:
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

    # ------------------------------------------------------------ the bot's rooms and keys

    async def room_version(self, rest: Any) -> None:
        from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError

        pinned = self.cfg.pairs.room_version
        token = self.bot_token or self._admin_token()
        if token is None:
            self.add(WARN, "room version", "unknown until the bot has signed in once")
            return
        try:
            caps = await rest.request(
                "GET", "/_matrix/client/v3/capabilities", token=token, retries=0
            )
        except (MatrixError, HomeserverUnavailable) as err:
            self.add(WARN, "room version", f"unknown ({err})")
            return
        versions = caps.get("capabilities", {}).get("m.room_versions", {})
        default = str(versions.get("default", "1"))
        available: dict[str, str] = versions.get("available", {})
        if pinned is None:
            note = (
                ' (room ids without ":server"; if a client refuses them, set '
                'pairs.room_version: "11")'
                if default.isdigit() and int(default) >= 12
                else ""
            )
            self.add(OK, "room version", f"the homeserver's default, {default}{note}")
        elif pinned not in available:
            self.add(
                ERROR,
                "room version",
                f"pairs.room_version {pinned} is not offered by the homeserver",
                f"set pairs.room_version to one of {', '.join(sorted(available, key=_num))}",
            )
        elif available[pinned] != "stable":
            self.add(
                WARN,
                "room version",
                f"pairs.room_version {pinned} is {available[pinned]} on the homeserver",
                "pin a stable version",
            )
        else:
            self.add(OK, "room version", f"{pinned} (pairs.room_version; default {default})")

    async def cross_signing(self, rest: Any) -> None:
        """The bot's master and self-signing keys published, and its device signed: clients
        that exclude insecure devices read nothing from a bot without them."""
        from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError

        user = self.cfg.bot.user_id
        token = self.bot_token or self._admin_token()
        if token is None:
            self.add(OK, "cross-signing", "not yet: `confidant run` publishes it at first start")
            return
        try:
            keys = await rest.request(
                "POST",
                "/_matrix/client/v3/keys/query",
                {"device_keys": {user: []}},
                token=token,
                retries=0,
            )
        except (MatrixError, HomeserverUnavailable) as err:
            self.add(WARN, "cross-signing", f"unknown ({err})")
            return
        devices = keys.get("device_keys", {}).get(user, {})
        ssk = keys.get("self_signing_keys", {}).get(user, {}).get("keys", {})
        if user not in keys.get("master_keys", {}) or not ssk:
            if not devices:
                self.add(OK, "cross-signing", "not yet: `confidant run` publishes it at start")
            else:
                self.add(
                    ERROR,
                    "cross-signing",
                    f"{user} has devices but no cross-signing keys: clients that exclude "
                    "insecure devices cannot read the bot",
                    "start `confidant run` and look for its cross-signing warning",
                )
            return
        device = self.bot_device
        if device is None:
            self.add(OK, "cross-signing", "master and self-signing keys published")
            return
        signatures = devices.get(device, {}).get("signatures", {}).get(user, {})
        if any(key_id in signatures for key_id in ssk):
            self.add(OK, "cross-signing", f"published; device {device} is signed")
        else:
            self.add(
                ERROR,
                "cross-signing",
                f"device {device} is not signed by the bot's self-signing key",
                "restart `confidant run`: it signs its device at start",
            )

    def _admin_token(self) -> str | None:
        token = self.cfg.synapse_admin.access_token
        return token.get_secret_value() if token else None

    # ------------------------------------------------------------ outside services

    async def outbound_relay(self) -> None:
        """Log in to the practice's relay as the mailer would, and quit without sending."""
        import aiosmtplib

        out = self.cfg.outbound_email
        if not out.enabled:
            self.add(OK, "outbound relay", "off (outbound_email.enabled: false)")
            return
        where = f"{out.host}:{out.effective_port}"
        client = aiosmtplib.SMTP(
            hostname=out.host,
            port=out.effective_port,
            use_tls=out.security == "tls",
            start_tls=out.security == "starttls",
            timeout=10,
        )
        try:
            await client.connect()
            if out.username is not None and out.password is not None:
                await client.login(out.username, out.password.get_secret_value())
                done = f"{where} accepts the login of {out.username}"
            else:
                done = f"{where} answers ({out.security}, no login configured)"
            await client.quit()
        except aiosmtplib.SMTPAuthenticationError as err:
            self.add(
                ERROR,
                "outbound relay",
                f"{where} refuses the login of {out.username} ({err.code})",
                "check outbound_email.username and outbound_email.password",
            )
            return
        except (aiosmtplib.SMTPException, OSError) as err:
            self.add(
                ERROR,
                "outbound relay",
                f"{where} cannot be used ({type(err).__name__}: {err})",
                "check outbound_email.host, port and security",
            )
            return
        finally:
            client.close()
        self.add(OK, "outbound relay", done)

    async def jitsi(self) -> None:
        """The Jitsi server answers over HTTPS, so the links `!video` posts open."""
        import aiohttp

        jitsi = self.cfg.jitsi
        if jitsi.domain is None:
            self.add(OK, "jitsi", "off (no jitsi.domain: !video is not offered)")
            return
        auth = "token authentication" if jitsi.jwt is not None else "open meetings"
        url = f"https://{jitsi.domain}/"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                http.get(url, allow_redirects=True) as resp,
            ):
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            self.add(
                WARN,
                "jitsi",
                f"{url} does not answer ({type(err).__name__}); {auth}",
                "check jitsi.domain (the server the practice's Jitsi runs on)",
            )
            return
        if status >= 400:
            self.add(WARN, "jitsi", f"{url} answers {status}; {auth}", "check jitsi.domain")
        else:
            self.add(OK, "jitsi", f"{url} answers; {auth}")


def _num(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)


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
