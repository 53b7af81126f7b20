"""No feature imports another feature (nor the list of features): they meet through ports."""

from __future__ import annotations

import ast
from pathlib import Path

import bridge

FEATURES = Path(bridge.__file__).parent / "features"


def _module(path: Path) -> str:
    parts = path.relative_to(FEATURES.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every module `path` imports, absolute; `from X import Y` counts as X and X.Y."""
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _feature(module: str) -> str | None:
    """The feature a module belongs to: `bridge.features.NAME[.sub]` -> NAME."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["bridge", "features"] else None


def test_no_feature_imports_another() -> None:
    crossings = []
    for path in sorted(FEATURES.rglob("*.py")):
        own = _feature(_module(path))
        if own is None or own == "installed":
            continue  # the package's face, and the list of features that imports them all
        for target in _imported(path):
            other = _feature(target)
            if target == "bridge.features" or (other is not None and other != own):
                crossings.append(f"{_module(path)} -> {target}")
    assert crossings == []


def test_every_feature_is_listed() -> None:
    from bridge.features.installed import ALL

    modules = {
        p.stem for p in FEATURES.glob("*.py") if p.name not in ("__init__.py", "installed.py")
    }
    packages = {p.name for p in FEATURES.iterdir() if (p / "__init__.py").exists()}
    listed = {install.__module__.split(".")[2] for install in ALL}
    assert listed == modules | packages


def _modules_under(*packages: str) -> list[str]:
    root = FEATURES.parent.parent
    found = []
    for package in packages:
        for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
            found.append(_module(path))
    return found


def test_each_feature_and_face_module_imports_on_its_own() -> None:
    """A fresh interpreter imports each one first: an import cycle that only bites in some
    orders (a face importing a use case, a feature importing the face) fails here."""
    import subprocess
    import sys

    modules = _modules_under("bridge.features", "bridge.web", "bridge.cli")
    script = (
        "import importlib, subprocess, sys\n"
        "failed = []\n"
        "procs = [(m, subprocess.Popen([sys.executable, '-c', f'import {m}'],"
        " stderr=subprocess.PIPE)) for m in sys.argv[1:]]\n"
        "for m, p in procs:\n"
        "    _, err = p.communicate()\n"
        "    if p.returncode:\n"
        "        failed.append(m + ': ' + err.decode().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *modules], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
