"""Onboarding: invite a patient by e-mail with a single-use registration token, and create
the pair once the account registered with it appears.

Synapse counts a token's completed registrations but keeps no record of *which* account
used it. The link is made from two server-side facts: the moment the token's `completed`
count went from 0 to 1 (between two polls) and the accounts the homeserver created in
that interval (`creation_ts`, whole seconds). Accounts the bridge already knows (the bot,
therapists, patients, accounts matched before), admins, guests and typed accounts are left
out. An invitation is matched only when exactly one account fits it and that account fits
no other used invitation; otherwise it becomes `unmatched` and the operator matches it by
hand (`confidant invite match ID @user:server`). Polls a few seconds apart make the
ambiguous case rare: it needs two invitations used, or an account created by an
administrator, within the same few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bridge.adapters.mailer import Mailer, MailError
from bridge.adapters.matrix.rest import MatrixError, MatrixRest, q
from bridge.core.model import AppendAudit, SendEmail
from bridge.ports import DEFAULT_VALIDITY, AdminUnavailable, Invited, OnboardingError
from bridge.provision import PairError
from bridge.store import invitations, pairs, therapists
from bridge.store.base import to_ms
from bridge.store.invitations import InvitationRecord, InvitationStatus

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.parts import Parts
    from bridge.service import Service

log = logging.getLogger(__name__)

#: How often the running bridge looks for new accounts.
POLL_INTERVAL_S = 10.0
#: An account is created a moment before its token counts as used (same request):
#: accounts this much older than the last "unused" observation still qualify.
REGISTRATION_SLACK_MS = 10_000
#: Characters of an invitation code: upper case and digits without look-alikes.
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_ADMIN = "/_synapse/admin"
_PAGE = 100


def new_code() -> str:
    """A registration token that is easy to type: XXXX-XXXX-XXXX-XXXX (80 bits)."""
    chars = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


def _floor_second(ms: int) -> int:
    return ms - ms % 1000


class SynapseAdminApi:
    """The few Synapse admin calls onboarding needs (registration tokens, new users)."""

    def __init__(self, rest: MatrixRest, access_token: str | None) -> None:
        self.rest = rest
        self.access_token = access_token

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if not self.access_token:
            raise AdminUnavailable(
                "set synapse_admin.access_token (an admin's access token) to invite by "
                "e-mail; without it, create a single-use registration token on the "
                "homeserver by hand, send it to the patient, then run `confidant pair add`"
            )
        try:
            return await self.rest.request(
                method, _ADMIN + path, body, params=params, token=self.access_token
            )
        except MatrixError as err:
            if err.errcode == "M_UNRECOGNIZED" or (err.status == 404 and not err.errcode):
                raise AdminUnavailable(
                    "the homeserver has no Synapse admin API: create a single-use "
                    "registration token there by hand, send it to the patient, then run "
                    "`confidant pair add` once the account exists"
                ) from None
            if err.status in (401, 403) and err.errcode in (
                "M_FORBIDDEN",
                "M_UNKNOWN_TOKEN",
                "M_MISSING_TOKEN",
            ):
                raise AdminUnavailable(
                    "synapse_admin.access_token is not a valid token of a server admin "
                    "(make one with an admin account's login)"
                ) from None
            raise

    async def create_token(self, expires_at_ms: int) -> str:
        """A new single-use token valid until `expires_at_ms`."""
        for _ in range(5):
            code = new_code()
            try:
                data = await self._call(
                    "POST",
                    "/v1/registration_tokens/new",
                    {"token": code, "uses_allowed": 1, "expiry_time": expires_at_ms},
                )
            except MatrixError as err:
                if err.status == 400 and "already exists" in str(err):
                    continue
                raise
            return str(data["token"])
        raise OnboardingError("could not find a free invitation code; try again")

    async def token_info(self, token: str) -> dict[str, Any] | None:
        """The token's counters and expiry, or None when the homeserver has no such token."""
        try:
            return await self._call("GET", f"/v1/registration_tokens/{q(token)}")
        except MatrixError as err:
            if err.errcode == "M_NOT_FOUND":
                return None
            raise

    async def all_tokens(self) -> dict[str, dict[str, Any]]:
        """Every registration token on the homeserver, by token (one request)."""
        data = await self._call("GET", "/v1/registration_tokens")
        return {str(t["token"]): t for t in data.get("registration_tokens", [])}

    async def delete_token(self, token: str) -> bool:
        """Delete the token; False when it was already gone."""
        try:
            await self._call("DELETE", f"/v1/registration_tokens/{q(token)}")
        except MatrixError as err:
            if err.errcode == "M_NOT_FOUND":
                return False
            raise
        return True

    async def users_created_since(self, since_ms: int) -> list[dict[str, Any]]:
        """Local, non-admin, non-guest, active accounts created at or after `since_ms`."""
        found: list[dict[str, Any]] = []
        start = 0
        while True:
            data = await self._call(
                "GET",
                "/v2/users",
                params={
                    "from": str(start),
                    "limit": str(_PAGE),
                    "order_by": "creation_ts",
                    "dir": "b",
                    "guests": "false",
                    "admins": "false",
                },
            )
            users = data.get("users", [])
            for user in users:
                created = user.get("creation_ts")
                if created is None or int(created) < since_ms:
                    return found
                found.append(user)
            if "next_token" not in data or not users:
                return found
            start = int(data["next_token"])


