"""What every command uses: the `-c FILE` option, the config, logging, the clock, the parts."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = os.environ.get("CONFIDANT_CONFIG", "config.yaml")

#: Parent parser for sub-sub-commands: `-c` is accepted after them too
#: (`confidant pair list -c FILE`).
LATE_CONFIG = argparse.ArgumentParser(add_help=False)
LATE_CONFIG.add_argument("-c", "--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a command the `-c/--config FILE` option."""
    p.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help="configuration file (default: $CONFIDANT_CONFIG or config.yaml)",
    )
    return p


def load_config_or_exit(path: str) -> Any:
    """The config, or a one-line error and exit status 2."""
    from bridge.config import ConfigError, load_config

    try:
        return load_config(Path(path))
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError:
        print(f"{path}: no such file (give the config with -c FILE)", file=sys.stderr)
        raise SystemExit(2) from None


def setup_logging_for(cfg: Any) -> None:
    from bridge.logging_setup import setup_logging

    setup_logging(cfg.logging.level, cfg.logging.format)


def now() -> datetime:
    return datetime.now(UTC)


async def _with_parts(cfg: Any, work: Callable[[Any], Awaitable[int]]) -> int:
    from bridge.parts import open_parts

    parts = await open_parts(cfg)
    try:
        return await work(parts)
    finally:
        await parts.close()


def run_with_parts(cfg: Any, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run `work(parts)` with the database, homeserver client and managers open."""
    return asyncio.run(_with_parts(cfg, work))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print rows under a header line, each column as wide as its widest cell ('-' for none)."""
    cells = [
        [("-" if value is None or value == "" else str(value)) for value in row] for row in rows
    ]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
