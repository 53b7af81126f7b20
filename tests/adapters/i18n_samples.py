"""The variables the code passes each template, as samples: every template the bridge ships
renders with these in every language (tests/adapters/test_i18n_templates.py).

Each entry lists the contexts a template meets (its branches: a flag on and off, an optional
value present and absent). A template without an entry here fails the test, so a new one
arrives with its variables and its translations.
"""

from __future__ import annotations

from typing import Any

LINK = "https://matrix.to/#/!pair:practice"

_SESSION = {
    "session_id": "S1",
    "kind": "video",
    "starts": "2026-12-01 14:00",
    "ends": "14:50",
    "minutes": 50,
    "timezone": "Europe/Berlin",
}
_STEP = {
    "pair_id": "p1",
    "pair_label": "7F3A",
    "room_id": "!pair:practice",
    "room_link": LINK,
    "therapist_id": "@doc:practice",
    "step": "heads_up",
    "opened_at": "2026-12-01T06:31:00Z",
    "due_at": "2026-12-01T10:31:00Z",
    "due_at_local": "2026-12-01T11:31:00+01:00",
    "timezone": "Europe/Berlin",
    "overdue": False,
    "covering": False,
}
_STEP_EMAIL = {
    "practice_name": "Praxis Sonnenweg",
    "pair_label": "7F3A",
    "room_link": LINK,
    "due_at": "2026-12-01T10:31:00Z",
    "due_at_local": "2026-12-01T11:31:00+01:00",
    "timezone": "Europe/Berlin",
    "step": "reminder",
}
_WINDOW = {"reply_window": "8 hours", "reply_window_seconds": 8 * 3600, "working_time": True}
_NO_WINDOW = {"reply_window": None, "reply_window_seconds": None, "working_time": True}
_CONSENT = {
    "practice_name": "Praxis Sonnenweg",
    "therapist_name": "Dr Okafor",
    "crisis_line": "+49 800 111 0 111",
    **_WINDOW,
    "email_enabled": True,
    "video_enabled": True,
    "retention": "10 years",
    "retention_days": 3650,
}
_WELCOME = {
    "therapist_name": "Dr Okafor",
    "practice_name": "Praxis Sonnenweg",
    **_WINDOW,
    "crisis_line": "+49 800 111 0 111",
    "email_address": "pair-abc@mail.example.org",
    "patient_email": "greta@example.org",
    "video_enabled": True,
}
_INVITATION = {
    "practice_name": "Praxis Sonnenweg",
    "name": "Greta",
    "web_client_url": "https://app.element.io",
    "server_name": "practice.example.org",
    "code": "ABCD-EFGH",
    "expires_at": "2026-12-08 07:31",
    "crisis_line": "+49 800 111 0 111",
    "reminder": False,
}
_EMAIL_POST = {
    "sender_name": "Greta",
    "sender_address": "greta@example.org",
    "subject": "Termin",
    "text_body": "Hallo",
    "text_body_html": "Hallo",
    "html_body_safe": "",
    "attachment_count": 2,
    "dropped_attachments": 1,
    "trimmed": True,
    "truncated": True,
    "email": None,
}

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "messages/command_refused.txt.j2": [{"name": "export"}],
    "messages/command_unknown.txt.j2": [{"name": "foo"}],
    "messages/consent.txt.j2": [
        _CONSENT,
        {
            **_CONSENT,
            **_NO_WINDOW,
            "crisis_line": None,
            "email_enabled": False,
            "video_enabled": False,
            "retention": None,
            "retention_days": None,
        },
        {**_CONSENT, "working_time": False},
    ],
    "messages/consent_accepted.txt.j2": [{}],
    "messages/consent_not_pending.txt.j2": [{"accepted": True}, {"accepted": False}],
    "messages/consent_pending.txt.j2": [{"pair_label": "7F3A", "room_id": "!pair:practice"}],
    "messages/desk_room_name.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "messages/desk_welcome.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "messages/email_post.txt.j2": [
        _EMAIL_POST,
        {
            **_EMAIL_POST,
            "sender_name": "",
            "subject": "",
            "text_body": "",
            "attachment_count": 0,
            "dropped_attachments": 0,
            "trimmed": False,
            "truncated": False,
        },
    ],
    "messages/email_post.html.j2": [
        _EMAIL_POST,
        {**_EMAIL_POST, "html_body_safe": "<p>Hallo</p>", "sender_name": "", "subject": ""},
    ],
    "messages/export_refused.txt.j2": [{"reason": "unknown pair label"}],
    "messages/export_usage.txt.j2": [{}],
    "messages/help.txt.j2": [
        {
            "commands": [
                {"name": "help", "usage": "", "summary": "List the commands you can use here"},
                {"name": "video", "usage": "[end]", "summary": "Start a video call"},
            ],
            "room_kind": "pair",
        }
    ],
    "messages/language_current.txt.j2": [
        {"language": "de", "name": "Deutsch", "choices": "en (English), de (Deutsch)"}
    ],
    "messages/language_set.txt.j2": [{"language": "es", "name": "español"}],
    "messages/language_usage.txt.j2": [{"choices": "en (English), de (Deutsch)"}],
    "messages/outsider_alert.txt.j2": [
        {"user": "@eve:practice", "pair_label": "7F3A", "room_id": "!pair:practice"}
    ],
    "messages/pair_added.txt.j2": [
        {"pair_label": "7F3A", "patient_id": "@greta:practice", "room_id": "!pair:practice"}
    ],
    "messages/pair_closed.txt.j2": [
        {"practice_name": "Praxis Sonnenweg", "crisis_line": "+49 800 111 0 111"},
        {"practice_name": "Praxis Sonnenweg", "crisis_line": None},
    ],
    "messages/room_name.txt.j2": [{"therapist_name": "Dr Okafor", "pair_label": "7F3A"}],
    "messages/session_added.txt.j2": [_SESSION, {**_SESSION, "kind": "text"}],
    "messages/session_bad_date.txt.j2": [{"text": "32.13."}],
    "messages/session_bad_length.txt.j2": [{"minimum": 15, "maximum": 180}],
    "messages/session_bad_time.txt.j2": [{"text": "25:00"}],
    "messages/session_cancelled.txt.j2": [_SESSION],
    "messages/session_end.txt.j2": [_SESSION],
    "messages/session_in_past.txt.j2": [{}],
    "messages/session_list.txt.j2": [
        {
            "sessions": [_SESSION, {**_SESSION, "session_id": "S2", "kind": "text"}],
            "timezone": "Europe/Berlin",
        },
        {"sessions": [], "timezone": "Europe/Berlin"},
    ],
    "messages/session_off.txt.j2": [{}],
    "messages/session_reminder.txt.j2": [
        {**_SESSION, "link": "https://meet.example.org/x", "patient_link": "https://meet/x?jwt=1"},
        {**_SESSION, "link": "https://meet.example.org/x", "patient_link": None},
        {**_SESSION, "kind": "text", "link": None, "patient_link": None},
    ],
    "messages/session_start.txt.j2": [
        {**_SESSION, "link": "https://meet.example.org/x", "patient_link": "https://meet/x?jwt=1"},
        {**_SESSION, "link": "https://meet.example.org/x", "patient_link": None},
        {**_SESSION, "kind": "text", "link": None, "patient_link": None},
    ],
    "messages/session_too_far.txt.j2": [{}],
    "messages/session_unknown.txt.j2": [{"session_id": "S9"}],
    "messages/session_usage.txt.j2": [{}],
    "messages/sla_away.txt.j2": [
        {
            "until_local": "2026-12-03 14:00",
            "timezone": "Europe/Berlin",
            "cover": "@cover:hs",
            "open_count": 2,
        },
        {
            "until_local": "2026-12-03 14:00",
            "timezone": "Europe/Berlin",
            "cover": None,
            "open_count": 0,
        },
    ],
    "messages/sla_away_invalid.txt.j2": [{"reason": "that time has passed"}],
    "messages/sla_back.txt.j2": [{"open_count": 3}, {"open_count": 0}],
    "messages/sla_breach_patient.txt.j2": [{"pair_label": "7F3A", "due_at": "2026-12-01T10:31Z"}],
    "messages/sla_due.txt.j2": [
        {
            "items": [
                {
                    "pair_label": "7F3A",
                    "room_link": LINK,
                    "due_at_local": "2026-12-01 11:31",
                    "overdue": True,
                    "paused_until_local": None,
                },
                {
                    "pair_label": "9B2C",
                    "room_link": LINK,
                    "due_at_local": "2026-12-02 09:00",
                    "overdue": False,
                    "paused_until_local": "2026-12-01 18:00",
                },
            ],
            "more": 2,
            "timezone": "Europe/Berlin",
        },
        {"items": [], "more": 0, "timezone": "Europe/Berlin"},
    ],
    "messages/sla_escalation.txt.j2": [_STEP],
    "messages/sla_escalation_email.txt.j2": [_STEP_EMAIL],
    "messages/sla_expected_reply.txt.j2": [
        {
            "pair_label": "7F3A",
            "due_at": "2026-12-01T06:31:00Z",
            "due_at_local": "2026-12-01T07:31:00+01:00",
            "timezone": "Europe/Berlin",
            "out_of_hours": True,
            "therapist_away": True,
            "crisis_line": "+49 800 111 0 111",
        },
        {
            "pair_label": "7F3A",
            "due_at": "2026-12-01T06:31:00Z",
            "due_at_local": "2026-12-01T07:31:00+01:00",
            "timezone": "Europe/Berlin",
            "out_of_hours": False,
            "therapist_away": False,
        },
    ],
    "messages/sla_heads_up.txt.j2": [_STEP, {**_STEP, "covering": True}],
    "messages/sla_heads_up_email.txt.j2": [_STEP_EMAIL],
    "messages/sla_off.txt.j2": [{}],
    "messages/sla_reminder.txt.j2": [_STEP, {**_STEP, "covering": True}],
    "messages/sla_reminder_email.txt.j2": [_STEP_EMAIL],
    "messages/sla_reply_not_needed.txt.j2": [{}],
    "messages/sla_reply_pending.txt.j2": [
        {"due_at_local": "2026-11-30 15:00", "timezone": "Europe/Berlin"}
    ],
    "messages/sla_reply_requested.txt.j2": [
        {"due_at_local": "2026-11-30 15:00", "timezone": "Europe/Berlin"},
        {"due_at_local": None, "timezone": "Europe/Berlin"},
    ],
    "messages/sla_status.txt.j2": [
        {"open": False, "policy": "default", "timezone": "Europe/Berlin"},
        {
            "open": True,
            "policy": "default",
            "timezone": "Europe/Berlin",
            "opened_at_local": "2026-12-01 07:31",
            "due_at_local": "2026-12-01 11:31",
            "overdue": True,
            "paused_until_local": "2026-12-01 18:00",
            "heads_up_sent": True,
            "reminder_sent": True,
            "escalated": True,
            "breached": True,
        },
        {
            "open": True,
            "policy": "default",
            "timezone": "Europe/Berlin",
            "opened_at_local": "2026-12-01 07:31",
            "due_at_local": "2026-12-01 11:31",
            "overdue": False,
            "paused_until_local": None,
            "heads_up_sent": False,
            "reminder_sent": False,
            "escalated": False,
            "breached": False,
        },
    ],
    "messages/therapist_changed.txt.j2": [{"therapist_name": "Dr Okafor"}],
    "messages/undecryptable.txt.j2": [{"pair_label": "7F3A", "room_id": "!pair:practice"}],
    "messages/video_ended.txt.j2": [{"ended_by": "@doc:practice"}],
    "messages/video_moderator_link.txt.j2": [
        {"pair_label": "7F3A", "link": "https://meet/x?jwt=m", "room_id": "!pair:practice"}
    ],
    "messages/video_none.txt.j2": [{}],
    "messages/video_off.txt.j2": [{}],
    "messages/video_started.txt.j2": [
        {
            "link": "https://meet/x",
            "patient_link": "https://meet/x?jwt=p",
            "started_by": "@doc:practice",
            "again": False,
        },
        {
            "link": "https://meet/x",
            "patient_link": None,
            "started_by": "@doc:practice",
            "again": True,
        },
    ],
    "messages/video_usage.txt.j2": [{}],
    "messages/video_widget_name.txt.j2": [{}],
    "messages/welcome.txt.j2": [
        _WELCOME,
        {
            **_WELCOME,
            **_NO_WINDOW,
            "email_address": None,
            "crisis_line": None,
            "video_enabled": False,
        },
        {**_WELCOME, "working_time": False},
    ],
    "email/attachment.txt.j2": [
        {"practice_name": "Praxis Sonnenweg", "filename": "Übung.pdf", "voice": False},
        {"practice_name": "Praxis Sonnenweg", "filename": "voice.ogg", "voice": True},
    ],
    "email/correction.txt.j2": [{}],
    "email/email_consent.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/email_consent.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/reply.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/reply_footer.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/video_link.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/video_link.txt.j2": [
        {
            "practice_name": "Praxis Sonnenweg",
            "link": "https://meet.example.org/x?jwt=p",
            "valid_until": "2026-12-01 15:00",
        }
    ],
    "messages/dashboard_link.txt.j2": [
        {"url": "https://practice/dashboard/t/abc", "minutes": 5, "expires_at": "2026-12-01T07:36Z"}
    ],
    "messages/dashboard_off.txt.j2": [{}],
    "messages/email_asked.txt.j2": [{}],
    "messages/email_consent.txt.j2": [
        {
            "practice_name": "Praxis Sonnenweg",
            "state": state,
            "has_address": has_address,
            "key_fingerprint": fingerprint,
        }
        for state, has_address, fingerprint in (
            ("given", True, "A1B2 C3D4 E5F6 0718 293A  4B5C 6D7E 8F90 A1B2 C3D4"),
            ("", False, ""),
            ("revoked", True, ""),
        )
    ],
    "messages/email_off.txt.j2": [{}],
    "messages/email_on.txt.j2": [{}],
    "messages/email_bounced.txt.j2": [
        {
            "kind": kind,
            "sent_at_local": "2026-12-01T11:31:00+01:00",
            "timezone": "Europe/Berlin",
            "status": status,
            "reason": reason,
        }
        for kind, status, reason in (
            ("reply", "5.1.1", "address"),
            ("correction", "5.2.2", "mailbox_full"),
            ("attachment", "5.2.1", "mailbox"),
            ("reply", "5.7.1", "refused"),
            ("reply", "4.4.1", "expired"),
            ("consent", "5.0.0", "other"),
            ("welcome", "5.1.1", "address"),
        )
    ],
    "messages/email_key_added.txt.j2": [{"fingerprint": "ABCD 1234 EF56 7890 ABCD 1234"}],
    "messages/email_key_refused.txt.j2": [
        {"reason": reason} for reason in ("not_a_key", "secret_key", "revoked", "cannot_encrypt")
    ],
    "messages/email_terms.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "messages/email_unavailable.txt.j2": [
        {"reason": reason, "state": state}
        for reason, state in (
            ("off", ""),
            ("no_address", ""),
            ("patient_only", ""),
            ("therapist_only", ""),
            ("unchanged", "given"),
            ("unchanged", "revoked"),
        )
    ],
    "messages/email_usage.txt.j2": [{}],
    "messages/video_started_private.txt.j2": [
        {
            "link": "https://meet/x",
            "started_by": "@doc:practice",
            "again": again,
            "patient_emailed": emailed,
            "patient_mailed_before": before,
        }
        for again, emailed, before in (
            (False, True, False),
            (True, False, False),
            (True, False, True),
        )
    ],
    "email/email_welcome.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/email_welcome.txt.j2": [
        {"practice_name": "Praxis Sonnenweg", "crisis_line": "+49 800 111 0 111"},
        {"practice_name": "Praxis Sonnenweg", "crisis_line": None},
    ],
    "email/default.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/invitation.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/invitation.txt.j2": [
        _INVITATION,
        {**_INVITATION, "name": "", "crisis_line": None, "reminder": True},
    ],
    "email/new_secure_message.subject.txt.j2": [{"practice_name": "Praxis Sonnenweg"}],
    "email/new_secure_message.txt.j2": [
        {"practice_name": "Praxis Sonnenweg", "web_client_url": "https://app.element.io"}
    ],
    "email/sla_escalation_email.subject.txt.j2": [_STEP_EMAIL],
    "email/sla_heads_up_email.subject.txt.j2": [_STEP_EMAIL],
    "email/sla_reminder_email.subject.txt.j2": [_STEP_EMAIL],
}
