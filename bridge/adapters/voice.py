"""Voice messages: any common audio to an Element-style Ogg Opus voice message, and audio facts.

Input comes from outside (voicemail systems, e-mail attachments), so ffmpeg only gets to
use the demuxers of the formats we accept and the local file protocol: a playlist or
concat file posing as audio cannot make it read other files or the network. This is also
why conversion calls ffmpeg directly rather than through pydub's `from_file`/`export`,
which cannot pass input options and leave plaintext temporary files in the shared temp
directory when ffmpeg fails. One ffmpeg process decodes the input once and writes both the
Ogg Opus file and the raw PCM that pydub measures for the duration and waveform: a second
process reading the PCM back in cost a quarter of the conversion's time. Temporary files
live in a private directory removed on return.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydub import AudioSegment

log = logging.getLogger(__name__)

#: Sample rate, channels and sample width of the decoded audio and of the voice message.
SAMPLE_RATE = 48_000
CHANNELS = 1
SAMPLE_WIDTH = 2
#: Opus bitrate: the rate Element's own voice recorder uses for speech.
OPUS_BITRATE = "24k"
#: Number of waveform values Element expects, and their maximum.
WAVEFORM_POINTS = 100
WAVEFORM_MAX = 1024
VOICE_MIMETYPE = "audio/ogg"
#: Body and file name Element gives its own voice messages.
VOICE_BODY = "Voice message"
VOICE_FILENAME = "Voice message.ogg"

#: ffmpeg demuxers allowed to read input: wav, mp3, m4a/mp4, ADTS aac, amr, ogg, webm, flac.
ALLOWED_DEMUXERS = "wav,mp3,mov,mp4,m4a,3gp,aac,amr,amrnb,amrwb,ogg,matroska,webm,flac"
#: File name suffixes worth passing on to ffmpeg's probe; anything else is probed blind.
_KNOWN_SUFFIXES = frozenset(
    {"wav", "mp3", "m4a", "mp4", "aac", "amr", "3gp", "ogg", "oga", "opus", "webm", "flac"}
)
_ACCEPTED = "wav, mp3, m4a, aac, amr, ogg, webm or flac"


@dataclass(frozen=True, slots=True)
class VoiceLimits:
    """Bounds on audio we convert: input size, length and the time ffmpeg may take."""

    max_input_bytes: int
    max_seconds: int
    timeout_seconds: float = 120.0


class AudioError(Exception):
    """Audio that cannot become a voice message; `str()` is a one-line text for the user.

    `reason` is one of "unreadable", "unsupported", "too_long", "too_big", "no_ffmpeg",
    "timeout", "failed", for audit entries and metrics.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VoiceClip:
    """An Ogg Opus voice message ready to upload, with what its event needs."""

    ogg: bytes
    duration_ms: int
    waveform: list[int]
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class AudioFacts:
    """What ffprobe says about a piece of audio, plus its size and hash, for the audit."""

    duration_ms: int | None
    codec: str | None
    sample_rate: int | None
    channels: int | None
    container: str | None
    size: int
    sha256: str


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioError(
            "no_ffmpeg", f"Audio cannot be converted: {name} is not installed on the server."
        )
    return path


def _suffix(filename_hint: str | None) -> str:
    if filename_hint and "." in filename_hint:
        suffix = filename_hint.rsplit(".", 1)[1].lower()
        if suffix in _KNOWN_SUFFIXES:
            return "." + suffix
    return ".bin"


def _unreadable() -> AudioError:
    return AudioError(
        "unreadable",
        f"The audio could not be read: the file is damaged or not {_ACCEPTED}.",
    )


