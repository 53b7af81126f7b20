"""The e-mail channel outwards: which room events go to the patient by e-mail, her consent
to the channel, and the audit entries of both (policy only, no I/O).

A therapist's message in the pair room goes to the patient's address only while she has
agreed to e-mail for that address, to the practice's text on what e-mail does and does not
protect. Commands, the bot's notices and whatever the bot relayed from e-mail never go out.
The audit holds the recipient's digest, the Message-ID and sizes in clear, and the mail as
it left sealed (its media reference in the sealed content).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.core.audit import message_content
from bridge.core.model import MATRIX, AppendAudit, Effect, Kind, Role, RoomEvent, SendMessage

#: Consent states (`email_consent.state`); no row means never asked.
ASKED = "asked"
GIVEN = "given"
REVOKED = "revoked"

#: Who the channel's own audit entries are from.
ACTOR = "confidant:email"

#: Mail kinds (`outbound_emails.kind`).
REPLY = "reply"
CORRECTION = "correction"
#: A file, image, audio, video or voice message, attached to the mail as it came.
ATTACHMENT = "attachment"
CONSENT = "consent"
#: The welcome of an e-mail pair: the practice's text on e-mail, answered with YES.
WELCOME = "welcome"
#: Mails that ask for consent (sent while it is asked, answered with YES).
ASKING_KINDS = frozenset({CONSENT, WELCOME})

#: The patient of an e-mail pair has no Matrix account: the pair names her by this prefix
#: and her address's digest, which no Matrix user id can equal.
EMAIL_PATIENT_PREFIX = "email:"

SENT_ACTION = "email.sent"
WITHHELD_ACTION = "email.withheld"
FAILED_ACTION = "email.failed"
CONSENT_ASKED_ACTION = "email.consent_asked"
CONSENT_GIVEN_ACTION = "email.consent_given"
CONSENT_REVOKED_ACTION = "email.consent_revoked"
KEY_ADDED_ACTION = "email.key_added"
#: A delivery report (RFC 3464) about a sent mail: it did not arrive, or it is late.
BOUNCED_ACTION = "email.bounced"
DELAYED_ACTION = "email.delayed"

#: What the sealed content of an "email.sent" entry is (`message_content`'s msgtype).
SENT_MSGTYPE = "email_out"
SENT_FILENAME = "sent.eml"
#: What the sealed content of an "email.bounced" or "email.delayed" entry is: the report's
#: diagnostic as its body, the report itself as its media.
REPORT_MSGTYPE = "email_report"
REPORT_FILENAME = "report.eml"

#: The `Action` of a delivery report's recipient block that is recorded (RFC 3464 2.3.3);
#: "delivered", "relayed" and "expanded" change nothing.
REPORT_FAILED = "failed"
REPORT_DELAYED = "delayed"
#: The pair room's notice when a mail did not arrive (`messages/email_bounced.txt.j2`).
BOUNCED_TEMPLATE = "email_bounced"

#: Room messages whose file goes as the mail's attachment.
ATTACHED_KINDS = frozenset({Kind.IMAGE, Kind.FILE, Kind.AUDIO, Kind.VOICE, Kind.VIDEO})
#: The largest attachment sent by e-mail; common relays refuse mail over 25 MB.
MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024

_WORDS = re.compile(r"[^\w\s]", re.UNICODE)
#: First lines of a reply that agree to e-mail (a reply to the consent e-mail only).
YES_WORDS = frozenset({"yes", "i agree", "agree", "yes i agree"})
#: First lines that stop e-mail, in any reply to the pair's address.
STOP_WORDS = frozenset({"stop", "unsubscribe"})


def address_digest(address: str) -> str:
    """The SHA-256 (hex) of an address, lower-cased: what is kept where only a match matters."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def email_patient_id(address: str) -> str:
    """The patient id of an e-mail pair (no Matrix account): one per address."""
    return EMAIL_PATIENT_PREFIX + address_digest(address)[:32]


def is_email_patient(patient_id: str) -> bool:
    return patient_id.startswith(EMAIL_PATIENT_PREFIX)


