"""What `pair language` and `therapist language` share: show a person's language, or set it.

`CODE` is one of the languages of the texts; `practice` returns the person to the practice's
language (`practice.language`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bridge.cli.base import now
from bridge.core.language import LANGUAGES, parse_language

#: The word that clears a person's own language.
PRACTICE = "practice"


def add_language_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "language",
        nargs="?",
        help=f"one of {', '.join(LANGUAGES)}, or {PRACTICE} for the practice's; "
        "leave out to show it",
    )


async def print_or_set_language(parts: Any, args: argparse.Namespace, pair: Any = None) -> int:
    """Print `USER: LANGUAGE (own|practice)`, after setting it when a language is given.

    With `pair`, the person is that pair's patient; else `args.user` (a therapist)."""
    from bridge.features.language import language_of, set_language_of, set_patient_language

    user_id = pair.patient_id if pair is not None else args.user
    if args.language is not None:
        wanted = None if args.language.lower() == PRACTICE else parse_language(args.language)
        if wanted is None and args.language.lower() != PRACTICE:
            print(
                f"{args.language!r} is not a language of the texts; use one of "
                f"{', '.join(LANGUAGES)} or {PRACTICE}",
                file=sys.stderr,
            )
            return 2
        if pair is not None:
            await set_patient_language(parts, pair, wanted, actor="cli", now=now())
        else:
            await set_language_of(parts, user_id, wanted, actor="cli", now=now())
    language, own = await language_of(parts, user_id)
    print(f"{user_id}: {language} ({'own' if own else PRACTICE})")
    return 0
