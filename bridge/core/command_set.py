"""The chat commands a bridge answers, put into one registry.

A new command is a handler declared with `bridge.core.commands.command` in the core module
of its area (pure: context and facts in, effects out), listed in that module's `COMMANDS`;
a new module of commands is added to `build_commands` below.
"""

from __future__ import annotations

from bridge.core import (
    commands,
    consent,
    dashboard_commands,
    desk_commands,
    email_commands,
    language_commands,
    sessions,
    sla_commands,
    video_commands,
)
from bridge.core.commands import CommandRegistry


def build_commands() -> CommandRegistry:
    """`!help`, the desk's `!export`, the SLA's, consent's, sessions', video's, `!email` and
    `!language`."""
    return CommandRegistry(
        [
            *commands.COMMANDS,
            *desk_commands.COMMANDS,
            *sla_commands.COMMANDS,
            *consent.COMMANDS,
            *sessions.COMMANDS,
            *video_commands.COMMANDS,
            *dashboard_commands.COMMANDS,
            *email_commands.COMMANDS,
            *language_commands.COMMANDS,
        ]
    )
