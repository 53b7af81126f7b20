"""Languages: the one each person reads the bot's texts in, and each invitation's."""

from __future__ import annotations

from bridge.store.base import Executor
from bridge.store.pairs import email_digest

# A patient without a language of her own reads in the one her invitation was made with.
_OF_USER = (
    "SELECT 0 AS rank, language FROM languages WHERE user_id = ? "
    "UNION ALL "
    "SELECT 1 AS rank, il.language FROM invitations i "
    "JOIN invitation_languages il ON il.invitation_id = i.invitation_id "
    "WHERE i.patient_id = ? "
    "ORDER BY rank LIMIT 1"
)


async def set_language(ex: Executor, user_id: str, language: str | None, *, now: int) -> None:
    """Record a person's language; None returns them to the practice's."""
    if language is None:
        await ex.execute("DELETE FROM languages WHERE user_id = ?", user_id)
        return
    await ex.execute(
        "INSERT INTO languages (user_id, language, set_at) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET language = excluded.language, "
        "set_at = excluded.set_at",
        user_id,
        language,
        now,
    )


async def of_user(ex: Executor, user_id: str) -> str | None:
    """A person's own language (or her invitation's), None for the practice's."""
    row = await ex.fetchrow(_OF_USER, user_id, user_id)
    return None if row is None else str(row["language"])


async def reader_of_room(ex: Executor, room_id: str) -> str | None:
    """Who reads the bot's texts in a room: a pair room's patient, a desk room's owner."""
    row = await ex.fetchrow(
        "SELECT patient_id AS user_id FROM pairs WHERE room_id = ? "
        "UNION ALL SELECT user_id FROM therapists WHERE desk_room_id = ?",
        room_id,
        room_id,
    )
    return None if row is None else str(row["user_id"])


async def of_room(ex: Executor, room_id: str) -> str | None:
    """The language the bot's texts in a room are written in, None for the practice's."""
    reader = await reader_of_room(ex, room_id)
    return None if reader is None else await of_user(ex, reader)


async def of_address(ex: Executor, address: str) -> str | None:
    """The language of whoever an e-mail goes to: a therapist's or a patient's address."""
    # A patient's address is sealed: found by the digest of its lower-cased form.
    row = await ex.fetchrow(
        "SELECT 0 AS rank, user_id FROM therapists WHERE lower(email) = lower(?) "
        "UNION ALL SELECT 1 AS rank, patient_id FROM pairs "
        "WHERE patient_email_sha256 = ? AND status <> 'removed' "
        "ORDER BY rank LIMIT 1",
        address,
        email_digest(address),
    )
    return None if row is None else await of_user(ex, str(row["user_id"]))


async def set_invitation_language(ex: Executor, invitation_id: str, language: str) -> None:
    await ex.execute(
        "INSERT INTO invitation_languages (invitation_id, language) VALUES (?, ?) "
        "ON CONFLICT (invitation_id) DO UPDATE SET language = excluded.language",
        invitation_id,
        language,
    )


async def of_invitation(ex: Executor, invitation_id: str) -> str | None:
    value = await ex.fetchval(
        "SELECT language FROM invitation_languages WHERE invitation_id = ?", invitation_id
    )
    return None if value is None else str(value)
