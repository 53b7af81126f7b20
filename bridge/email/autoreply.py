"""Mail no person wrote: auto-replies (out of office, vacation) and other automatic mail.

RFC 3834 says automatic responses carry `Auto-Submitted` (anything but "no"); the
responders that predate it mark themselves with `X-Autoreply`, `X-Autorespond` or
`Precedence: auto_reply | bulk | junk | list` (Microsoft Exchange sets
`X-Auto-Response-Suppress` on its own, which is a request, not a mark). Such mail is posted
for the therapist to see but is not the patient writing: it opens no reply clock, and
nothing ever answers it.
"""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesHeaderParser

__all__ = ["is_automatic"]

_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
_MARKS = ("x-autoreply", "x-autorespond")
_COMMENT = re.compile(r"\([^()]*\)")


def is_automatic(raw: bytes) -> bool:
    """True when the message's headers say no person wrote it (headers only are read)."""
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    auto = headers.get("Auto-Submitted")
    if auto is not None:
        value = _COMMENT.sub("", str(auto)).strip().lower()
        if value and value != "no":
            return True
    if any(headers.get(name) is not None for name in _MARKS):
        return True
    precedence = headers.get("Precedence")
    return precedence is not None and str(precedence).strip().lower() in _PRECEDENCE
