"""A practice's `templates_dir` in every language: one text replaced, and what check-config
refuses (a syntax error, a variable the bridge does not pass, a text without a translation
in a language it is shown in, a language the texts do not exist in)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bridge.adapters.i18n import catalogue_path
from bridge.adapters.render import Renderer
from bridge.adapters.template_check import template_problems
from bridge.config import minimal_config_dict


def write(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")


def catalogue(root: Path, language: str, entries: dict[str, str]) -> None:
    catalog = Catalog(locale=language)
    for msgid, msgstr in entries.items():
        catalog.add(msgid, msgstr)
    path = catalogue_path(root, language)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog)


def test_an_override_replaces_one_text_in_every_language(tmp_path: Path) -> None:
    practice = tmp_path / "practice"
    write(
        practice,
        "messages/video_off.txt.j2",
        "{% trans %}We do not offer video calls.{% endtrans %}\n",
    )
    catalogue(practice, "de", {"We do not offer video calls.": "Wir bieten keine Videoanrufe an."})
    write(practice, "es/messages/video_off.txt.j2", "No ofrecemos videollamadas.\n")
    renderer = Renderer(overrides=practice)
    assert template_problems(renderer) == []
    assert renderer.text("video_off", {}) == "We do not offer video calls."
    assert renderer.text("video_off", {}, "de") == "Wir bieten keine Videoanrufe an."
    assert renderer.text("video_off", {}, "es") == "No ofrecemos videollamadas."
    # Every other text stays the shipped one, translated as shipped.
    assert renderer.text("video_none", {}, "de") == Renderer().text("video_none", {}, "de")


def test_check_config_names_each_broken_override(tmp_path: Path) -> None:
    practice = tmp_path / "practice"
    write(practice, "messages/video_off.txt.j2", "{% trans %}No video here.{% endtrans %}\n")
    write(practice, "messages/video_none.txt.j2", "{% if %}broken\n")
    write(practice, "messages/welcome.txt.j2", "Welcome, {{ patient_name }}.\n")
    write(practice, "fr/messages/video_usage.txt.j2", "Utilisez !video\n")
    write(practice, "messages/nothing_like_it.txt.j2", "Hello\n")
    problems = template_problems(Renderer(overrides=practice))
    text = "\n".join(problems)
    assert "messages/video_none.txt.j2:1:" in text
    assert "messages/welcome.txt.j2: uses 'patient_name', which is not passed" in text
    assert "no de translation of 'No video here.'" in text
    assert "no es translation of 'No video here.'" in text
    assert "fr/messages/video_usage.txt.j2: 'fr' is not a language of the texts" in text
    assert "the bridge renders no template 'messages/nothing_like_it.txt.j2'" in text
    assert len(problems) == 6

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(minimal_config_dict(templates_dir=str(practice))))
    checked = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 1
    assert "templates_dir: messages/welcome.txt.j2: uses 'patient_name'" in checked.stderr
    assert "OK" not in checked.stdout
