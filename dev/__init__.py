"""Development tools outside the installed package: a local Synapse and the demo.

`python -m dev.devhs` runs the dev/test homeserver; `python -m dev.demo` runs the demo
(`make demo`). The test suite and the benchmarks use `dev.devhs.DevHomeserver`. Nothing in
`bridge/` imports this package: a wheel of Confidant ships without it.
"""
