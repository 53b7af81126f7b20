"""`policies:` response-time policies (SLA) by name; a pair uses "default" unless given another."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import field_validator, model_validator

from bridge.config.errors import FieldProblem
from bridge.config.section import Section
from bridge.config.values import Duration, MatrixUserId, OptionalDuration, positive_duration


class Policy(Section):
    """Response-time policy for a pair (SLA): window, reminders, escalation, notices."""

    window: Duration = timedelta(hours=8)
    window_clock: Literal["working", "calendar"] = "working"
    heads_up_before: OptionalDuration = timedelta(hours=1)
    remind_at_due: bool = True
    escalate_after: OptionalDuration = None
    supervisors: tuple[MatrixUserId, ...] = ()
    channels: tuple[Literal["desk", "email"], ...] = ("desk",)
    patient_notice: Literal["always", "out_of_hours", "never"] = "out_of_hours"
    open_clock_on: Literal["any_message", "reply_request"] = "any_message"
    tell_patient_on_breach: bool = False
    #: When reminders may reach the therapist: "opening_hours" or "any_time"; unset, the
    #: window's clock decides (opening hours for working time, any time for calendar).
    remind_during: Literal["opening_hours", "any_time"] | None = None
    #: When an escalation may reach supervisors; unset, as `remind_during`. A crisis
    #: policy sets "any_time".
    escalate_during: Literal["opening_hours", "any_time"] | None = None

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one channel: desk, email")
        if len(set(value)) != len(value):
            raise ValueError("lists a channel twice")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_heads_up(cls, data: Any) -> Any:
        # The default heads-up (1h) makes no sense for a window of an hour or less:
        # leave it out rather than make the user switch off a step they never set.
        if isinstance(data, dict) and "heads_up_before" not in data and "window" in data:
            try:
                window = positive_duration(data["window"])
            except ValueError:
                return data
            if window <= timedelta(hours=1):
                data = {**data, "heads_up_before": None}
        return data

    @model_validator(mode="after")
    def _steps(self) -> Policy:
        if self.heads_up_before is not None and self.heads_up_before >= self.window:
            raise FieldProblem("heads_up_before", "must be shorter than window")
        # An escalating policy without supervisors of its own reaches each therapist's
        # supervisor (`therapist add --supervisor`); who is missing one is a start-up and
        # check-config warning, since it depends on the therapists, not on this section.
        return self
