"""Which language a message is written in, and why.

RFC 9116 ``Preferred-Languages`` (and a contacts.yaml entry's ``languages``) is a list of
RFC 5646 tags, most preferred first. We match by primary subtag (``pt-BR`` takes ``pt``) and
take the first we have a translation for; English when none matches or none is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..addresses import header_text

__all__ = ["LanguageChoice", "choose_language"]

DEFAULT = "en"


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    tag: str  # what Content-Language says
    reason: str  # one line for the log


def choose_language(wanted: Iterable[str], available: Iterable[str]) -> LanguageChoice:
    have = set(available)
    asked = [header_text(w, 35).strip().lower() for w in wanted]
    asked = [w for w in asked if w]
    shown = ", ".join(asked[:8])
    for tag in asked:
        primary = tag.split("-", 1)[0]
        if primary in have:
            if primary == asked[0].split("-", 1)[0]:
                return LanguageChoice(primary, f"the recipient prefers {shown}")
            return LanguageChoice(
                primary, f"first of the recipient's languages ({shown}) we have a translation for"
            )
    if not asked:
        return LanguageChoice(DEFAULT, "the recipient names no preferred language")
    return LanguageChoice(DEFAULT, f"no translation for the recipient's languages ({shown})")
