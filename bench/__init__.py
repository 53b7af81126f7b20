"""Benchmarks: `python -m bench [NAME...]` runs them and prints one table.

A benchmark is a module `bench/<name>.py` with `async def run() -> list[Row]`
(`bench.table.Row`). It starts what it needs itself (loopback only, bounded loops)
and, to put its figures in context, measures the raw homeserver in the same run
with `bench.baseline.measure_baseline(hs)`.
"""