def _run(
    argv: list[str], *, stdin: bytes | None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AudioError(
            "timeout", "The audio took too long to convert; please try a shorter recording."
        ) from exc


def _input_failure(stderr: bytes) -> AudioError:
    # stderr is read only for these markers and never logged: it can name the file.
    text = stderr.decode("utf-8", "replace")
    if "not on whitelist" in text:
        return AudioError(
            "unsupported", f"This audio format is not supported; please send {_ACCEPTED}."
        )
    if "matches no streams" in text:
        return AudioError("unsupported", "The file contains no audio.")
    return _unreadable()


def _transcode(path: Path, ogg_path: Path, limits: VoiceLimits) -> bytes:
    """Convert the first audio stream to Ogg Opus at `ogg_path`; return the same audio as PCM.

    One decode, one resample to mono 48 kHz 16-bit, split between the VoIP-tuned Opus
    encoder and raw PCM on stdout (what the waveform and duration are measured on), so the
    voice message and its facts come from the very same samples.
    """
    # One second past the limit is enough to know a recording is too long, and keeps the
    # memory used by a huge input bounded; the encode of a refused one is thrown away.
    until = str(limits.max_seconds + 1)
    argv = [
        _tool("ffmpeg"),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ALLOWED_DEMUXERS,
        "-i",
        str(path),
        "-filter_complex",
        f"[0:a:0]aformat=sample_fmts=s16:sample_rates={SAMPLE_RATE}:channel_layouts=mono,"
        "asplit=2[voice][pcm]",
        "-map",
        "[voice]",
        "-t",
        until,
        "-map_metadata",
        "-1",
        "-c:a",
        "libopus",
        "-b:a",
        OPUS_BITRATE,
        "-vbr",
        "on",
        "-application",
        "voip",
        "-frame_duration",
        "20",
        "-f",
        "ogg",
        str(ogg_path),
        "-map",
        "[pcm]",
        "-t",
        until,
        "-f",
        "s16le",
        "-c:a",
        "pcm_s16le",
        "pipe:1",
    ]
    result = _run(argv, stdin=None, timeout=limits.timeout_seconds)
    if result.returncode != 0:
        log.info("audio conversion failed", extra={"rc": result.returncode})
        raise _input_failure(result.stderr)
    if len(result.stdout) < SAMPLE_WIDTH:
        raise _unreadable()
    return result.stdout


def waveform_of(audio: AudioSegment, points: int = WAVEFORM_POINTS) -> list[int]:
    """Give `points` loudness values in 0..WAVEFORM_MAX: RMS per slice, the loudest at the max.

    Silence gives all zeros; slices of a clip shorter than `points` samples may be empty (0).
    """
    frames = int(audio.frame_count())
    levels: list[int] = []
    for i in range(points):
        start, end = i * frames // points, (i + 1) * frames // points
        levels.append(audio.get_sample_slice(start, end).rms if end > start else 0)
    peak = max(levels)
    if peak == 0:
        return [0] * points
    return [round(WAVEFORM_MAX * level / peak) for level in levels]


def convert_to_voice(
    data: bytes, *, filename_hint: str | None = None, limits: VoiceLimits
) -> VoiceClip:
    """Convert audio (wav, mp3, m4a/aac, amr, ogg, webm, flac) to an Ogg Opus voice message.

    Mono, 48 kHz, VoIP-tuned Opus; duration from the decoded audio; a 100-point waveform.
    One ffmpeg process does the whole conversion.
    Blocking and CPU-bound: from async code use `convert_to_voice_async`.
    Raises AudioError with a one-line message for the user.
    """
    if len(data) > limits.max_input_bytes:
        raise AudioError(
            "too_big",
            f"The audio file is too big ({_human_size(len(data))}); "
            f"the limit is {_human_size(limits.max_input_bytes)}.",
        )
    if not data:
        raise _unreadable()
    with tempfile.TemporaryDirectory(prefix="confidant-audio-") as workdir:
        path = Path(workdir) / ("input" + _suffix(filename_hint))
        path.write_bytes(data)
        ogg_path = Path(workdir) / "voice.ogg"
        pcm = _transcode(path, ogg_path, limits)
        ogg = ogg_path.read_bytes() if ogg_path.exists() else b""
    audio = AudioSegment(
        data=pcm, sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=CHANNELS
    )
    duration_ms = round(audio.frame_count() * 1000 / SAMPLE_RATE)
    if duration_ms > limits.max_seconds * 1000:
        raise AudioError(
            "too_long",
            f"The recording is too long: the limit is {_minutes_seconds(limits.max_seconds)}; "
            "please send a shorter one.",
        )
    if not ogg:
        log.warning("opus encode gave nothing")
        raise AudioError("failed", "The audio could not be converted; please try again later.")
    return VoiceClip(
        ogg=ogg,
        duration_ms=duration_ms,
        waveform=waveform_of(audio),
        size=len(ogg),
        sha256=hashlib.sha256(ogg).hexdigest(),
    )


async def convert_to_voice_async(
    data: bytes,
    *,
    filename_hint: str | None = None,
    limits: VoiceLimits,
    executor: Executor | None = None,
) -> VoiceClip:
    """Run `convert_to_voice` in an executor (the loop's default one unless given)."""
    loop = asyncio.get_running_loop()
    job = functools.partial(convert_to_voice, data, filename_hint=filename_hint, limits=limits)
    return await loop.run_in_executor(executor, job)


def voice_message_content(
    clip: VoiceClip,
    *,
    body: str = VOICE_BODY,
    file_info: dict[str, Any] | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Build the `m.room.message` content Element sends for a voice message.

    Unencrypted room: give `url` (the mxc URI). Encrypted room: give `file_info` (the
    decryption keys nio's `upload(..., encrypt=True)` returns) and `url`; the content then
    carries `file` (keys plus url) and no top-level `url`, as Element does.
    """
    if url is None or not url.startswith("mxc://"):
        raise ValueError("a voice message needs the mxc:// URL of its upload")
    file_block: dict[str, Any] = {
        "name": VOICE_FILENAME,
        "mimetype": VOICE_MIMETYPE,
        "size": clip.size,
    }
    content: dict[str, Any] = {
        "body": body,
        "msgtype": "m.audio",
        "info": {"duration": clip.duration_ms, "mimetype": VOICE_MIMETYPE, "size": clip.size},
        "org.matrix.msc1767.text": body,
        "org.matrix.msc1767.file": file_block,
        "org.matrix.msc1767.audio": {"duration": clip.duration_ms, "waveform": list(clip.waveform)},
        "org.matrix.msc3245.voice": {},
        # Element always sends an empty mentions block: it turns off legacy body-matching pings.
        "m.mentions": {},
    }
    if file_info is not None:
        encrypted = {**file_info, "url": url}
        content["file"] = encrypted
        file_block["file"] = dict(encrypted)
    else:
        content["url"] = url
        file_block["url"] = url
    return content


def describe_audio(data: bytes, *, timeout_seconds: float = 60.0) -> AudioFacts:
    """Read duration, codec, sample rate and channels of audio with ffprobe, plus size and hash.

    For voice notes recorded in Matrix clients, so the audit knows what was received.
    Raises AudioError when the data holds no readable audio.
    """
    if not data:
        raise _unreadable()
    with tempfile.TemporaryDirectory(prefix="confidant-audio-") as workdir:
        path = Path(workdir) / "input.bin"
        path.write_bytes(data)
        argv = [
            _tool("ffprobe"),
            "-hide_banner",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            ALLOWED_DEMUXERS,
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,duration:format=format_name,duration",
            "-of",
            "json",
            str(path),
        ]
        result = _run(argv, stdin=None, timeout=timeout_seconds)
    if result.returncode != 0:
        raise _input_failure(result.stderr)
    try:
        probe: dict[str, Any] = json.loads(result.stdout)
    except ValueError as exc:
        raise _unreadable() from exc
    streams = probe.get("streams") or []
    if not streams:
        raise AudioError("unsupported", "The file contains no audio.")
    stream: dict[str, Any] = streams[0]
    fmt: dict[str, Any] = probe.get("format") or {}
    seconds = _number(stream.get("duration")) or _number(fmt.get("duration"))
    rate = _number(stream.get("sample_rate"))
    channels = stream.get("channels")
    return AudioFacts(
        duration_ms=round(seconds * 1000) if seconds is not None else None,
        codec=stream.get("codec_name"),
        sample_rate=int(rate) if rate is not None else None,
        channels=int(channels) if isinstance(channels, int) else None,
        container=fmt.get("format_name"),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _number(value: object) -> float | None:
    if value is None or value == "N/A":
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


def _human_size(size: int) -> str:
    if size < 1_000_000:
        return f"{max(1, round(size / 1000))} kB"
    return f"{size / 1_000_000:.1f}".rstrip("0").rstrip(".") + " MB"


def _minutes_seconds(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if minutes and rest:
        return f"{minutes} min {rest} s"
    return f"{minutes} min" if minutes else f"{rest} s"
