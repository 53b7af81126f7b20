"""Voice messages queued for the running bridge, which alone holds the E2EE device.

`confidant voice send` and the admin API convert the audio and queue a job; the Ogg itself
is sealed in the audit media store, named by its SHA-256 (`media_ref`). The bridge posts
each pending job and finishes it in the post's transaction, so a job is posted once.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.store.base import Executor, Row
from bridge.store.rows import integer, integer_or_none, json_list, text, text_or_none, to_int


class VoiceJobStatus(enum.StrEnum):
    """Where a queued voice message is in its life."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class VoiceJob:
    """One queued voice message (times in ms since the epoch)."""

    job_id: str
    pair_id: str
    #: Hex SHA-256 of the Ogg in the audit media store.
    media_ref: str
    duration_ms: int
    size: int
    #: 100 values 0..1024, as the voice message shows them.
    waveform: tuple[int, ...]
    actor: str
    created_at: int
    status: VoiceJobStatus
    done_at: int | None
    error: str | None


_COLUMNS = (
    "job_id, pair_id, media_ref, duration_ms, size, waveform, actor, created_at, status,"
    " done_at, error"
)


def _job(row: Row) -> VoiceJob:
    return VoiceJob(
        job_id=text(row, "job_id"),
        pair_id=text(row, "pair_id"),
        media_ref=text(row, "media_ref"),
        duration_ms=integer(row, "duration_ms"),
        size=integer(row, "size"),
        waveform=tuple(to_int(v, "waveform") for v in json_list(text(row, "waveform"), "waveform")),
        actor=text(row, "actor"),
        created_at=integer(row, "created_at"),
        status=VoiceJobStatus(text(row, "status")),
        done_at=integer_or_none(row, "done_at"),
        error=text_or_none(row, "error"),
    )


async def add(
    ex: Executor,
    *,
    job_id: str,
    pair_id: str,
    media_ref: str,
    duration_ms: int,
    size: int,
    waveform: Sequence[int],
    actor: str,
    now: int,
) -> None:
    """Queue a voice message whose Ogg is already in the audit media store."""
    await ex.execute(
        "INSERT INTO voice_jobs (job_id, pair_id, media_ref, duration_ms, size, waveform,"
        " actor, created_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
        job_id,
        pair_id,
        media_ref,
        duration_ms,
        size,
        json.dumps(list(waveform)),
        actor,
        now,
    )


async def pending(ex: Executor) -> list[VoiceJob]:
    """Jobs not posted yet, oldest first."""
    rows = await ex.fetch(
        f"SELECT {_COLUMNS} FROM voice_jobs WHERE status = 'pending' ORDER BY created_at, job_id"
    )
    return [_job(row) for row in rows]


async def get(ex: Executor, job_id: str) -> VoiceJob | None:
    """One job, whatever its status."""
    row = await ex.fetchrow(f"SELECT {_COLUMNS} FROM voice_jobs WHERE job_id = ?", job_id)
    return None if row is None else _job(row)


async def finish(
    ex: Executor, job_id: str, status: VoiceJobStatus, now: int, error: str | None
) -> bool:
    """Mark a pending job sent or failed; False when it was no longer pending."""
    changed = await ex.execute(
        "UPDATE voice_jobs SET status = ?, done_at = ?, error = ?"
        " WHERE job_id = ? AND status = 'pending'",
        VoiceJobStatus(status).value,
        now,
        error,
        job_id,
    )
    return changed == 1
