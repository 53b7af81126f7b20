"""The audit trail: hash-chained entries with sealed content, checkpoints, verify and export.

The pure chain rules live in `bridge.core.audit`; this package stores, verifies and exports.
"""

from bridge.audit.checkpoint import (
    export_checkpoint,
    latest_checkpoint,
    load_checkpoints,
    load_public_key,
    load_signing_key,
    write_checkpoint,
)
from bridge.audit.log import AuditLog, PurgeResult, purge_content
from bridge.audit.verify import run_purge, run_verify, verify

__all__ = [
    "AuditLog",
    "PurgeResult",
    "export_checkpoint",
    "latest_checkpoint",
    "load_checkpoints",
    "load_public_key",
    "load_signing_key",
    "purge_content",
    "run_purge",
    "run_verify",
    "verify",
    "write_checkpoint",
]
