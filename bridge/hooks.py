"""How a feature declares what the service runs for it: decorated methods, one install.

A feature is a class whose methods carry the decorators below; `Service.install(feature)`
collects them:

    class Clocks:
        @pair_hook
        async def on_pair_event(self, tx, pair, ev) -> list[Effect]: ...

        @on_timer("sla")
        async def on_timer(self, tx, fired, now) -> list[Effect]: ...

        @on_invoke("sla.away")
        async def on_away(self, invoke) -> None: ...

        @facts
        async def command_facts(self, tx, ctx) -> SlaFacts | None: ...

A timer kind or an operation has one handler only: a second claim on it is refused when it
is installed (`HookConflict`), never left to whichever came last. Pair hooks and facts
providers run in installation order (within one feature, in the order they are written).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from bridge.core.commands import CommandContext
from bridge.core.model import Effect, Invoke, Pair, RoomEvent, TimerFired
from bridge.store.base import Executor

#: Extra policy run for each pair-room event inside its transaction (the SLA clock, ...).
PairHook = Callable[[Executor, Pair, RoomEvent], Awaitable[list[Effect]]]
#: Decides what a fired timer of one kind does, inside the timer's transaction.
TimerHandler = Callable[[Executor, TimerFired, datetime], Awaitable[list[Effect]]]
#: Performs an Invoke effect after the commit (I/O-heavy work: exports, uploads).
InvokeHandler = Callable[[Invoke], Awaitable[None]]
#: Looks up what a desk or pair command needs before the core decides: the feature's facts
#: as one frozen dataclass (`CommandContext.fact` finds it by its type), or None when the
#: room or the sender needs none of them.
FactsProvider = Callable[[Executor, CommandContext], Awaitable[object | None]]

HookKind = Literal["pair", "timer", "invoke", "facts"]

_MARK = "__confidant_hooks__"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class HookConflict(ValueError):
    """A feature installed twice, or two claims on the same timer kind or operation."""


@dataclass(frozen=True, slots=True)
class _Mark:
    kind: HookKind
    key: str | None = None


def _marked(method: F, mark: _Mark) -> F:
    setattr(method, _MARK, (*getattr(method, _MARK, ()), mark))
    return method


def pair_hook(method: F) -> F:
    """Run this method on every pair-room event (and other channels' messages), inside the
    event's transaction; the effects it returns are written with the event's."""
    return _marked(method, _Mark("pair"))


def on_timer(kind: str) -> Callable[[F], F]:
    """Handle fired timers of `kind`: the exact kind, or the prefix before its first dot
    (`on_timer("sla")` takes "sla.due", "sla.heads_up", ...)."""

    def mark(method: F) -> F:
        return _marked(method, _Mark("timer", kind))

    return mark


def on_invoke(*operations: str) -> Callable[[F], F]:
    """Perform the `Invoke` effects of these operations, after their transaction commits."""
    if not operations:
        raise ValueError("on_invoke needs at least one operation")

    def mark(method: F) -> F:
        for operation in operations:
            _marked(method, _Mark("invoke", operation))
        return method

    return mark


def facts(method: F) -> F:
    """Look up this feature's facts for a command before the core decides."""
    return _marked(method, _Mark("facts"))


def _attributes(cls: type) -> list[str]:
    """The class's attribute names in declaration order, base classes first."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        names.update(dict.fromkeys(vars(klass)))
    return list(names)


def _name(feature: object) -> str:
    return type(feature).__qualname__


class Hooks:
    """What the installed features declared; only `install` adds to it."""

    def __init__(self) -> None:
        self._pair: list[PairHook] = []
        self._facts: list[FactsProvider] = []
        self._timers: dict[str, tuple[str, TimerHandler]] = {}
        self._invokes: dict[str, tuple[str, InvokeHandler]] = {}
        self._features: list[object] = []

    def install(self, feature: object) -> None:
        """Take every decorated method of `feature`, all or nothing.

        Raises `HookConflict` when the feature was installed before, or when it claims a
        timer kind or an operation that another feature (or it, twice) handles already.
        """
        if any(feature is known for known in self._features):
            raise HookConflict(f"feature {_name(feature)} installed twice")
        owner = _name(feature)
        pair: list[PairHook] = []
        provided: list[FactsProvider] = []
        timers: dict[str, TimerHandler] = {}
        invokes: dict[str, InvokeHandler] = {}
        for attr in _attributes(type(feature)):
            for mark in getattr(getattr(type(feature), attr), _MARK, ()):
                bound = getattr(feature, attr)
                if mark.kind == "pair":
                    pair.append(bound)
                elif mark.kind == "facts":
                    provided.append(bound)
                elif mark.kind == "timer":
                    _claim(self._timers, timers, "timer kind", mark.key, owner, bound)
                else:
                    _claim(self._invokes, invokes, "operation", mark.key, owner, bound)
        self._features.append(feature)
        self._pair += pair
        self._facts += provided
        self._timers.update({kind: (owner, h) for kind, h in timers.items()})
        self._invokes.update({op: (owner, h) for op, h in invokes.items()})

    @property
    def pair_hooks(self) -> tuple[PairHook, ...]:
        return tuple(self._pair)

    @property
    def facts_providers(self) -> tuple[FactsProvider, ...]:
        return tuple(self._facts)

    def timer_handler(self, kind: str) -> TimerHandler | None:
        """The handler of `kind`, or else of its prefix before the first dot."""
        found = self._timers.get(kind) or self._timers.get(kind.split(".", 1)[0])
        return found[1] if found is not None else None

    def invoke_handler(self, operation: str) -> InvokeHandler | None:
        found = self._invokes.get(operation)
        return found[1] if found is not None else None

    def handles_timer(self, kind: str) -> bool:
        return self.timer_handler(kind) is not None

    def handles_invoke(self, operation: str) -> bool:
        return operation in self._invokes


def _claim(
    taken: dict[str, tuple[str, Any]],
    new: dict[str, Any],
    what: str,
    key: str | None,
    owner: str,
    handler: Any,
) -> None:
    if key is None:
        raise HookConflict(f"{what} of {owner} has no name")
    if key in taken:
        raise HookConflict(f"{what} {key!r} of {owner} is handled by {taken[key][0]} already")
    if key in new:
        raise HookConflict(f"{what} {key!r} is handled twice by {owner}")
    new[key] = handler
