"""The part of the build pyproject.toml cannot say: the top-level templates/ directory ships
inside the package, as `bridge/templates`, so an installed wheel renders what a checkout does;
config.example.yaml ships as `bridge/config/config.example.yaml` for `confidant init`."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
TEMPLATES = ROOT / "templates"
# Each directory under templates/ becomes a package of data only (no __init__.py), named
# explicitly so setuptools neither skips it nor warns about an implicit namespace; what each
# holds is in pyproject.toml's package-data.
template_packages = {
    "bridge.templates" + "".join("." + part for part in path.relative_to(TEMPLATES).parts): path
    for path in [TEMPLATES, *sorted(p for p in TEMPLATES.rglob("*") if p.is_dir())]
}


class BuildWithExample(build_py):
    """Also ship config.example.yaml, which `confidant init` starts from, in the package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "bridge" / "config" / "config.example.yaml"
        # An editable build's build_lib holds no package directories: make the one we need.
        self.mkpath(str(target.parent))
        self.copy_file(str(ROOT / "config.example.yaml"), str(target))


setup(
    cmdclass={"build_py": BuildWithExample},
    packages=[*find_packages(include=["bridge*"]), *template_packages],
    package_dir={"bridge.templates": "templates"},
)
