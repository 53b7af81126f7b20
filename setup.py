"""The part of the build pyproject.toml cannot say: the top-level templates/ directory ships
inside the package, as `bridge/templates`, so an installed wheel renders what a checkout does."""

from pathlib import Path

from setuptools import find_packages, setup

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Each directory under templates/ becomes a package of data only (no __init__.py), named
# explicitly so setuptools neither skips it nor warns about an implicit namespace.
template_packages = {
    "bridge.templates" + "".join("." + part for part in path.relative_to(TEMPLATES).parts): path
    for path in [TEMPLATES, *sorted(p for p in TEMPLATES.rglob("*") if p.is_dir())]
}

setup(
    packages=[*find_packages(include=["bridge*"]), *template_packages],
    package_dir={"bridge.templates": "templates"},
    package_data={
        "bridge.store": ["migrations/*.sql"],
        "bridge.web": ["openapi.json"],
        **{name: ["*.j2"] for name in template_packages},
    },
)
