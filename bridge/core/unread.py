"""The "new secure message" e-mail when a therapist's reply stays unread (policy only).

It carries the practice name and the web client link only: never the message, never the
therapist's name.
"""

from __future__ import annotations

from bridge.core.model import AppendAudit, Effect, SendEmail

TEMPLATE = "new_secure_message"
#: Who the notice's audit entries are from.
ACTOR = "confidant:unread"


def unread_notice(
    pair_id: str,
    patient_email: str,
    *,
    reply_ms: int | None,
    read_ms: int | None,
    practice_name: str,
    web_client_url: str,
) -> list[Effect]:
    """The notice when the patient has not read the room since the therapist's latest
    message (`reply_ms`, origin time) by their latest read (`read_ms`); else nothing."""
    if reply_ms is None or (read_ms is not None and read_ms >= reply_ms):
        return []
    return [
        SendEmail(
            to=patient_email,
            template=TEMPLATE,
            context={"practice_name": practice_name, "web_client_url": web_client_url},
        ),
        AppendAudit(pair_id, "notify.unread_email", ACTOR, {"template": TEMPLATE}),
    ]
