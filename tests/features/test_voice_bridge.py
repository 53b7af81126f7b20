"""Voice in the running bridge, against the real Synapse and real ffmpeg: a patient's voice
note is kept sealed for the audit and lands in the export; `confidant voice send` reaches
the patient as an Element voice message they can decrypt."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import struct
import sys
import wave
import zipfile
from pathlib import Path

import pytest
import yaml
from nio import MemoryDownloadResponse, UploadResponse
from nio.crypto.attachments import decrypt_attachment

from bridge.adapters.voice import VoiceLimits, convert_to_voice, describe_audio
from bridge.app import default_features
from bridge.audit.export import export_pair
from bridge.config import load_config, minimal_config_dict
from bridge.features.voice import install_voice
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing, start_app

pytestmark = pytest.mark.integration

LIMITS = VoiceLimits(max_input_bytes=10_000_000, max_seconds=60)


def tone_wav(seconds: float, rate: int = 16_000) -> bytes:
    """A mono 440 Hz tone as WAV bytes."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buf.getvalue()


@pytest.fixture
async def running(homeserver, make_user, make_nio_user, tmp_path: Path):
    bot = make_user("bot")
    overrides = bridge_config_dict(homeserver, bot.user_id, bot.password, tmp_path / "data")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    # Installed twice on purpose: a second install must not capture media twice.
    features = [*default_features(), install_voice, install_voice]
    app = await start_app(load_config(config_file), features=features)
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock()
    )
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    await therapist.wait_joined(record.room_id, patient.user_id, timeout=20)
    yield app, patient, therapist, record, config_file
    await app.stop()


async def send_voice_note(patient, room_id: str, clip) -> str:
    upload, keys = await patient.client.upload(
        lambda *_: io.BytesIO(clip.ogg), encrypt=True, filesize=clip.size
    )
    assert isinstance(upload, UploadResponse) and keys is not None, upload
    content = {
        "msgtype": "m.audio",
        "body": "Voice message",
        "info": {"mimetype": "audio/ogg", "size": clip.size, "duration": clip.duration_ms},
        "org.matrix.msc1767.audio": {"duration": clip.duration_ms, "waveform": clip.waveform},
        "org.matrix.msc3245.voice": {},
        "file": {**keys, "url": upload.content_uri},
    }
    return await patient.send(room_id, "m.room.message", content)


async def test_voice_note_is_kept_sealed_and_exported(running, tmp_path: Path):
    app, patient, _therapist, record, _ = running
    clip = convert_to_voice(tone_wav(2.0), filename_hint="note.wav", limits=LIMITS)
    event_id = await send_voice_note(patient, record.room_id, clip)

    async def stored():
        return await app.parts.db.fetchrow(
            "SELECT seq, details, outcome, actor FROM audit_entries"
            " WHERE event_id = ? AND action = 'media.stored'",
            event_id,
        )

    row = await wait_until(stored, what="voice note stored", timeout=30)
    details = json.loads(row["details"])
    assert row["outcome"] == "ok" and row["actor"] == patient.user_id
    assert details["media_ref"] == hashlib.sha256(clip.ogg).hexdigest()
    assert details["size"] == clip.size and details["kind"] == "voice"
    assert details["duration_ms"] == pytest.approx(2000, abs=100)  # the recording's length
    assert await app.parts.audit.load_media(app.parts.db, details["media_ref"]) == clip.ogg
    # The room event is audited as a voice message too (it opens an SLA clock like text).
    kinds = await app.parts.db.fetch(
        "SELECT action FROM audit_entries WHERE event_id = ? ORDER BY seq", event_id
    )
    assert [k["action"] for k in kinds] == ["room.voice", "sla.opened", "media.stored"]

    out = tmp_path / "export.zip"
    await export_pair(
        app.parts.db,
        app.parts.sealer,
        app.cfg.audit.signing_key.get_secret_value(),
        record.pair_id,
        None,
        None,
        out,
        app.parts.renderer,
        now=app.service.clock(),
        actor="test",
        audit_log=app.parts.audit,
    )
    with zipfile.ZipFile(out) as zf:
        media = [n for n in zf.namelist() if n.startswith("media/")]
        assert len(media) == 1
        assert zf.read(media[0]) == clip.ogg
        transcript = json.loads(zf.read("transcript.json"))
        html = zf.read("transcript.html").decode()
    entry = next(e for e in transcript["entries"] if e["entry"]["action"] == "media.stored")
    assert entry["media"] == [{"ref": details["media_ref"], "path": media[0]}]
    assert media[0] in html


