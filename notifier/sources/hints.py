"""Host names a finding or the operator gives for an address: claims, checked before use.

A scanner record may carry names for the address it saw (nmap's hostnames, the names of a TLS
certificate, the HTTP Host, a CSV ``hostname`` column), and the operator may name one with
``--hostname``. None of them proves who runs the host: a certificate can list ten thousand names,
a record can be forged, a name can point elsewhere. So each hint is cleaned and bounded, then
used for owner lookups (security.txt, domain RDAP, overrides, the last-resort guess) only when
it is forward-confirmed: the name's own A/AAAA records hold the address. The rest are shown in
``resolve`` with the reason, at low confidence, and never written to.

Hostile names are refused with the reason: control or invisible characters, over 253
characters, wildcard certificate names, IP literals, and internationalised names that mix
scripts within a label (a homograph such as Latin ``p`` beside Cyrillic ``а``). Accepted
internationalised names are shown and used in their ASCII (punycode) form only.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Iterable

import idna

from ..addresses import header_text
from ..models import Finding, HintCheck, HostHint, Target
from . import LookupContext
from .rdns import _confirm, clean_hostname

__all__ = ["check_hints", "clean_hint", "hints_of", "finding_hints", "MAX_HINTS", "GIVEN"]

MAX_HINTS = 10  # names per address that are checked; each costs a forward lookup
MAX_REFUSED_SHOWN = 10
GIVEN = "given host name"  # a name passed to resolve/send rather than read from a scanner record
_MAX_LENGTH = 253
_SHOWN = 80
# script sets a single label may combine (Unicode TS 39, "highly restrictive")
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN"}


def _shown(raw: str) -> str:
    """A refused name as it may be printed: short, printable, never the whole of a huge one."""
    return header_text(raw[: _SHOWN * 2], limit=_SHOWN) or "(empty)"


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name (None for digits, hyphens, marks)."""
    if not ch.isalpha():
        return None
    word = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_ALIASES.get(word, word)


def _mixed_script_label(name: str) -> str | None:
    """The first label of ``name`` (Unicode form) that mixes scripts, or None."""
    for label in name.split("."):
        scripts = {s for s in (_script(ch) for ch in label) if s is not None}
        if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_MIXES):
            return label
    return None


def clean_hint(raw: object) -> tuple[str | None, str]:
    """``raw`` as an ASCII host name, or None and why it is refused."""
    if not isinstance(raw, str):
        return None, "not text"
    if len(raw) > _MAX_LENGTH + 1:
        return None, f"{len(raw)} characters: a host name has at most {_MAX_LENGTH}"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in raw):
        return None, "control or invisible characters"
    value = raw.strip().rstrip(".")
    if value.startswith("*."):
        return None, "a wildcard certificate name names no single host"
    unicode_form = value
    if not value.isascii() or "xn--" in value.lower():
        try:
            ascii_form = idna.encode(value, uts46=True).decode("ascii")
            unicode_form = idna.decode(ascii_form)
        except (idna.IDNAError, UnicodeError, ValueError):
            return None, "not a valid internationalised host name"
        mixed = _mixed_script_label(unicode_form)
        if mixed is not None:
            return None, f"mixes scripts in one label ({ascii_form}): a possible homograph"
        value = ascii_form
    cleaned = clean_hostname(value)
    if cleaned is None:
        return None, "not a host name"
    return cleaned, ""


def finding_hints(finding: Finding) -> list[HostHint]:
    """The host names a finding carries: the scanner's hints, then its ``hostname`` field."""
    given = [HostHint(finding.hostname, "finding hostname")] if finding.hostname else []
    return [*finding.hints, *given]


def hints_of(target: Target) -> list[HostHint]:
    """Every hint the target carries: its scanner hints, then the names given with it."""
    return [*target.hints, *(HostHint(name, GIVEN) for name in target.hostnames)]


async def check_hints(
    hints: Iterable[HostHint], confirmed_names: Iterable[str], target: Target, ctx: LookupContext
) -> tuple[list[HintCheck], list[str]]:
    """Clean, bound and forward-confirm ``hints`` (``confirmed_names``: already confirmed, e.g.
    by reverse DNS); the checks, and notes on what was left out."""
    known = set(confirmed_names)
    checks: list[HintCheck] = []
    notes: list[str] = []
    pending: dict[str, str] = {}  # name -> source, in order
    refused = skipped = 0
    for hint in hints:
        name, reason = clean_hint(hint.name)
        source = header_text(hint.source, limit=40) or "hint"
        if name is None:
            refused += 1
            if refused <= MAX_REFUSED_SHOWN:
                checks.append(
                    HintCheck(_shown(str(hint.name)), source, False, f"refused: {reason}")
                )
            continue
        if name in pending or any(c.name == name for c in checks):
            continue
        if name in known:
            checks.append(HintCheck(name, source, True, "also the address's confirmed PTR name"))
            continue
        if len(pending) >= MAX_HINTS:
            skipped += 1
            continue
        pending[name] = source
    if refused > MAX_REFUSED_SHOWN:
        notes.append(f"{refused} host name hints refused; the first {MAX_REFUSED_SHOWN} shown")
    if skipped:
        notes.append(f"{skipped} more host name hints not checked (at most {MAX_HINTS})")
    names = list(pending)
    reasons = await asyncio.gather(*(_confirm(name, target.ip, ctx) for name in names))
    for name, why in zip(names, reasons, strict=True):
        if why is None:
            checks.append(HintCheck(name, pending[name], True, f"resolves to {target.ip}"))
        else:
            checks.append(
                HintCheck(name, pending[name], False, f"not forward-confirmed: {why}; not used")
            )
    return checks, notes
