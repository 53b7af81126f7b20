"""The wheel carries every template, renders them from wherever it is installed, and a
practice's `templates_dir` overrides any of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bridge.adapters.render import Renderer, default_templates_dir
from bridge.config import minimal_config

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
#: What the build reads; copied so the build writes nothing into the shared checkout.
BUILD_INPUTS = (
    "bridge",
    "templates",
    "pyproject.toml",
    "setup.py",
    "README.md",
    "config.example.yaml",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("confidant-*.whl")
    return built


def shipped_templates() -> set[str]:
    return {str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.j2")}


def shipped_catalogues() -> set[str]:
    """The translations (`locale/<lang>/LC_MESSAGES/messages.po`), read at start."""
    return {str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.po")}


def test_the_wheel_holds_every_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    inside = {
        n.removeprefix("bridge/templates/") for n in names if n.startswith("bridge/templates/")
    }
    assert shipped_templates() and shipped_catalogues()
    assert inside == shipped_templates() | shipped_catalogues()
    # What the package reads at run time besides templates.
    assert "bridge/web/openapi.json" in names
    assert "bridge/config/config.example.yaml" in names
    assert any(n.startswith("bridge/store/migrations/") and n.endswith(".sql") for n in names)


RENDER_EVERY_TEMPLATE = """
import sys, jinja2
from pathlib import Path
import bridge
from bridge.adapters.render import Renderer, default_templates_dir
from bridge.email.convert import _default_env
root = Path(sys.argv[1]).resolve()
assert Path(bridge.__file__).resolve().is_relative_to(root), bridge.__file__
shipped = default_templates_dir()
assert shipped == root / "bridge" / "templates", shipped
renderer = Renderer()
names = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*.j2"))
for name in names:
    renderer.env.get_template(name)  # parses: found and well-formed
_default_env().get_template("messages/email_post.txt.j2")
print(len(names))
"""


def test_an_unpacked_wheel_renders_its_own_templates(wheel: Path, tmp_path: Path) -> None:
    """Installed, the package finds its templates inside itself, not in a checkout."""
    root = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(root)
    result = subprocess.run(
        [sys.executable, "-c", RENDER_EVERY_TEMPLATE, str(root)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(shipped_templates())


def test_a_fresh_virtualenv_runs_check_config_and_renders_every_template(
    wheel: Path, tmp_path: Path
) -> None:
    """`pip install confidant-*.whl` into a virtualenv of its own, as a practice would."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=600,
    )
    import yaml

    from bridge.config import minimal_config_dict

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(minimal_config_dict()), encoding="utf-8")
    checked = subprocess.run(
        [str(venv / "bin" / "confidant"), "check-config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    assert ": OK (" in checked.stdout
    site = next((venv / "lib").glob("python3*/site-packages"))
    rendered = subprocess.run(
        [str(python), "-c", RENDER_EVERY_TEMPLATE, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert int(rendered.stdout) == len(shipped_templates())


def test_a_checkout_uses_the_top_level_templates() -> None:
    assert default_templates_dir() == TEMPLATES


def test_templates_dir_overrides_one_template_and_keeps_the_others(tmp_path: Path) -> None:
    override = tmp_path / "practice-templates"
    (override / "messages").mkdir(parents=True)
    (override / "messages" / "video_off.txt.j2").write_text("Video is not offered here.\n")
    cfg = minimal_config(templates_dir=str(override))
    assert cfg.templates_dir == override
    renderer = Renderer(overrides=cfg.templates_dir)
    assert renderer.text("video_off", {}) == "Video is not offered here."
    shipped = Renderer().text("video_usage", {"domain": "meet.example.org"})
    assert renderer.text("video_usage", {"domain": "meet.example.org"}) == shipped


def test_templates_dir_must_exist(tmp_path: Path) -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match=r"templates_dir: .* is not a directory"):
        minimal_config(templates_dir=str(tmp_path / "absent"))


def test_an_editable_install_builds_from_a_fresh_copy(tmp_path: Path) -> None:
    """`pip install -e .`, what `make deps` does on a fresh clone, builds and imports."""
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    built = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    located = subprocess.run(
        [str(python), "-c", "import bridge, sys; sys.stdout.write(bridge.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert located.returncode == 0, located.stderr
    assert Path(located.stdout).resolve().is_relative_to(source.resolve())