# ---------------------------------------------------------------- matching (pure)


@dataclass(frozen=True, slots=True)
class UsedToken:
    """An invitation whose token was seen used, with the interval its account was made in."""

    invitation_id: str
    earliest_ms: int
    latest_ms: int
    #: Accounts known to predate the token (made in the same second, before it).
    excluded: frozenset[str] = frozenset()


def match_accounts(used: list[UsedToken], accounts: dict[str, int]) -> dict[str, str | None]:
    """Pair each used invitation with the one account that can only be its own.

    `accounts` maps candidate user ids to their creation time (ms). An invitation gets an
    account when exactly one candidate falls in its interval and that candidate falls in
    no other open invitation's interval; matching one may settle another, so this repeats.
    The rest map to None (the operator decides).
    """
    fits = {
        u.invitation_id: {
            user
            for user, created in accounts.items()
            if u.earliest_ms <= created <= u.latest_ms and user not in u.excluded
        }
        for u in used
    }
    result: dict[str, str | None] = {}
    progress = True
    while progress:
        progress = False
        for inv, users in fits.items():
            if inv in result or len(users) != 1:
                continue
            (user,) = users
            if any(user in others for other, others in fits.items() if other != inv):
                continue
            result[inv] = user
            for other, others in fits.items():
                if other != inv:
                    others.discard(user)
            progress = True
    for inv in fits:
        result.setdefault(inv, None)
    return result


# ---------------------------------------------------------------- service


@dataclass
class CheckResult:
    """What one look at the homeserver found."""

    matched: list[tuple[InvitationRecord, str]] = field(default_factory=list)
    unmatched: list[InvitationRecord] = field(default_factory=list)
    expired: list[InvitationRecord] = field(default_factory=list)


