"""The `confidant` command line: one module per area, each adding its commands with
`register(sub)`; what they share (the `-c FILE` option, the config, the parts) is in
`bridge.cli.base`.

Commands only parse their input, call the use case and print its outcome.
"""

from __future__ import annotations

import argparse

from bridge import __version__
from bridge.cli import (
    audit,
    configcmds,
    doctor,
    email,
    export,
    init,
    invite,
    pairs,
    run,
    sessions,
    sla,
    therapists,
    voice,
)

#: In the order `confidant --help` lists them.
AREAS = (
    run,
    init,
    configcmds,
    doctor,
    pairs,
    therapists,
    audit,
    export,
    email,
    invite,
    sessions,
    sla,
    voice,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="confidant", description="Secure Matrix bridge for therapy practices."
    )
    parser.add_argument("--version", action="version", version=f"confidant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for area in AREAS:
        area.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
