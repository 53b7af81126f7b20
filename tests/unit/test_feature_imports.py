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
        if own is None:
            continue  # the package's __init__: the list of features imports them all
        for target in _imported(path):
            other = _feature(target)
            if target == "bridge.features" or (other is not None and other != own):
                crossings.append(f"{_module(path)} -> {target}")
    assert crossings == []


def test_every_feature_is_listed() -> None:
    from bridge.features import ALL

    modules = {p.stem for p in FEATURES.glob("*.py") if p.name != "__init__.py"}
    packages = {p.name for p in FEATURES.iterdir() if (p / "__init__.py").exists()}
    listed = {install.__module__.split(".")[2] for install in ALL}
    assert listed == modules | packages
