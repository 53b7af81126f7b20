"""The languages the bot's texts are written in, and how a typed or configured one is read.

English is the language of the templates themselves (each text's gettext msgid); German and
Spanish come from the catalogues next to them. A patient's language decides what the pair
room shows her, a therapist's what the desk room shows him; the practice's is the default.
"""

from __future__ import annotations

#: Every language the shipped texts exist in, English (the source) first.
LANGUAGES = ("en", "de", "es")

#: The language of a practice that says none.
DEFAULT_LANGUAGE = "en"

#: How each language names itself, for answers and listings.
NATIVE_NAMES = {"en": "English", "de": "Deutsch", "es": "español"}


def parse_language(text: str | None) -> str | None:
    """The supported language `text` names ("de", "DE", "de-AT", "de_DE"), else None."""
    if not text:
        return None
    code = text.strip().replace("_", "-").split("-", 1)[0].lower()
    return code if code in LANGUAGES else None
