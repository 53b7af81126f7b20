"""Voice messages with real ffmpeg: generated audio in every accepted format to Ogg Opus."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import random
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import pytest
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment

from bridge.adapters.voice import (
    AudioError,
    VoiceClip,
    VoiceLimits,
    convert_to_voice,
    convert_to_voice_async,
    describe_audio,
    voice_message_content,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]

LIMITS = VoiceLimits(max_input_bytes=20_000_000, max_seconds=120)
SECONDS = 2.5
#: Encoder priming and frame padding differ per codec; none adds or loses this much.
DURATION_TOLERANCE_MS = 120


@functools.cache
def _encoders() -> frozenset[str]:
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith(" A"))


def write_wav(
    path: Path,
    seconds: float,
    *,
    rate: int = 44_100,
    channels: int = 2,
    amplitude: float = 0.5,
    loud_until: float | None = None,
) -> Path:
    """Write a 16-bit WAV: a 440 Hz tone with a little noise (or silence for amplitude 0).

    With `loud_until`, the tone drops to a tenth of its amplitude after that many seconds.
    """
    rng = random.Random(7)
    frames = bytearray()
    for n in range(int(seconds * rate)):
        level = amplitude
        if loud_until is not None and n / rate >= loud_until:
            level = amplitude / 10
        value = level * math.sin(2 * math.pi * 440 * n / rate) + level * 0.05 * rng.uniform(-1, 1)
        frames += struct.pack("<h", int(value * 32767)) * channels
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def probe(data: bytes, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "probe.bin"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


# (name, file suffix, ffmpeg output options, encoder needed)
FORMATS = [
    ("wav", "wav", [], None),
    ("mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "96k"], "libmp3lame"),
    ("m4a-aac", "m4a", ["-c:a", "aac", "-b:a", "96k"], "aac"),
    ("adts-aac", "aac", ["-c:a", "aac", "-f", "adts"], "aac"),
    ("ogg-vorbis", "ogg", ["-c:a", "libvorbis"], "libvorbis"),
    ("webm-opus", "webm", ["-c:a", "libopus", "-ar", "48000"], "libopus"),
    ("flac", "flac", ["-c:a", "flac"], "flac"),
    (
        "amr-nb",
        "amr",
        ["-c:a", "libopencore_amrnb", "-ar", "8000", "-ac", "1"],
        "libopencore_amrnb",
    ),
]


@pytest.fixture(scope="module")
def source_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("audio") / "tone.wav", SECONDS)


def encoded(source: Path, suffix: str, options: list[str], encoder: str | None) -> bytes:
    if encoder is not None and encoder not in _encoders():
        pytest.skip(f"this ffmpeg build has no {encoder} encoder")
    if suffix == "wav":
        return source.read_bytes()
    target = source.with_name(f"tone-{encoder}.{suffix}")
    ffmpeg("-i", str(source), *options, str(target))
    return target.read_bytes()


def assert_voice(clip: VoiceClip, tmp_path: Path, expected_ms: float) -> None:
    info = probe(clip.ogg, tmp_path)
    (stream,) = info["streams"]
    assert info["format"]["format_name"] == "ogg"
    assert stream["codec_name"] == "opus"
    assert stream["sample_rate"] == "48000"
    assert stream["channels"] == 1
    assert clip.duration_ms == pytest.approx(expected_ms, abs=DURATION_TOLERANCE_MS)
    probed_ms = float(info["format"]["duration"]) * 1000
    assert probed_ms == pytest.approx(expected_ms, abs=DURATION_TOLERANCE_MS)
    assert len(clip.waveform) == 100
    assert all(isinstance(v, int) and 0 <= v <= 1024 for v in clip.waveform)
    assert max(clip.waveform) == 1024
    assert clip.size == len(clip.ogg)


@pytest.mark.parametrize(
    ("suffix", "options", "encoder"),
    [pytest.param(s, o, e, id=name) for name, s, o, e in FORMATS],
)
def test_converts_format_to_opus_voice(
    source_wav: Path, tmp_path: Path, suffix: str, options: list[str], encoder: str | None
) -> None:
    data = encoded(source_wav, suffix, options, encoder)
    clip = convert_to_voice(data, filename_hint=f"message.{suffix}", limits=LIMITS)
    assert_voice(clip, tmp_path, SECONDS * 1000)
    # A tone is loud throughout: no bucket is near silence, except at the very edges where
    # some codecs (ADTS AAC without an edit list) add priming silence.
    assert min(clip.waveform[2:-2]) > 300


def amr_nb_file(frames: int, seed: int = 3) -> bytes:
    """Build an AMR-NB file (RFC 4867 storage format) of 12.2 kbit/s frames with random bits.

    Every bit pattern is a valid AMR frame, so this exercises the AMR demuxer and decoder
    even where ffmpeg has no AMR encoder; it sounds like noise.
    """
    rng = random.Random(seed)
    header_mode_7_good = bytes([0x3C])  # frame type 7 (12.2k), quality bit set
    body = b"".join(header_mode_7_good + rng.randbytes(31) for _ in range(frames))
    return b"#!AMR\n" + body


def test_converts_amr_nb_storage_file(tmp_path: Path) -> None:
    clip = convert_to_voice(amr_nb_file(150), filename_hint="voicemail.amr", limits=LIMITS)
    assert_voice(clip, tmp_path, 150 * 20)


def test_filename_hint_is_optional(source_wav: Path, tmp_path: Path) -> None:
    data = encoded(source_wav, "mp3", ["-c:a", "libmp3lame"], "libmp3lame")
    clip = convert_to_voice(data, filename_hint=None, limits=LIMITS)
    assert_voice(clip, tmp_path, SECONDS * 1000)


def test_waveform_follows_loudness(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "fade.wav", 2.0, loud_until=1.0)
    clip = convert_to_voice(wav.read_bytes(), filename_hint="fade.wav", limits=LIMITS)
    first, second = clip.waveform[:48], clip.waveform[52:]
    assert min(first) > 800
    assert max(second) < 200


def test_silence_gives_a_flat_zero_waveform(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "silence.wav", 1.0, amplitude=0.0)
    clip = convert_to_voice(wav.read_bytes(), filename_hint="silence.wav", limits=LIMITS)
    assert clip.waveform == [0] * 100
    assert clip.duration_ms == pytest.approx(1000, abs=DURATION_TOLERANCE_MS)


def test_mono_48k_input_keeps_its_length(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "mono.wav", 0.7, rate=48_000, channels=1)
    clip = convert_to_voice(wav.read_bytes(), filename_hint="mono.wav", limits=LIMITS)
    assert clip.duration_ms == 700


def test_sha256_is_of_the_ogg(source_wav: Path) -> None:
    import hashlib

    clip = convert_to_voice(source_wav.read_bytes(), filename_hint=None, limits=LIMITS)
    assert clip.sha256 == hashlib.sha256(clip.ogg).hexdigest()


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"This is not audio at all.\n" * 200, id="text"),
        pytest.param(random.Random(1).randbytes(20_000), id="random"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40, id="broken-wav-header"),
        pytest.param(b"#!AMR\n", id="amr-without-frames"),
    ],
)
def test_corrupt_audio_is_refused(data: bytes) -> None:
    with pytest.raises(AudioError) as caught:
        convert_to_voice(data, filename_hint="message.wav", limits=LIMITS)
    assert caught.value.reason == "unreadable"
    assert "\n" not in str(caught.value)


def test_truncated_mp3_is_refused(source_wav: Path) -> None:
    data = encoded(source_wav, "mp3", ["-c:a", "libmp3lame"], "libmp3lame")
    with pytest.raises(AudioError):
        convert_to_voice(data[:200], filename_hint="message.mp3", limits=LIMITS)


def test_too_long_is_refused(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "long.wav", 3.0, channels=1, rate=8000)
    with pytest.raises(AudioError) as caught:
        convert_to_voice(
            wav.read_bytes(), filename_hint="long.wav", limits=VoiceLimits(10_000_000, 2)
        )
    assert caught.value.reason == "too_long"
    assert "2 s" in str(caught.value)


def test_too_big_is_refused_before_decoding(source_wav: Path) -> None:
    data = source_wav.read_bytes()
    with pytest.raises(AudioError) as caught:
        convert_to_voice(data, filename_hint=None, limits=VoiceLimits(len(data) - 1, 600))
    assert caught.value.reason == "too_big"


def test_file_without_audio_is_refused(tmp_path: Path) -> None:
    if "mpeg4" not in {line for line in _video_encoders()}:
        pytest.skip("this ffmpeg build has no mpeg4 encoder")
    target = tmp_path / "video.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=64x64", "-c:v", "mpeg4", str(target))
    with pytest.raises(AudioError) as caught:
        convert_to_voice(target.read_bytes(), filename_hint="clip.mp4", limits=LIMITS)
    assert caught.value.reason == "unsupported"


def _video_encoders() -> set[str]:
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith(" V")}


def test_format_outside_the_list_is_refused(source_wav: Path, tmp_path: Path) -> None:
    target = tmp_path / "tone.aiff"
    ffmpeg("-i", str(source_wav), str(target))
    with pytest.raises(AudioError) as caught:
        convert_to_voice(target.read_bytes(), filename_hint="tone.aiff", limits=LIMITS)
    assert caught.value.reason == "unsupported"


def test_playlist_cannot_make_ffmpeg_read_other_files(source_wav: Path, tmp_path: Path) -> None:
    secret = Path(source_wav.with_name("tone-libmp3lame.mp3"))
    encoded(source_wav, "mp3", ["-c:a", "libmp3lame"], "libmp3lame")
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{secret}\n#EXT-X-ENDLIST\n"
    # Control: an unrestricted ffmpeg follows the playlist and reads the other file.
    (tmp_path / "input.bin").write_text(playlist)
    leaked = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "input.bin"), "-f", "s16le", "-"],
        capture_output=True,
        check=False,
    ).stdout
    assert len(leaked) > 10_000
    with pytest.raises(AudioError) as caught:
        convert_to_voice(playlist.encode(), filename_hint="voicemail.m3u8", limits=LIMITS)
    assert caught.value.reason in {"unreadable", "unsupported"}


def test_missing_ffmpeg_is_reported(
    source_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AudioError) as caught:
        convert_to_voice(source_wav.read_bytes(), filename_hint=None, limits=LIMITS)
    assert caught.value.reason == "no_ffmpeg"
    with pytest.raises(AudioError):
        describe_audio(source_wav.read_bytes())


def test_no_files_are_left_behind(
    source_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    convert_to_voice(source_wav.read_bytes(), filename_hint="a.wav", limits=LIMITS)
    with pytest.raises(AudioError):
        convert_to_voice(b"garbage" * 100, filename_hint="a.mp3", limits=LIMITS)
    with pytest.raises(AudioError):
        convert_to_voice(
            source_wav.read_bytes(), filename_hint="a.wav", limits=VoiceLimits(10**8, 1)
        )
    describe_audio(source_wav.read_bytes())
    assert os.listdir(scratch) == []


# ------------------------------------------------------------------ async


async def test_async_conversion_does_not_block_the_loop(source_wav: Path, tmp_path: Path) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    data = source_wav.read_bytes()  # noqa: ASYNC240 - a small local test file
    task = asyncio.create_task(ticker())
    try:
        clip = await convert_to_voice_async(data, filename_hint="a.wav", limits=LIMITS)
        ticks_during_conversion = ticks
    finally:
        task.cancel()
    # A conversion on the loop's own thread would not let the ticker run even once.
    assert ticks_during_conversion > 0
    assert_voice(clip, tmp_path, SECONDS * 1000)


async def test_async_conversion_raises_audio_error() -> None:
    with pytest.raises(AudioError):
        await convert_to_voice_async(b"nope" * 100, filename_hint=None, limits=LIMITS)


# ------------------------------------------------------------------ facts for the audit


def test_describe_audio_reports_codec_rate_channels_duration(source_wav: Path) -> None:
    import hashlib

    data = encoded(source_wav, "ogg", ["-c:a", "libvorbis"], "libvorbis")
    facts = describe_audio(data)
    assert facts.codec == "vorbis"
    assert facts.sample_rate == 44_100
    assert facts.channels == 2
    assert facts.container == "ogg"
    assert facts.duration_ms is not None
    assert facts.duration_ms == pytest.approx(SECONDS * 1000, abs=DURATION_TOLERANCE_MS)
    assert facts.size == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()


def test_describe_audio_of_a_voice_clip(source_wav: Path) -> None:
    clip = convert_to_voice(source_wav.read_bytes(), filename_hint=None, limits=LIMITS)
    facts = describe_audio(clip.ogg)
    assert (facts.codec, facts.sample_rate, facts.channels) == ("opus", 48_000, 1)


def test_describe_audio_refuses_non_audio() -> None:
    with pytest.raises(AudioError):
        describe_audio(b"not audio" * 50)


# ------------------------------------------------------------------ event content


CLIP = VoiceClip(
    ogg=b"OggS-fake", duration_ms=2500, waveform=[0, 512, 1024] * 33 + [7], size=9, sha256="ab"
)


def test_unencrypted_content_matches_element() -> None:
    content = voice_message_content(CLIP, body="Voice message", url="mxc://hs/abc")
    assert content == {
        "body": "Voice message",
        "msgtype": "m.audio",
        "url": "mxc://hs/abc",
        "info": {"duration": 2500, "mimetype": "audio/ogg", "size": 9},
        "org.matrix.msc1767.text": "Voice message",
        "org.matrix.msc1767.file": {
            "url": "mxc://hs/abc",
            "name": "Voice message.ogg",
            "mimetype": "audio/ogg",
            "size": 9,
        },
        "org.matrix.msc1767.audio": {"duration": 2500, "waveform": CLIP.waveform},
        "org.matrix.msc3245.voice": {},
        "m.mentions": {},
    }


def test_encrypted_content_carries_file_and_decrypts_to_the_ogg(source_wav: Path) -> None:
    clip = convert_to_voice(source_wav.read_bytes(), filename_hint=None, limits=LIMITS)
    ciphertext, keys = encrypt_attachment(clip.ogg)
    content = voice_message_content(clip, body="Voice message", file_info=keys, url="mxc://hs/enc")
    assert "url" not in content
    assert content["file"] == {**keys, "url": "mxc://hs/enc"}
    assert content["org.matrix.msc1767.file"]["file"] == content["file"]
    assert "url" not in content["org.matrix.msc1767.file"]
    assert content["org.matrix.msc3245.voice"] == {}
    assert content["info"] == {
        "duration": clip.duration_ms,
        "mimetype": "audio/ogg",
        "size": clip.size,
    }
    # What a receiving client does with the event: fetch `file.url`, decrypt with `file`.
    file = content["file"]
    plaintext = decrypt_attachment(
        ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
    )
    assert plaintext == clip.ogg


def test_content_needs_an_mxc_url() -> None:
    with pytest.raises(ValueError):
        voice_message_content(CLIP, body="Voice message", url=None)
    with pytest.raises(ValueError):
        voice_message_content(CLIP, body="Voice message", url="https://example.org/a.ogg")
