"""Invitations: create, send, resend, revoke, and follow them to a pair (see the package)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bridge.adapters.mailer import Mailer, MailError
from bridge.adapters.matrix.rest import MatrixError
from bridge.core.invitations import (
    invitation_closed,
    invitation_created,
    invitation_entry,
    invitation_sent,
    invitation_used,
)
from bridge.core.model import SendEmail
from bridge.features.onboarding.matching import UsedToken, match_accounts
from bridge.features.onboarding.registration import invitation_refusal
from bridge.features.onboarding.synapse_admin import SynapseAdminApi
from bridge.features.onboarding.throttle import next_send
from bridge.ports import DEFAULT_VALIDITY, Invited, OnboardingError, ResendLimited
from bridge.provision import PairError
from bridge.store import invitations, languages, pairs, therapists
from bridge.store.base import to_ms
from bridge.store.invitations import InvitationRecord, InvitationStatus

if TYPE_CHECKING:
    from bridge.parts import Parts

log = logging.getLogger(__name__)

#: An account is created a moment before its token counts as used (same request):
#: accounts this much older than the last "unused" observation still qualify.
REGISTRATION_SLACK_MS = 10_000


def _floor_second(ms: int) -> int:
    return ms - ms % 1000


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
                tx, invitation_entry(action, self.actor, details, pair_id), now
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
        record = await self.create(
            email, therapist, now, name=name, policy=policy, valid_for=valid_for
        )
        if self.mailer is not None:
            await self.send(record, now)
        return await self.get(record.invitation_id)

    async def create(
        self,
        email: str,
        therapist: str,
        now: datetime,
        *,
        name: str | None = None,
        policy: str = "default",
        valid_for: timedelta = DEFAULT_VALIDITY,
        language: str | None = None,
    ) -> InvitationRecord:
        """Make the token and store the invitation (audited), without e-mailing it.

        `language` is the invitation e-mail's and, once her account appears, the patient's
        (until she picks another); None: the practice's. Raises OnboardingError
        (AdminUnavailable) with what to do instead.
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
                sealer=self.parts.sealer,
                email=email,
                therapist_id=therapist,
                token=token,
                now=to_ms(now),
                expires_at=to_ms(expires_at),
                name=name,
                policy=policy,
                prior_accounts=prior,
            )
            if language is not None:
                await languages.set_invitation_language(tx, record.invitation_id, language)
            await self.parts.audit.append(
                tx,
                invitation_created(record.invitation_id, self.actor, therapist, to_ms(expires_at)),
                now,
            )
        log.info("invitation created", extra={"invitation_id": record.invitation_id})
        return record

    async def get(self, ref: str) -> InvitationRecord:
        record = await invitations.get(self.db, ref, self.parts.sealer)
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
            # What the template writes in the e-mail's language.
            "expires_at_local": expires.isoformat(),
            "timezone": self.cfg.practice.timezone,
            "crisis_line": self.cfg.practice.crisis_line or "",
            "reminder": reminder,
        }

    async def send(self, record: InvitationRecord, now: datetime) -> None:
        """E-mail the invitation (again); raises OnboardingError when e-mail is off, and
        ResendLimited when it went out too often lately (see `throttle`)."""
        if self.mailer is None:
            raise OnboardingError(
                "outbound_email is not enabled: give the patient the invitation code yourself"
            )
        if record.token is None:
            raise OnboardingError(f"invitation {record.invitation_id} is {record.status.value}")
        await self._claim_send(record, to_ms(now))
        effect = SendEmail(
            record.email,
            "invitation",
            self.email_context(record, reminder=record.sent_count > 0),
            language=await languages.of_invitation(self.db, record.invitation_id),
        )
        await self.mailer.send(effect)
        async with self.db.transaction() as tx:
            await invitations.mark_sent(tx, record.invitation_id, to_ms(now))
            await self.parts.audit.append(
                tx,
                invitation_sent(record.invitation_id, self.actor, record.sent_count + 1),
                now,
            )

    async def _claim_send(self, record: InvitationRecord, now_ms: int) -> None:
        """Take the slot for one more e-mail, or refuse: concurrent resends race on the
        stored list of recent sends, and only one of them wins each slot."""
        seen = record.recent_sends
        while True:
            slot = next_send(seen, now_ms)
            if slot.wait_ms > 0:
                wait_s = -(-slot.wait_ms // 1000)
                raise ResendLimited(
                    f"invitation {record.invitation_id} was e-mailed too often lately "
                    f"({slot.reason}); try again in {wait_s} s",
                    wait_s,
                )
            async with self.db.transaction() as tx:
                if await invitations.claim_send(tx, record.invitation_id, seen, slot.sends):
                    return
            current = await self.get(record.invitation_id)
            seen = current.recent_sends

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
        if record.token is not None:
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
                    invitation_closed(record.invitation_id, self.actor, status.value),
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
        pending = await invitations.list_invitations(
            self.db, status=InvitationStatus.PENDING, sealer=self.parts.sealer
        )
        if not pending:
            return result
        used: list[tuple[InvitationRecord, UsedToken]] = []
        asked_at = to_ms(self.clock())
        # The homeserver lists its codes; an invitation knows its own by digest.
        tokens = {
            invitations.token_digest(token): (token, info)
            for token, info in (await self.admin.all_tokens()).items()
        }
        seen_at = to_ms(self.clock())
        for record in pending:
            if record.patient_id is not None:
                # Matched before, but the pair was not finished: finish it now.
                await self._finish(record, record.patient_id, self.clock())
                result.matched.append((record, record.patient_id))
                continue
            token, info = tokens.get(record.token_sha256, (None, None))
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
                if token is not None:
                    await self.admin.delete_token(token)
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
            if record.token is not None:
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
                    invitation_used(record.invitation_id, self.actor, pair.pair_id, user_id),
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
        if record.status is InvitationStatus.PENDING and record.token is not None:
            with contextlib.suppress(MatrixError):
                await self.admin.delete_token(record.token)
        return await self.get(record.invitation_id)


async def refuse_unless_codes_work(onboarding: Onboarding) -> None:
    """Raise OnboardingError before any code is made when the homeserver would not take it
    (registration off, or not asking for tokens): the patient would meet a dead end."""
    hs = onboarding.cfg.homeserver
    refusal = await invitation_refusal(hs.url, verify_tls=hs.verify_tls)
    if refusal is not None:
        raise OnboardingError(refusal)


async def invite_patient(
    onboarding: Onboarding,
    email: str,
    therapist: str,
    now: datetime,
    *,
    name: str | None = None,
    policy: str = "default",
    valid_for: timedelta = DEFAULT_VALIDITY,
    language: str | None = None,
) -> Invited:
    """Invite a patient, as `confidant invite` and POST /api/v1/invitations do.

    The invitation is stored first and e-mailed second (when `onboarding` has a mailer), so
    a relay failure never loses it: the answer then carries the error, and the invitation
    can be sent again with `resend`. Raises OnboardingError with what to do instead.
    """
    await refuse_unless_codes_work(onboarding)
    record = await onboarding.create(
        email, therapist, now, name=name, policy=policy, valid_for=valid_for, language=language
    )
    if onboarding.mailer is None:
        return Invited(await onboarding.get(record.invitation_id), email_sent=False)
    try:
        await onboarding.send(record, now)
    except MailError as err:
        return Invited(await onboarding.get(record.invitation_id), False, str(err))
    return Invited(await onboarding.get(record.invitation_id), email_sent=True)
