"""`confidant voice send --pair LABEL FILE`: convert audio and queue it for the bridge.

The command line does not hold the bot's E2EE device, so it converts the audio, seals
the Ogg in the audit media store and queues a job; the running bridge uploads it
encrypted and posts it as a voice message (see `bridge.features.voice`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_voice(args: argparse.Namespace) -> int:
    import asyncio

    from bridge.adapters.voice import AudioError, convert_to_voice_async
    from bridge.cli.base import load_config_or_exit, now, run_with_parts, setup_logging_for
    from bridge.features.voice import VOICE_LIMITS, queue_voice
    from bridge.provision import PairError
    from bridge.store.pairs import PairStatus

    cfg = load_config_or_exit(args.config)
    setup_logging_for(cfg)
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"{path}: cannot read ({exc.strerror})", file=sys.stderr)
        return 2
    try:
        clip = asyncio.run(
            convert_to_voice_async(data, filename_hint=path.name, limits=VOICE_LIMITS)
        )
    except AudioError as err:
        print(str(err), file=sys.stderr)
        return 1

    async def work(parts: Any) -> int:
        try:
            record = await parts.pairs.resolve(args.pair)
        except PairError as err:
            print(str(err), file=sys.stderr)
            return 1
        if record.status is not PairStatus.ACTIVE:
            print(f"pair {record.label} is {record.status.value}, not active", file=sys.stderr)
            return 1
        async with parts.db.transaction() as tx:
            job_id = await queue_voice(tx, parts.audit, record.pair_id, clip, args.actor, now())
        print(f"queued {job_id} ({clip.duration_ms} ms); the running bridge posts it")
        return 0

    return run_with_parts(cfg, work)


def register(sub: Any) -> None:
    """Add `confidant voice send`."""
    from bridge.cli.base import LATE_CONFIG, with_config

    voice = with_config(sub.add_parser("voice", help="voice messages"))
    vsub = voice.add_subparsers(dest="voice_cmd", required=True)
    p = vsub.add_parser(
        "send",
        help="convert audio (wav, mp3, m4a, amr, ogg, webm, flac) and post it as a voice message",
        parents=[LATE_CONFIG],
    )
    p.add_argument("--pair", required=True, help="pair id, label or room id")
    p.add_argument("--actor", default="admin", help="who is sending, for the audit")
    p.add_argument("file")
    voice.set_defaults(func=cmd_voice)