class Onboarding:
    """Invitations: create, send, resend, revoke, and follow them to a pair."""

    def __init__(
        self,
        parts: Parts,
        mailer: Mailer | None,
        *,
        actor: str = "admin",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.parts = parts
        self.cfg = parts.cfg
        self.db = parts.db
        self.mailer = mailer
        self.actor = actor
        self.clock = clock
        token = parts.cfg.synapse_admin.access_token
        self.admin = SynapseAdminApi(parts.rest, token.get_secret_value() if token else None)

    async def _audit(
        self, action: str, details: dict[str, Any], now: datetime, pair_id: str | None = None
    ) -> None:
        async with self.db.transaction() as tx:
            await self.parts.audit.append(
                tx, AppendAudit(pair_id, action, self.actor, details), now
            )

    # ------------------------------------------------------------ invitations

    async def invite(
        self,
        email: str,
        therapist: str,
        now: datetime,
        *,
        name: str | None = None,
        policy: str = "default",
        valid_for: timedelta = DEFAULT_VALIDITY,
    ) -> InvitationRecord:
        """Make the token, store the invitation and e-mail it (when outbound e-mail is on).

        Raises OnboardingError (AdminUnavailable) with what to do instead; a failed
        e-mail raises MailError after the invitation is stored (resend it later).
        """
        if policy not in self.cfg.policies:
            known = ", ".join(sorted(self.cfg.policies))
            raise OnboardingError(f"unknown policy {policy!r} (policies: {known})")
        if "@" not in email or any(c.isspace() for c in email):
            raise OnboardingError(f"{email!r} is not an e-mail address")
        record_t = await therapists.get(self.db, therapist)
        if record_t is None:
            raise OnboardingError(
                f"{therapist} is not a therapist here; add them first with "
                "`confidant therapist add`"
            )
        expires_at = now + valid_for
        token = await self.admin.create_token(to_ms(expires_at))
        # Accounts made in this same second predate the token but share its timestamp.
        prior = frozenset(
            str(user["name"])
            for user in await self.admin.users_created_since(_floor_second(to_ms(now)))
        )
        async with self.db.transaction() as tx:
            record = await invitations.create(
                tx,
                email=email,
                therapist_id=therapist,
                token=token,
                now=to_ms(now),
                expires_at=to_ms(expires_at),
                name=name,
                policy=policy,
                prior_accounts=prior,
            )
            await self.parts.audit.append(
                tx,
                AppendAudit(
                    None,
                    "invitation.created",
                    self.actor,
                    {
                        "invitation_id": record.invitation_id,
                        "therapist": therapist,
                        "expires_at": to_ms(expires_at),
                    },
                ),
                now,
            )
        log.info("invitation created", extra={"invitation_id": record.invitation_id})
        if self.mailer is not None:
            await self.send(record, now)
        return await self.get(record.invitation_id)

    async def get(self, ref: str) -> InvitationRecord:
        record = await invitations.get(self.db, ref)
        if record is None:
            raise OnboardingError(f"no invitation {ref!r} (see `confidant invite list`)")
        return record

    def email_context(self, record: InvitationRecord, *, reminder: bool) -> dict[str, Any]:
        tz = ZoneInfo(self.cfg.practice.timezone)
        expires = datetime.fromtimestamp(record.expires_at / 1000, UTC).astimezone(tz)
        return {
            "practice_name": self.cfg.practice.name,
            "name": record.name or "",
            "web_client_url": self.cfg.practice.web_client_url,
            "server_name": self.cfg.homeserver.server_name,
            "code": record.token,
            "expires_at": f"{expires:%d %B %Y, %H:%M} ({self.cfg.practice.timezone})",
            "crisis_line": self.cfg.practice.crisis_line or "",
            "reminder": reminder,
        }

    async def send(self, record: InvitationRecord, now: datetime) -> None:
        """E-mail the invitation (again); raises OnboardingError when e-mail is off."""
        if self.mailer is None:
            raise OnboardingError(
                "outbound_email is not enabled: give the patient the invitation code yourself"
            )
        effect = SendEmail(
            record.email, "invitation", self.email_context(record, reminder=record.sent_count > 0)
        )
        await self.mailer.send(effect)
        async with self.db.transaction() as tx:
            await invitations.mark_sent(tx, record.invitation_id, to_ms(now))
            await self.parts.audit.append(
                tx,
                AppendAudit(
                    None,
                    "invitation.sent",
                    self.actor,
                    {"invitation_id": record.invitation_id, "count": record.sent_count + 1},
                ),
                now,
            )

    async def resend(self, ref: str, now: datetime) -> InvitationRecord:
        """Send a pending invitation's e-mail again (same code, same expiry)."""
        record = await self.get(ref)
        if record.status is not InvitationStatus.PENDING:
            raise OnboardingError(f"invitation {record.invitation_id} is {record.status.value}")
        if now >= datetime.fromtimestamp(record.expires_at / 1000, UTC):
            raise OnboardingError(
                f"invitation {record.invitation_id} has expired; invite the patient again"
            )
        await self.send(record, now)
        return await self.get(record.invitation_id)

    async def revoke(self, ref: str, now: datetime) -> InvitationRecord:
        """Withdraw a pending invitation: its token is deleted on the homeserver."""
        record = await self.get(ref)
        if record.status is not InvitationStatus.PENDING:
            raise OnboardingError(f"invitation {record.invitation_id} is {record.status.value}")
        await self.admin.delete_token(record.token)
        await self._close(record, InvitationStatus.REVOKED, now)
        return await self.get(record.invitation_id)

    async def _close(
        self, record: InvitationRecord, status: InvitationStatus, now: datetime
    ) -> None:
        async with self.db.transaction() as tx:
            if await invitations.close(tx, record.invitation_id, status, to_ms(now)):
                await self.parts.audit.append(
                    tx,
                    AppendAudit(
                        None,
                        f"invitation.{status.value}",
                        self.actor,
                        {"invitation_id": record.invitation_id},
                    ),
                    now,
                )
        log.info(
            "invitation closed",
            extra={"invitation_id": record.invitation_id, "status": status.value},
        )

    # ------------------------------------------------------------ following up

    async def check(self) -> CheckResult:
        """Look at every pending invitation's token: pair new accounts, expire old codes."""
        result = CheckResult()
        pending = await invitations.list_invitations(self.db, status=InvitationStatus.PENDING)
        if not pending:
            return result
        used: list[tuple[InvitationRecord, UsedToken]] = []
        asked_at = to_ms(self.clock())
        tokens = await self.admin.all_tokens()
        seen_at = to_ms(self.clock())
        for record in pending:
            if record.patient_id is not None:
                # Matched before, but the pair was not finished: finish it now.
                await self._finish(record, record.patient_id, self.clock())
                result.matched.append((record, record.patient_id))
                continue
            info = tokens.get(record.token)
            completed = int(info.get("completed") or 0) if info is not None else 0
            if info is not None and completed >= 1:
                earliest = max(
                    _floor_second(record.created_at),
                    _floor_second(record.unused_seen_at - REGISTRATION_SLACK_MS),
                )
                used.append(
                    (
                        record,
                        UsedToken(record.invitation_id, earliest, seen_at, record.prior_accounts),
                    )
                )
            elif info is None or seen_at >= record.expires_at:
                # Expired, or deleted on the homeserver by someone else: either way dead.
                if info is not None:
                    await self.admin.delete_token(record.token)
                await self._close(record, InvitationStatus.EXPIRED, self.clock())
                result.expired.append(record)
            else:
                async with self.db.transaction() as tx:
                    await invitations.mark_unused_seen(tx, record.invitation_id, asked_at)
        if used:
            await self._match(used, result)
        return result

    async def _known_users(self) -> set[str]:
        known = {self.parts.creds.user_id}
        known.update(t.user_id for t in await therapists.list_therapists(self.db))
        for record in await pairs.list_pairs(self.db):
            known.update((record.patient_id, record.therapist_id))
        known.update(await invitations.claimed_patients(self.db))
        return known

    async def _match(
        self, used: list[tuple[InvitationRecord, UsedToken]], result: CheckResult
    ) -> None:
        since = min(u.earliest_ms for _, u in used)
        known = await self._known_users()
        accounts = {
            str(user["name"]): int(user["creation_ts"])
            for user in await self.admin.users_created_since(since)
            if str(user["name"]) not in known
            and not user.get("user_type")
            and not user.get("deactivated")
            and not user.get("appservice_id")
        }
        matches = match_accounts([u for _, u in used], accounts)
        for record, _ in used:
            user_id = matches[record.invitation_id]
            now = self.clock()
            if user_id is None:
                await self._close(record, InvitationStatus.UNMATCHED, now)
                result.unmatched.append(record)
                log.warning(
                    "invitation used but its account is not certain: match it by hand",
                    extra={"invitation_id": record.invitation_id, "candidates": len(accounts)},
                )
                continue
            await self._claim(record, user_id)
            await self._finish(record, user_id, now)
            result.matched.append((record, user_id))
        # The codes are spent; remove them from the homeserver's list.
        for record, _ in used:
            with contextlib.suppress(MatrixError):
                await self.admin.delete_token(record.token)

    async def _claim(self, record: InvitationRecord, user_id: str) -> None:
        async with self.db.transaction() as tx:
            await invitations.set_patient(tx, record.invitation_id, user_id)

    async def _finish(self, record: InvitationRecord, user_id: str, now: datetime) -> None:
        """Create the pair (idempotent) and mark the invitation used."""
        pair, _ = await self.parts.pairs.add_pair(
            user_id,
            record.therapist_id,
            now,
            policy=record.policy,
            patient_email=record.email,
            actor=self.actor,
        )
        async with self.db.transaction() as tx:
            if await invitations.mark_used(
                tx, record.invitation_id, user_id, pair.pair_id, to_ms(now)
            ):
                await self.parts.audit.append(
                    tx,
                    AppendAudit(
                        pair.pair_id,
                        "invitation.used",
                        self.actor,
                        {"invitation_id": record.invitation_id, "patient": user_id},
                    ),
                    now,
                )
        log.info(
            "invitation used",
            extra={"invitation_id": record.invitation_id, "pair_id": pair.pair_id},
        )

    async def match(self, ref: str, user_id: str, now: datetime) -> InvitationRecord:
        """The operator says which account used an unmatched (or pending) invitation."""
        record = await self.get(ref)
        if record.status not in (InvitationStatus.UNMATCHED, InvitationStatus.PENDING):
            raise OnboardingError(f"invitation {record.invitation_id} is {record.status.value}")
        if not user_id.startswith("@") or ":" not in user_id:
            raise OnboardingError(f"{user_id!r} is not a Matrix user id like @name:server")
        try:
            await self._claim(record, user_id)
            await self._finish(record, user_id, now)
        except PairError as err:
            raise OnboardingError(str(err)) from None
        if record.status is InvitationStatus.PENDING:
            with contextlib.suppress(MatrixError):
                await self.admin.delete_token(record.token)
        return await self.get(record.invitation_id)


# ---------------------------------------------------------------- running bridge


#: Who the invitation desk acts as (the `invitations` port the HTTP API uses).
API_ACTOR = "api"


class ApiInvitations:
    """The invitation use cases with the bridge's mailer at the time of the call, as the API."""

    def __init__(self, app: Host, parts: Parts, service: Service) -> None:
        self.app = app
        self.parts = parts
        self.service = service

    def _onboarding(self) -> Onboarding:
        mailer = self.service.mailer
        return Onboarding(
            self.parts,
            mailer if isinstance(mailer, Mailer) else None,
            actor=API_ACTOR,
            clock=self.service.clock,
        )

    def mail_on(self) -> bool:
        return self._onboarding().mailer is not None

    async def invite(
        self, email: str, therapist: str, *, name: str | None, policy: str, valid_for: timedelta
    ) -> Invited:
        onboarding = self._onboarding()
        mailer, onboarding.mailer = onboarding.mailer, None
        # Stored first, e-mailed second: a relay failure must not lose the invitation.
        record = await onboarding.invite(
            email, therapist, self.service.clock(), name=name, policy=policy, valid_for=valid_for
        )
        if mailer is None:
            return Invited(record, email_sent=False)
        onboarding.mailer = mailer
        try:
            await onboarding.send(record, self.service.clock())
        except MailError as err:
            return Invited(await onboarding.get(record.invitation_id), False, str(err))
        return Invited(await onboarding.get(record.invitation_id), email_sent=True)

    async def resend(self, invitation_id: str) -> InvitationRecord:
        return await self._onboarding().resend(invitation_id, self.service.clock())

    async def revoke(self, invitation_id: str) -> InvitationRecord:
        return await self._onboarding().revoke(invitation_id, self.service.clock())

    async def match(self, invitation_id: str, user_id: str) -> InvitationRecord:
        record = await self._onboarding().match(invitation_id, user_id, self.service.clock())
        # The pair was made outside an event: let the running bridge pick it up.
        await self.service.refresh_rooms()
        if self.app.outbox is not None:
            self.app.outbox.kick()
        return record


async def install_onboarding(app: Host, *, poll_interval: float = POLL_INTERVAL_S) -> None:
    """Offer the invitation use cases (`invitations` port) and follow pending invitations
    while the bridge runs (that needs synapse_admin.access_token)."""
    assert app.parts is not None and app.service is not None
    # Without a token the use cases still answer, with what to do instead.
    app.ports.invitations = ApiInvitations(app, app.parts, app.service)
    if app.cfg.synapse_admin.access_token is None:
        log.info("onboarding off: no synapse_admin.access_token")
        return
    service = app.service
    # The bridge only follows invitations up; the command line sends them.
    onboarding = Onboarding(app.parts, None, actor="onboarding", clock=service.clock)
    task: asyncio.Task[None] | None = None

    async def follow() -> None:
        while True:
            try:
                result = await onboarding.check()
            except Exception as exc:
                log.warning("invitation check failed", extra={"error": type(exc).__name__})
            else:
                if result.matched:
                    await service.refresh_rooms()
                    if service.outbox is not None:
                        service.outbox.kick()
            await asyncio.sleep(poll_interval)

    async def start() -> None:
        nonlocal task
        task = asyncio.create_task(follow(), name="onboarding")

    async def stop() -> None:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_start(start)
    app.on_stop(stop)
