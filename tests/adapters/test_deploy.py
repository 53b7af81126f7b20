"""The deployment files: the compose file's structure (Docker Compose itself is not on every
test machine), the container's first run, and the Postfix example's Confidant settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import minimal_config_dict, parse_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_services_volumes_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "synapse-init", "synapse", "confidant"} <= set(services)
    for name in ("postgres", "synapse", "confidant"):
        assert services[name]["healthcheck"]["test"], name
    assert services["synapse"]["depends_on"]["synapse-init"] == {
        "condition": "service_completed_successfully"
    }
    assert services["confidant"]["depends_on"]["synapse"] == {"condition": "service_healthy"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose["volumes"] or source.startswith("./"), (name, volume)
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")


def test_confidant_keeps_config_and_data_in_its_volume(compose: dict[str, Any]) -> None:
    confidant = compose["services"]["confidant"]
    # No read-only config mount: the first run writes the config where the data is.
    assert confidant["volumes"] == ["confidant-data:/var/lib/confidant"]
    assert confidant["read_only"] is True
    for port in confidant["ports"]:
        assert port.split(" ")[0].strip('"').startswith("127.0.0.1:"), port
    entry = (DEPLOY / "docker-entrypoint.sh").read_text()
    assert "confidant init" in entry and "--listen-host 0.0.0.0" in entry
    assert "--data-dir data" in entry and "--admin-token-file" in entry
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "postgresql-client" in dockerfile  # pg_dump, for backup.sh
    assert "pip install -e" not in dockerfile  # the wheel carries its templates


def test_the_container_first_run_writes_a_config_in_the_volume(tmp_path: Path) -> None:
    """The entry script's init line, run as the container runs it (with a stand-in
    homeserver URL: without an admin token init does not call it)."""
    from bridge.cli import main

    entry = (DEPLOY / "docker-entrypoint.sh").read_text()
    flags = re.search(r"--data-dir (\S+) --listen-host (\S+)", entry)
    assert flags is not None
    volume = tmp_path / "var-lib-confidant"
    config = volume / "config.yaml"
    secret = tmp_path / "confidant_db_url"
    secret.write_text("postgresql://confidant:pw@postgres/confidant\n")
    args = ["init", "-c", str(config), "--homeserver", "http://synapse:8008"]
    args += ["--bot", "@confidant:example.org", "--data-dir", flags.group(1)]
    args += ["--listen-host", flags.group(2), "--database-url", f"file:{secret}"]
    args += ["--admin-token-file", str(volume / "first-admin-token")]
    assert main(args) == 0
    from bridge.config import load_config

    cfg = load_config(config, env={})
    assert cfg.data_dir == volume / "data"
    assert cfg.smtp.host == "0.0.0.0" and cfg.http.host == "0.0.0.0"
    assert cfg.database_url.startswith("postgresql://confidant:")
    token = (volume / "first-admin-token").read_text().strip()
    assert cfg.http.token_ok(token)


def test_the_postfix_example_config_is_valid(tmp_path: Path) -> None:
    text = (DEPLOY / "postfix" / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    smtp = yaml.safe_load(block.group(1))["smtp"]
    for key in ("tls_cert", "tls_key"):
        path = tmp_path / Path(smtp[key]).name
        path.write_text("x")
        smtp[key] = str(path)
    smtp["auth_users"] = {"relay": "a-relay-password"}
    cfg = parse_config(minimal_config_dict(smtp=smtp), env={})
    assert cfg.smtp.sender_auth == "behind_mta" and cfg.smtp.authserv_id == "mx.example.org"
    assert "header_checks" in text and "IGNORE" in text


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="Docker Compose is not installed here; the structure tests above stand in",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in ("docker-compose.yml", "synapse-settings.py"):
        shutil.copy(DEPLOY / name, deploy / name)
    (deploy / "secrets").mkdir()
    for name in ("postgres_password", "synapse_db_password", "confidant_db_url"):
        (deploy / "secrets" / name).write_text("x\n")
    result = subprocess.run(
        ["docker", "compose", "-f", str(deploy / "docker-compose.yml"), "config", "-q"],
        env={"SERVER_NAME": "example.org", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