def welcome_key(pair_id: str) -> str:
    """What the welcome e-mail of an e-mail pair is queued under (and its Message-ID made of)."""
    return f"welcome.{pair_id}"


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID of the mail for `key` (a Matrix event id): fixed, so a mail sent again
    after a crash is the same message; it carries no part of the event id itself."""
    digest = hashlib.sha256(b"confidant/email-out/" + key.encode("utf-8")).hexdigest()[:32]
    return f"<out.{digest}@{domain}>"


def outbound_kind(ev: RoomEvent) -> str | None:
    """What mail a pair-room event becomes, or None when it stays in the room.

    Only the therapist's own messages written in the room; an edit becomes a correction,
    a file or voice message a mail with it attached.
    """
    if ev.channel != MATRIX or ev.role is not Role.THERAPIST or ev.command:
        return None
    if ev.kind in (Kind.TEXT, Kind.EMOTE):
        return REPLY
    if ev.kind is Kind.EDIT and ev.relates_to:
        return CORRECTION
    if ev.kind in ATTACHED_KINDS:
        return ATTACHMENT
    return None


def may_send(state: str | None, consented_address: str | None, address: str | None) -> bool:
    """Consent is given, for the address the pair has now."""
    return (
        state == GIVEN
        and address is not None
        and consented_address is not None
        and consented_address == address_digest(address)
    )


def reply_word(first_line: str) -> str | None:
    """GIVEN or REVOKED when a reply's first line says yes or stop, else None."""
    words = " ".join(_WORDS.sub(" ", first_line).casefold().split())
    if words in STOP_WORDS:
        return REVOKED
    if words in YES_WORDS:
        return GIVEN
    return None


