"""Run benchmarks and print their table: `python -m bench [NAME...]`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, cast

import bench
from bench.table import Row, format_table

_NOT_BENCHMARKS = {"table", "__main__"}

Runner = Callable[[], Coroutine[Any, Any, list[Row]]]


def available() -> list[str]:
    """Names of the benchmark modules in this package."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name not in _NOT_BENCHMARKS and not info.name.startswith("_")
    )


def load(name: str) -> Runner | None:
    """The module's `run` coroutine function, or None if it is not a benchmark."""
    module = importlib.import_module(f"bench.{name}")
    runner = getattr(module, "run", None)
    return cast(Runner, runner) if callable(runner) else None


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (all when none is named) and print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=main.__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # nio warns about routine key exchange ("Missing session for device") at WARNING.
    logging.getLogger("nio").setLevel(logging.ERROR)

    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [name for name in args.names if name not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; try --list", file=sys.stderr)
        return 2

    rows: list[Row] = []
    failed: list[tuple[str, str]] = []
    for name in args.names or names:
        runner = load(name)
        if runner is None:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            got = asyncio.run(runner())
        except Exception as exc:
            # One broken benchmark must not lose the figures of the others.
            failed.append((name, f"{type(exc).__name__}: {exc}"))
            print(f"  {name} FAILED after {time.monotonic() - started:.1f} s", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            continue
        print(f"  {name} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        print(format_table(got), flush=True)
        rows.extend(got)
    if len(args.names or names) > 1:
        print("\nall benchmarks:")
        print(format_table(rows))
    for name, error in failed:
        print(f"FAILED {name}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
