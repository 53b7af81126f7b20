"""`http.public_url`: where sign-in links from `!dashboard` point, behind a reverse proxy."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bridge.config import ConfigError, minimal_config
from bridge.features.dashboard import DashboardLinks


def links(**http: Any) -> DashboardLinks:
    cfg = minimal_config(http=http) if http else minimal_config()
    return DashboardLinks(SimpleNamespace(cfg=cfg))  # type: ignore[arg-type]


def test_links_start_with_the_public_address_when_there_is_one() -> None:
    assert links().base_url() == "http://127.0.0.1:8090"
    proxied = links(public_url="https://confidant.example.org/")
    assert proxied.base_url() == "https://confidant.example.org"


def test_a_public_address_without_a_scheme_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError) as refused:
        minimal_config(http={"public_url": "confidant.example.org"})
    assert any("http.public_url" in line for line in refused.value.lines())