def first_line(text: str) -> str:
    """The first non-empty line of a mail's text."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# ---------------------------------------------------------------- audit entries


def sent(
    pair_id: str,
    event_id: str,
    *,
    kind: str,
    recipient: str,
    message_id: str,
    in_reply_to: str | None,
    size: int,
    text_bytes: int,
    body: str,
    subject: str,
    media_ref: str,
    key_fingerprint: str | None = None,
) -> AppendAudit:
    """The mail left through the relay (encrypted to `key_fingerprint` when one is given);
    the text and the mail as sent are sealed."""
    details: dict[str, Any] = {
        "kind": kind,
        "recipient_sha256": address_digest(recipient),
        "message_id": message_id,
        "bytes": size,
        "text_bytes": text_bytes,
        "encrypted": key_fingerprint is not None,
    }
    if key_fingerprint is not None:
        details["key_fingerprint"] = key_fingerprint
    if in_reply_to:
        details["in_reply_to"] = in_reply_to
    content = message_content(
        SENT_MSGTYPE,
        body,
        subject=subject,
        filename=SENT_FILENAME,
        mimetype="message/rfc822",
        media_ref=media_ref,
    )
    return AppendAudit(pair_id, SENT_ACTION, ACTOR, details, event_id=event_id, content=content)


def withheld(pair_id: str, event_id: str, kind: str, reason: str) -> AppendAudit:
    """A queued mail that will not go (consent withdrawn, the address changed, ...)."""
    return AppendAudit(
        pair_id,
        WITHHELD_ACTION,
        ACTOR,
        {"kind": kind, "reason": reason},
        event_id=event_id,
        outcome="refused",
    )


def failed(pair_id: str, event_id: str, kind: str, reason: str) -> AppendAudit:
    """A queued mail given up (the relay refused it for good, its text is gone)."""
    return AppendAudit(
        pair_id,
        FAILED_ACTION,
        ACTOR,
        {"kind": kind, "reason": reason},
        event_id=event_id,
        outcome="failed",
    )


@dataclass(frozen=True, slots=True)
class DeliveryReportFacts:
    """A delivery report that came back to a sent mail's own return path, with that mail.

    `recipient` and `diagnostic` come from the report: the first is kept as a digest, the
    second sealed; neither goes into a notice.
    """

    pair_id: str
    #: The room event (or command) the mail was for, and the mail's kind and Message-ID.
    event_id: str
    kind: str
    message_id: str
    #: The report's recipient block: its Action and RFC 3463 status ("5.1.1").
    action: str
    status: str
    #: When the mail left (when it was queued, for one not recorded as sent yet: a report
    #: that came before the commit after a crash).
    sent_at: datetime
    #: Where the therapist is told; None when the pair no longer has a room to tell in.
    room_id: str | None
    #: The time zone the notice gives the time in (the practice's).
    timezone: str
    #: The sealed report (`media_ref` of the audit's media store).
    media_ref: str
    recipient: str = field(default="", repr=False)
    diagnostic: str = field(default="", repr=False)


def bounce_reason(status: str) -> str:
    """What a failed mail's status code means, as the notice says it: `address` (no such
    address or domain), `mailbox_full`, `mailbox` (disabled, not taking mail), `refused`
    (her server's policy: spam filter, security), `expired` (a server gave up after
    retrying: the code is a temporary one) or `other`."""
    klass, _, rest = status.partition(".")
    subject, _, detail = rest.partition(".")
    if klass == "4":
        return "expired"
    if subject == "1":
        return "address"
    if subject == "2":
        return "mailbox_full" if detail == "2" else "mailbox"
    if subject == "7":
        return "refused"
    return "other"


def delivery_reported(report: DeliveryReportFacts) -> list[Effect]:
    """What a delivery report about one of our mails does.

    A failure is audited and the pair room is told (the therapist learns her answer did
    not reach the patient: when it was written and the status, never her address or the
    subject); a delay is audited and tells nobody, since the mail may still arrive;
    anything else (delivered, relayed) does nothing.
    """
    if report.action not in (REPORT_FAILED, REPORT_DELAYED):
        return []
    failed_now = report.action == REPORT_FAILED
    details: dict[str, Any] = {
        "kind": report.kind,
        "message_id": report.message_id,
        "status": report.status,
    }
    if report.recipient:
        details["recipient_sha256"] = address_digest(report.recipient)
    content = message_content(
        REPORT_MSGTYPE,
        report.diagnostic,
        filename=REPORT_FILENAME,
        mimetype="message/rfc822",
        media_ref=report.media_ref,
    )
    effects: list[Effect] = [
        AppendAudit(
            report.pair_id,
            BOUNCED_ACTION if failed_now else DELAYED_ACTION,
            ACTOR,
            details,
            event_id=report.event_id,
            content=content,
            outcome="failed" if failed_now else "deferred",
        )
    ]
    if failed_now and report.room_id is not None:
        local = report.sent_at.astimezone(ZoneInfo(report.timezone))
        effects.append(
            SendMessage(
                room_id=report.room_id,
                template=BOUNCED_TEMPLATE,
                context={
                    "kind": report.kind,
                    "sent_at_local": local.isoformat(),
                    "timezone": report.timezone,
                    "status": report.status,
                    "reason": bounce_reason(report.status),
                },
                txn_id=f"email-bounce.{report.event_id}",
                pair_id=report.pair_id,
            )
        )
    return effects


def consent_asked(
    pair_id: str, actor: str, *, text_sha256: str, message_id: str, event_id: str
) -> AppendAudit:
    return AppendAudit(
        pair_id,
        CONSENT_ASKED_ACTION,
        actor,
        {"consent_sha256": text_sha256, "message_id": message_id},
        event_id=event_id,
    )


def consent_given(
    pair_id: str, actor: str, *, via: str, text_sha256: str, address: str, event_id: str | None
) -> AppendAudit:
    """She agreed (`via` "room" or "email") to the text with this digest, for this address."""
    return AppendAudit(
        pair_id,
        CONSENT_GIVEN_ACTION,
        actor,
        {"via": via, "consent_sha256": text_sha256, "recipient_sha256": address_digest(address)},
        event_id=event_id,
    )


def consent_revoked(pair_id: str, actor: str, *, via: str, event_id: str | None) -> AppendAudit:
    return AppendAudit(pair_id, CONSENT_REVOKED_ACTION, actor, {"via": via}, event_id=event_id)


def key_added(pair_id: str, actor: str, fingerprint: str) -> AppendAudit:
    """The patient's OpenPGP public key is on file: mail to her is encrypted to it."""
    return AppendAudit(pair_id, KEY_ADDED_ACTION, actor, {"fingerprint": fingerprint})
