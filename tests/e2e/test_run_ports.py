"""`confidant run` with a port that is taken: one line naming the key, exit status 2.

The homeserver URL leads nowhere: the listeners are bound before the homeserver is
needed, so the port is checked (and reported) even while it is down.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import minimal_config_dict
from tests.features.test_email_bridge import SMTP, free_port

pytestmark = pytest.mark.integration


def run_bridge(tmp_path: Path, **overrides: Any) -> subprocess.CompletedProcess[str]:
    """`confidant run` with a config file; the homeserver URL leads nowhere on purpose."""
    config = minimal_config_dict(
        homeserver={"url": f"http://127.0.0.1:{free_port()}", "server_name": "localhost"},
        data_dir=str(tmp_path / "data"),
        **overrides,
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "bridge", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("key", ["smtp", "http"])
def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path, key: str):
    with taken_port() as sock:
        port = sock.getsockname()[1]
        sections = {
            "smtp": {**SMTP, "port": free_port()},
            "http": {"enabled": True, "port": free_port()},
        }
        sections[key]["port"] = port
        result = run_bridge(tmp_path, **sections)
    expected = (
        f"{key}.port: 127.0.0.1:{port} is already in use (another process is listening); "
        "choose a free port or stop the other process"
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert lines.count(expected) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
