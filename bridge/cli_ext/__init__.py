"""Command-line sub-commands of individual features.

Each module here defines `register(sub)`, which adds its sub-commands to the `confidant`
parser (see `bridge.cli` for `with_config`, `LATE_CONFIG`, `load_config_or_exit`,
`run_with_parts` and `now`).
"""
