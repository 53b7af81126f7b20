"""Transcript export: every kind of event rendered, the zip proves itself, tampering shows,
and a practice's own transcript template is the one exported."""

from __future__ import annotations

import base64
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.adapters.render import Renderer
from bridge.audit import AuditLog, verify
from bridge.audit.checkpoint import load_signing_key
from bridge.audit.export import export_pair, verify_export
from bridge.config import minimal_config
from bridge.core.audit import message_content, public_key_bytes
from bridge.features.export import export_transcript
from bridge.parts import Parts, make_sealer
from bridge.sealing import Sealer
from bridge.store import Database, pairs

pytestmark = pytest.mark.integration

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
T0 = datetime(2025, 5, 5, 9, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = public_key_bytes(KEY.public_key())
SEALER = Sealer({"k1": bytes(range(100, 132))}, "k1")
PATIENT = "@patient.p1:example.org"
THERAPIST = "@dr.okafor:example.org"
OTHER_PATIENT = "@someone.else:example.org"

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class Builder:
    """Append a pair's history through AuditLog, one minute apart."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db, self.audit, self.n = db, audit, 0

    async def add(
        self,
        action: str,
        actor: str,
        *,
        pair_id: str = "pair-1",
        role: str | None = None,
        kind: str | None = None,
        content: bytes | None = None,
        media: bytes | None = None,
        event_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> str | None:
        self.n += 1
        when = T0 + timedelta(minutes=self.n)
        ref = None
        async with self.db.transaction() as tx:
            if media is not None:
                ref = await self.audit.store_media(tx, media, when)
            await self.audit.append(
                tx,
                {
                    "pair_id": pair_id,
                    "action": action,
                    "actor": actor,
                    "role": role,
                    "event_id": event_id or f"$ev{self.n}",
                    "details": {**({"kind": kind} if kind else {}), **(details or {})},
                    "content": content,
                },
                when,
            )
        return ref


async def build_history(db: Database, audit: AuditLog) -> None:
    b = Builder(db, audit)
    # Before the exported range.
    await b.add(
        "room.text",
        PATIENT,
        role="patient",
        kind="text",
        content=message_content("m.text", "too early to be exported"),
    )
    await b.add(
        "room.text",
        PATIENT,
        role="patient",
        kind="text",
        event_id="$first",
        content=message_content(
            "m.text",
            "Hello, this is the first message",
            formatted_body="<b>Hello</b>, <script>x()</script>first",
        ),
    )
    await b.add(
        "room.text",
        OTHER_PATIENT,
        pair_id="pair-2",
        role="patient",
        kind="text",
        content=message_content("m.text", "another pair's secret"),
    )
    await b.add(
        "room.notice",
        "@bot:example.org",
        role="bot",
        kind="notice",
        content=message_content("m.notice", "Your therapist usually replies within a day"),
    )
    await b.add(
        "room.emote",
        THERAPIST,
        role="therapist",
        kind="emote",
        content=message_content("m.emote", "waves hello"),
    )
    image = PNG
    await b.add(
        "room.image",
        PATIENT,
        role="patient",
        kind="image",
        media=image,
        content=message_content(
            "m.image",
            "drawing.png",
            filename="drawing.png",
            mimetype="image/png",
            media_ref=_sha(image),
        ),
    )
    pdf = b"%PDF-1.4 worksheet"
    await b.add(
        "room.file",
        THERAPIST,
        role="therapist",
        kind="file",
        media=pdf,
        content=message_content(
            "m.file",
            "worksheet.pdf",
            filename="worksheet.pdf",
            mimetype="application/pdf",
            media_ref=_sha(pdf),
        ),
    )
    voice = b"OggS fake opus voice"
    await b.add(
        "room.voice",
        PATIENT,
        role="patient",
        kind="voice",
        media=voice,
        content=message_content(
            "m.audio",
            "Voice message",
            filename="voice.ogg",
            mimetype="audio/ogg",
            media_ref=_sha(voice),
            voice=True,
            duration_ms=4200,
        ),
    )
    attachment = b"attachment bytes"
    await b.add(
        "email.relayed",
        PATIENT,
        role="patient",
        kind="email",
        media=attachment,
        content=message_content(
            "email",
            "Dear doctor, see the attached scan.",
            subject="Scan results",
            **{"from": "p1@mail.example"},
            attachments=[
                {"filename": "scan.txt", "mimetype": "text/plain", "media_ref": _sha(attachment)}
            ],
        ),
    )
    await b.add(
        "video.link",
        THERAPIST,
        role="therapist",
        kind="video_link",
        content=message_content(
            "video_link", "Video call", url="https://meet.example.org/confidant-7f3a"
        ),
    )
    await b.add(
        "sla.reminder",
        "@bot:example.org",
        role="bot",
        kind="sla",
        details={"step": "reminder", "due_at": 1746440000000},
    )
    await b.add(
        "room.membership",
        THERAPIST,
        role="therapist",
        kind="membership",
        details={"membership": "join", "state_key": THERAPIST},
    )
    await b.add(
        "room.edit",
        PATIENT,
        role="patient",
        kind="edit",
        details={"relates_to": "$first"},
        content=canonical(
            {
                "msgtype": "m.text",
                "body": "* Hello, corrected",
                "m.new_content": {"msgtype": "m.text", "body": "Hello, corrected message"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$first"},
            }
        ),
    )
    await b.add(
        "room.redaction",
        PATIENT,
        role="patient",
        kind="redaction",
        details={"relates_to": "$first"},
    )
    await b.add("command.due", THERAPIST, role="therapist", details={"command": "due"})


def canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def exported(db: Database, tmp_path: Path) -> tuple[Path, Database, AuditLog]:
    audit = AuditLog(db, SEALER, KEY, checkpoint_every=5)
    await build_history(db, audit)
    out = tmp_path / "export.zip"
    result = await export_pair(
        db,
        SEALER,
        KEY,
        "pair-1",
        T0 + timedelta(minutes=1, seconds=30),
        None,
        out,
        Renderer(TEMPLATES),
        now=T0 + timedelta(hours=1),
        actor=THERAPIST,
        audit_log=audit,
    )
    assert result.path == out and result.entry_count == 13
    return out, db, audit


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


async def test_export_renders_every_kind(exported: tuple[Path, Database, AuditLog]) -> None:
    path, _, _ = exported
    files = read_zip(path)
    html = files["transcript.html"].decode()
    for text in [
        "Hello</b>, first",  # sanitised formatted body, script removed
        "Your therapist usually replies within a day",
        "* @dr.okafor:example.org waves hello",
        "drawing.png",
        "worksheet.pdf",
        "Voice message",
        "audio/ogg",
        "4 s",
        "Scan results",
        "Dear doctor, see the attached scan.",
        "scan.txt",
        "https://meet.example.org/confidant-7f3a",
        "Response time",
        "step: reminder",
        f"{THERAPIST}: join",
        "Hello, corrected message",
        "Replaces the text of",
        "Removed from the room by",
        "Edited later",
        "command: due",
    ]:
        assert text in html, text
    assert "<script>" not in html and "x()" not in html
    assert "too early to be exported" not in html
    media = [n for n in files if n.startswith("media/")]
    assert len(media) == 4
    image = next(n for n in media if n.endswith("drawing.png"))
    assert f'<img class="media" src="{image}"' in html
    voice = next(n for n in media if n.endswith("voice.ogg"))
    assert f'<audio controls preload="none" src="{voice}">' in html
    assert files[voice] == b"OggS fake opus voice"
    # No external resources: nothing loaded over the network.
    assert "http://" not in html.replace("https://meet.example.org/confidant-7f3a", "")
    assert "<link" not in html and "@import" not in html


async def test_export_does_not_leak_other_pairs(exported: tuple[Path, Database, AuditLog]) -> None:
    path, _, _ = exported
    for name, data in read_zip(path).items():
        for needle in (b"pair-2", OTHER_PATIENT.encode(), b"another pair's secret"):
            assert needle not in data, (name, needle)


async def test_export_is_audited_and_chain_stays_green(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, db, _ = exported
    manifest = json.loads(read_zip(path)["manifest.json"])
    last = await db.fetchrow(
        "SELECT seq, action, actor FROM audit_entries ORDER BY seq DESC LIMIT 1"
    )
    assert last == {"seq": manifest["export_seq"], "action": "audit.export", "actor": THERAPIST}
    assert manifest["chain"]["head_hash"] == manifest["checkpoint"]["head_hash"]
    assert manifest["entry_count"] == 13
    result = await verify(db, "pair-1", trusted_key=TRUSTED, sealer=SEALER)
    assert result.ok, result.summary()
    assert result.last_checkpoint == manifest["export_seq"]


async def test_verify_export_passes(exported: tuple[Path, Database, AuditLog]) -> None:
    path, _, _ = exported
    ok, message = verify_export(path, TRUSTED)
    assert ok, message
    assert message.startswith("OK: export of pair pair-1, 13 entries")


async def test_verify_export_refuses_another_key(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, _, _ = exported
    other = public_key_bytes(Ed25519PrivateKey.generate().public_key())
    ok, message = verify_export(path, other)
    assert not ok and "wrong key" in message


async def test_verify_export_finds_an_edited_file(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, _, _ = exported
    files = read_zip(path)
    files["transcript.html"] = files["transcript.html"].replace(b"waves hello", b"waves bye")
    rewrite_zip(path, files)
    ok, message = verify_export(path, TRUSTED)
    assert not ok and "transcript.html was changed" in message


async def test_verify_export_finds_a_forged_chain_even_with_fixed_hashes(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, _, _ = exported
    files = read_zip(path)
    chain = json.loads(files["chain.json"])
    chain["records"][1]["entry"]["actor"] = "@mallory:example.org"
    files["chain.json"] = json.dumps(chain).encode()
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["chain.json"] = _sha(files["chain.json"])
    files["manifest.json"] = json.dumps(manifest).encode()
    rewrite_zip(path, files)
    ok, message = verify_export(path, TRUSTED)
    assert not ok and "manifest signature does not verify" in message


async def test_verify_export_refuses_planted_files(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, _, _ = exported
    files = read_zip(path)
    files["extra.txt"] = b"planted"
    rewrite_zip(path, files)
    ok, message = verify_export(path, TRUSTED)
    assert not ok and "extra.txt" in message


async def test_verify_export_finds_a_dropped_media_file(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, _, _ = exported
    files = read_zip(path)
    name = next(n for n in files if n.endswith("voice.ogg"))
    del files[name]
    rewrite_zip(path, files)
    ok, message = verify_export(path, TRUSTED)
    assert not ok and "is missing" in message


def resign(files: dict[str, bytes], key: Ed25519PrivateKey) -> None:
    """Recompute the manifest's file hashes and signature, as a forger holding `key` would."""
    from bridge.audit.export import _manifest_bytes

    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {n: _sha(d) for n, d in files.items() if n != "manifest.json"}
    manifest["public_key"] = base64.b64encode(public_key_bytes(key.public_key())).decode()
    manifest["signature"] = base64.b64encode(key.sign(_manifest_bytes(manifest))).decode()
    files["manifest.json"] = json.dumps(manifest).encode()


async def test_verify_export_refuses_a_forgery_signed_with_another_key(
    exported: tuple[Path, Database, AuditLog],
) -> None:
    path, _, _ = exported
    files = read_zip(path)
    files["transcript.html"] = b"<p>nothing happened</p>"
    resign(files, Ed25519PrivateKey.generate())
    rewrite_zip(path, files)
    ok, message = verify_export(path, TRUSTED)
    assert not ok and "wrong key" in message


@pytest.mark.parametrize(
    "tamper,expected",
    [
        ("drop", "missing an earlier entry of the pair"),
        ("change", "changed (hash differs)"),
        ("swap", "reordered"),
        ("cut", "truncated"),
        ("content", "content differs from its hash"),
    ],
)
async def test_chain_proof_holds_without_the_manifest_signature(
    exported: tuple[Path, Database, AuditLog], tamper: str, expected: str
) -> None:
    """Even re-signed with the practice's own key, a doctored history does not reach the head."""
    path, _, _ = exported
    files = read_zip(path)
    chain = json.loads(files["chain.json"])
    transcript = json.loads(files["transcript.json"])
    records = chain["records"]
    if tamper == "drop":
        del records[3]
        del transcript["entries"][3]
    elif tamper == "change":
        records[3]["entry"]["actor"] = "@mallory:example.org"
        transcript["entries"][3]["entry"]["actor"] = "@mallory:example.org"
    elif tamper == "swap":
        records[2], records[3] = records[3], records[2]
        transcript["entries"][2], transcript["entries"][3] = (
            transcript["entries"][3],
            transcript["entries"][2],
        )
    elif tamper == "cut":
        del records[-1]
    elif tamper == "content":
        seq = transcript["entries"][1]["entry"]["seq"]
        files[f"content/{seq}.bin"] = message_content("m.notice", "something else")
    files["chain.json"] = json.dumps(chain).encode()
    files["transcript.json"] = json.dumps(transcript).encode()
    resign(files, KEY)
    rewrite_zip(path, files)
    ok, message = verify_export(path, TRUSTED)
    assert not ok
    assert expected in message


# ---------------------------------------------------------------- the practice's template

#: A practice's own transcript: what it keeps of the shipped one is up to the practice.
OVERRIDE = (
    "<h1>Harbour Practice record {{ pair_id }}</h1>\n"
    "{% for it in items %}<p>{{ it.actor }}: {{ it.text }}</p>{% endfor %}\n"
)


async def export_through_the_use_case(
    db: Database, tmp_path: Path, **config: Any
) -> dict[str, bytes]:
    """One patient message, exported by `export_transcript` with the practice's `config`."""
    cfg = minimal_config(data_dir=str(tmp_path / "data"), **config)
    sealer = make_sealer(cfg)
    audit = AuditLog(db, sealer, cfg.audit.signing_key.get_secret_value())
    renderer = Renderer(overrides=cfg.templates_dir, language=cfg.practice.language)
    # Only what an export reads: no homeserver, no bot, no pair manager.
    parts = Parts(cfg, db, None, renderer, sealer, audit, None, None)  # type: ignore[arg-type]
    pair = await pairs.create(db, patient_id=PATIENT, therapist_id=THERAPIST, now=0, room_id="!r")
    await Builder(db, audit).add(
        "room.text",
        PATIENT,
        pair_id=pair.pair_id,
        role="patient",
        kind="text",
        content=message_content("m.text", "see you on Tuesday"),
    )
    out = tmp_path / "export.zip"
    await export_transcript(parts, pair, out, actor="test", now=T0 + timedelta(hours=1))
    key = load_signing_key(cfg.audit.signing_key.get_secret_value())
    ok, message = verify_export(out, public_key_bytes(key.public_key()))
    assert ok, message
    return read_zip(out)


async def test_without_an_override_the_shipped_transcript_is_exported(
    db: Database, tmp_path: Path
) -> None:
    html = (await export_through_the_use_case(db, tmp_path))["transcript.html"].decode()
    assert '<ol class="entries">' in html and "see you on Tuesday" in html
    assert "This transcript is part of a signed export." in html
    assert "Harbour Practice" not in html


@pytest.mark.parametrize(
    ("where", "language"), [("", "en"), ("de/", "de")], ids=["every language", "its language"]
)
async def test_the_practices_transcript_template_is_the_one_exported(
    where: str, language: str, db: Database, tmp_path: Path
) -> None:
    practice = tmp_path / "practice"
    (practice / where).mkdir(parents=True, exist_ok=True)
    (practice / where / "transcript.html.j2").write_text(OVERRIDE, encoding="utf-8")
    files = await export_through_the_use_case(
        db, tmp_path, templates_dir=str(practice), practice={"language": language}
    )
    html = files["transcript.html"].decode()
    assert html.startswith("<h1>Harbour Practice record ")
    assert f"<p>{PATIENT}: see you on Tuesday</p>" in html
    assert "This transcript is part of a signed export." not in html
