"""Sections that can be switched off are checked only when they are on.

A practice that leaves `smtp.enabled: false` keeps the example's values (and its
placeholders) under `smtp:`; refusing them would make it fill in secrets for a part it
does not run. A switched-off section that does not validate is replaced by its switched-off
form, so nothing it holds reaches the running bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bridge.config.http import Http
from bridge.config.jitsi import Jitsi
from bridge.config.outbound_email import OutboundEmail
from bridge.config.section import Section
from bridge.config.smtp import InboundSmtp
from bridge.config.synapse_admin import SynapseAdmin

_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def _enabled(default: bool) -> Callable[[dict[str, Any]], bool]:
    def on(section: dict[str, Any]) -> bool:
        try:
            return _BOOL.validate_python(section.get("enabled", default))
        except ValidationError:
            return True  # a bad `enabled` is reported by the section's own validation

    return on


def _has(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda section: section.get(key) is not None


#: Section name -> (its model, whether a section as written is on, its switched-off form).
SWITCHABLE: dict[str, tuple[type[Section], Callable[[dict[str, Any]], bool], dict[str, Any]]] = {
    "smtp": (
        InboundSmtp,
        _enabled(InboundSmtp.model_fields["enabled"].default),
        {"enabled": False},
    ),
    "outbound_email": (
        OutboundEmail,
        _enabled(OutboundEmail.model_fields["enabled"].default),
        {"enabled": False},
    ),
    "http": (Http, _enabled(Http.model_fields["enabled"].default), {"enabled": False}),
    # No domain: `!video` is off. No admin token: onboarding invitations are off.
    "jitsi": (Jitsi, _has("domain"), {}),
    "synapse_admin": (SynapseAdmin, _has("access_token"), {}),
}


def switched_off(data: dict[str, Any]) -> set[str]:
    """The names of the switchable sections that `data` (resolved YAML) leaves off."""
    off: set[str] = set()
    for name, (_, is_on, _) in SWITCHABLE.items():
        section = data.get(name)
        if section is None:
            section = {}
        if isinstance(section, dict) and not is_on(section):
            off.add(name)
    return off


def without_switched_off(
    data: dict[str, Any], off: set[str], context: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, ValidationError]]]:
    """`data` with each switched-off section that would not validate in its off form.

    Also returns the validation errors of those sections, by name: the caller still reports
    unknown keys there (a misspelt `enabled` is the likeliest reason a section is off).
    """
    out = dict(data)
    errors: list[tuple[str, ValidationError]] = []
    for name in sorted(off):
        model, _, off_form = SWITCHABLE[name]
        section = out.get(name) or {}
        try:
            model.model_validate(section, context=context)
        except ValidationError as exc:
            errors.append((name, exc))
            out[name] = dict(off_form)
    return out, errors