async def test_capture_cut_off_by_a_stop_resumes_at_start(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    bot = make_user("bot")
    overrides = bridge_config_dict(homeserver, bot.user_id, bot.password, tmp_path / "data")
    cfg = load_config_from(overrides, tmp_path)
    # First without the voice feature: the note is audited, its media not kept.
    app = await start_app(cfg, features=[f for f in default_features() if f is not install_voice])
    try:
        patient = await make_nio_user("patient")
        therapist = await make_nio_user("therapist")
        record, _ = await app.parts.pairs.add_pair(
            patient.user_id, therapist.user_id, app.service.clock()
        )
        await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
        clip = convert_to_voice(tone_wav(1.0), filename_hint="n.wav", limits=LIMITS)
        event_id = await send_voice_note(patient, record.room_id, clip)

        async def audited():
            return await app.parts.db.fetchval(
                "SELECT seq FROM audit_entries WHERE event_id = ?", event_id
            )

        await wait_until(audited, what="the voice note audited")
    finally:
        await app.stop()
    app = await start_app(cfg, features=[*default_features(), install_voice])
    try:

        async def stored():
            return await app.parts.db.fetch(
                "SELECT details FROM audit_entries WHERE event_id = ? AND action = 'media.stored'",
                event_id,
            )

        [row] = await wait_until(stored, what="the capture resumed")
        assert json.loads(row["details"])["media_ref"] == clip.sha256
    finally:
        await app.stop()


def load_config_from(overrides, tmp_path: Path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    return load_config(config_file)


async def test_voice_send_reaches_the_patient_as_element_voice(running, tmp_path: Path):
    app, patient, _therapist, record, config_file = running
    source = tmp_path / "voicemail.wav"
    source.write_bytes(tone_wav(3.0))
    # The bridge keeps running meanwhile: the command must not block its event loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bridge", "voice", "send", "-c", str(config_file)),
        *("--pair", record.label, str(source)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    job = await app.parts.db.fetchrow("SELECT * FROM voice_jobs")
    assert job is not None and job["pair_id"] == record.pair_id
    produced = await app.parts.audit.load_media(app.parts.db, job["media_ref"])
    assert produced is not None

    def is_voice(e):
        return getattr(e, "source", {}).get("content", {}).get("msgtype") == "m.audio"

    event = await patient.wait_for(record.room_id, is_voice, timeout=30)
    content = event.source["content"]
    assert "org.matrix.msc3245.voice" in content and "url" not in content
    assert content["info"]["mimetype"] == "audio/ogg"
    assert content["info"]["duration"] == pytest.approx(3000, abs=100)  # the clip's length
    waveform = content["org.matrix.msc1767.audio"]["waveform"]
    assert len(waveform) == 100 and max(waveform) == 1024
    file_obj = content["file"]
    resp = await patient.client.download(mxc=file_obj["url"])
    assert isinstance(resp, MemoryDownloadResponse), resp
    ogg = decrypt_attachment(
        resp.body, file_obj["key"]["k"], file_obj["hashes"]["sha256"], file_obj["iv"]
    )
    assert ogg == produced
    facts = describe_audio(ogg)
    assert (facts.codec, facts.sample_rate, facts.channels) == ("opus", 48000, 1)

    async def relayed():
        return await app.parts.db.fetchrow(
            "SELECT details FROM audit_entries WHERE action = 'relay.voice' AND pair_id = ?",
            record.pair_id,
        )

    row = await wait_until(relayed, what="relay audited")
    assert json.loads(row["details"])["media_ref"] == hashlib.sha256(ogg).hexdigest()
    assert (await app.parts.db.fetchrow("SELECT status FROM voice_jobs"))["status"] == "sent"


async def test_voice_queue_on_both_databases(db):
    """Queued voice messages: sealed Ogg, one pending job, finished only once."""
    from datetime import UTC, datetime

    from bridge.app import make_sealer
    from bridge.audit.log import AuditLog
    from bridge.config import minimal_config
    from bridge.features.voice import queue_voice
    from bridge.store import pairs, voice_jobs

    cfg = minimal_config(data_dir="/nonexistent")
    audit = AuditLog(db, make_sealer(cfg), cfg.audit.signing_key.get_secret_value())
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    pair = await pairs.create(db, patient_id="@pat:hs", therapist_id="@doc:hs", now=0)
    clip = convert_to_voice(tone_wav(0.5), filename_hint="a.wav", limits=LIMITS)
    async with db.transaction() as tx:
        job_id = await queue_voice(tx, audit, pair.pair_id, clip, "admin", now)
    job = await db.fetchrow("SELECT * FROM voice_jobs WHERE job_id = ?", job_id)
    assert job["status"] == "pending" and json.loads(job["waveform"]) == clip.waveform
    assert await audit.load_media(db, job["media_ref"]) == clip.ogg
    [waiting] = await voice_jobs.pending(db)
    assert (waiting.job_id, list(waiting.waveform)) == (job_id, clip.waveform)
    assert await voice_jobs.finish(db, job_id, voice_jobs.VoiceJobStatus.SENT, 5, None)
    assert not await voice_jobs.finish(db, job_id, voice_jobs.VoiceJobStatus.FAILED, 6, "late")
    done = await voice_jobs.get(db, job_id)
    assert done is not None and (done.status, done.done_at, done.error) == ("sent", 5, None)
    assert await voice_jobs.pending(db) == []
    queued = await db.fetchrow("SELECT details FROM audit_entries WHERE action = 'voice.queued'")
    assert json.loads(queued["details"])["media_ref"] == clip.sha256
