"""Declared hooks: what `Service.install` collects from a feature, and what it refuses."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge import hooks
from bridge.core.commands import CommandContext
from bridge.core.model import Effect, Invoke, Pair, RoomEvent, TimerFired
from bridge.hooks import HookConflict, Hooks
from bridge.store.base import Executor


class Clocks:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hooks.pair_hook
    async def first(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        self.seen.append("first")
        return []

    @hooks.pair_hook
    async def again(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        self.seen.append("again")
        return []

    @hooks.on_timer("sla")
    async def fired(self, tx: Executor, fired: TimerFired, now: datetime) -> list[Effect]:
        return []

    @hooks.on_invoke("sla.away", "sla.back")
    async def absence(self, invoke: Invoke) -> None:
        self.seen.append(invoke.operation)

    @hooks.facts
    async def command_facts(self, tx: Executor, ctx: CommandContext) -> object | None:
        return None

    async def not_a_hook(self) -> None:
        raise AssertionError("never collected")


class OtherClocks:
    @hooks.on_timer("sla")
    async def fired(self, tx: Executor, fired: TimerFired, now: datetime) -> list[Effect]:
        return []


class Twice:
    @hooks.on_invoke("export")
    async def one(self, invoke: Invoke) -> None: ...

    @hooks.on_invoke("export")
    async def other(self, invoke: Invoke) -> None: ...


async def test_install_collects_the_declared_methods_in_order() -> None:
    registry = Hooks()
    feature = Clocks()
    registry.install(feature)
    assert [h.__name__ for h in registry.pair_hooks] == ["first", "again"]
    assert [p.__name__ for p in registry.facts_providers] == ["command_facts"]
    assert registry.handles_timer("sla.due") and registry.handles_timer("sla")
    assert not registry.handles_timer("session.start")
    assert registry.handles_invoke("sla.away") and registry.handles_invoke("sla.back")
    handler = registry.invoke_handler("sla.back")
    assert handler is not None
    await handler(Invoke("sla.back", "!desk:p", {}))
    assert feature.seen == ["sla.back"]


def test_a_second_claim_is_refused_and_nothing_of_it_is_kept() -> None:
    registry = Hooks()
    registry.install(Clocks())
    with pytest.raises(HookConflict, match="timer kind 'sla' of OtherClocks is handled by Clocks"):
        registry.install(OtherClocks())
    with pytest.raises(HookConflict, match="operation 'export' is handled twice by Twice"):
        registry.install(Twice())
    assert not registry.handles_invoke("export")
    assert len(registry.pair_hooks) == 2


def test_one_feature_installed_twice_is_refused() -> None:
    registry = Hooks()
    feature = Clocks()
    registry.install(feature)
    with pytest.raises(HookConflict, match="feature Clocks installed twice"):
        registry.install(feature)


def test_exact_timer_kind_comes_before_its_prefix() -> None:
    class Exact:
        @hooks.on_timer("sla.due")
        async def due(self, tx: Executor, fired: TimerFired, now: datetime) -> list[Effect]:
            return []

    registry = Hooks()
    registry.install(Clocks())
    registry.install(Exact())
    found = registry.timer_handler("sla.due")
    assert found is not None and found.__name__ == "due"
    other = registry.timer_handler("sla.heads_up")
    assert other is not None and other.__name__ == "fired"
