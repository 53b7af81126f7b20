"""Voice transcoding speed per input format, as a multiple of real time.

Each format gets the same generated 30 s clip (a modulated tone with noise, stereo 44.1 kHz,
amr mono 8 kHz). The figure is the voice pipeline (decode, waveform, Opus encode, through
the executor); the baseline is one plain ffmpeg call converting the same file to Opus,
so the ratio shows what the pipeline costs over ffmpeg alone.

`python -m bench transcode` puts the rows in the common table; `python -m bench.transcode`
prints a table of its own with wall times.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.table import Row
from bridge.adapters.voice import VoiceLimits, convert_to_voice_async

CLIP_SECONDS = 30
REPEATS = 3
LIMITS = VoiceLimits(max_input_bytes=100_000_000, max_seconds=600)
_SOURCE = (
    "aevalsrc=0.4*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*3*t))+0.03*(2*random(0)-1)"
    f":s=44100:d={CLIP_SECONDS}"
)
# (format, file suffix, ffmpeg output options, encoder needed)
_FORMATS = [
    ("wav", "wav", ["-ac", "2"], None),
    ("mp3", "mp3", ["-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"], "libmp3lame"),
    ("m4a/aac", "m4a", ["-ac", "2", "-c:a", "aac", "-b:a", "128k"], "aac"),
    ("ogg/vorbis", "ogg", ["-ac", "2", "-c:a", "libvorbis"], "libvorbis"),
    ("webm/opus", "webm", ["-ac", "2", "-ar", "48000", "-c:a", "libopus"], "libopus"),
    ("flac", "flac", ["-ac", "2", "-c:a", "flac"], "flac"),
]


@dataclass(frozen=True)
class TranscodeRow:
    """One format: input length, median wall time, and speed against plain ffmpeg."""

    format: str
    input_seconds: float
    wall_ms: float
    x_real_time: float
    ffmpeg_wall_ms: float

    @property
    def ffmpeg_x_real_time(self) -> float:
        """Speed of one plain ffmpeg call to Opus, as a multiple of real time."""
        return self.input_seconds * 1000 / self.ffmpeg_wall_ms


def _encoders() -> set[str]:
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith(" A")}


def _amr_nb(seconds: int) -> bytes:
    # Random 12.2 kbit/s frames form a valid AMR-NB file even without an AMR encoder.
    rng = random.Random(1)
    return b"#!AMR\n" + b"".join(bytes([0x3C]) + rng.randbytes(31) for _ in range(seconds * 50))


def _inputs(workdir: Path) -> list[tuple[str, bytes]]:
    encoders = _encoders()
    made: list[tuple[str, bytes]] = []
    for name, suffix, options, encoder in _FORMATS:
        if encoder is not None and encoder not in encoders:
            continue
        target = workdir / f"clip.{suffix}"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", _SOURCE, *options, str(target)],
            check=True,
        )
        made.append((name, target.read_bytes()))
    if "libopencore_amrnb" in encoders:
        target = workdir / "clip.amr"
        options = ["-ac", "1", "-ar", "8000", "-c:a", "libopencore_amrnb"]
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", _SOURCE, *options, str(target)],
            check=True,
        )
        made.append(("amr-nb", target.read_bytes()))
    else:
        made.append(("amr-nb", _amr_nb(CLIP_SECONDS)))
    return made


def _plain_ffmpeg_ms(path: Path) -> float:
    opus = ["-c:a", "libopus", "-b:a", "24k", "-application", "voip", "-f", "ogg", "-"]
    started = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", "48000", *opus],
        capture_output=True,
        check=True,
    )
    return (time.perf_counter() - started) * 1000


async def measure() -> list[TranscodeRow]:
    """Convert each format's clip REPEATS times; median wall times, pipeline and plain ffmpeg."""
    if shutil.which("ffmpeg") is None:
        return []
    rows: list[TranscodeRow] = []
    with tempfile.TemporaryDirectory(prefix="confidant-bench-") as tmp:
        workdir = Path(tmp)
        inputs = await asyncio.to_thread(_inputs, workdir)
        for name, data in inputs:
            source = workdir / "input.bin"
            await asyncio.to_thread(source.write_bytes, data)
            ours: list[float] = []
            plain: list[float] = []
            duration_ms = 0
            for _ in range(REPEATS):
                started = time.perf_counter()
                clip = await convert_to_voice_async(data, filename_hint=None, limits=LIMITS)
                ours.append((time.perf_counter() - started) * 1000)
                duration_ms = clip.duration_ms
                plain.append(await asyncio.to_thread(_plain_ffmpeg_ms, source))
            wall = statistics.median(ours)
            rows.append(
                TranscodeRow(
                    format=name,
                    input_seconds=duration_ms / 1000,
                    wall_ms=wall,
                    x_real_time=duration_ms / wall,
                    ffmpeg_wall_ms=statistics.median(plain),
                )
            )
    return rows


async def run() -> list[Row]:
    """Rows for `python -m bench`: pipeline speed (x real time) against plain ffmpeg."""
    return [
        Row(
            name=f"voice transcode {row.format} {row.input_seconds:.0f} s",
            value=row.x_real_time,
            unit="x real time",
            baseline=row.ffmpeg_x_real_time,
        )
        for row in await measure()
    ]


def format_rows(rows: list[TranscodeRow]) -> str:
    """Render the detailed table: format, input seconds, wall ms, x real time, plain ffmpeg."""
    headers = ("format", "input s", "wall ms", "x real time", "ffmpeg wall ms", "ffmpeg x rt")
    cells = [
        (
            row.format,
            f"{row.input_seconds:.1f}",
            f"{row.wall_ms:.0f}",
            f"{row.x_real_time:.0f}",
            f"{row.ffmpeg_wall_ms:.0f}",
            f"{row.ffmpeg_x_real_time:.0f}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(headers))]
    lines = [
        "  ".join(
            value.ljust(width) if i == 0 else value.rjust(width)
            for i, (value, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in [headers, *cells]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> None:
    """Measure and print the detailed table."""
    rows = asyncio.run(measure())
    if not rows:
        print("ffmpeg is not installed: nothing to measure")
        return
    print(format_rows(rows))


if __name__ == "__main__":
    main()
