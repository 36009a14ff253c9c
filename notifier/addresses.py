"""E-mail addresses and header text from untrusted sources: validated or refused, never trusted.

Every address a source finds passes ``clean_address`` before it becomes a ``Contact``; every value
that reaches a header passes ``header_text``. CR, LF and other control characters never survive.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

__all__ = ["clean_address", "header_text", "is_placeholder", "PLACEHOLDER_ADDRESSES"]

# registries publish these where a contact is withheld or redacted; they are not mailboxes
PLACEHOLDER_ADDRESSES = frozenset(
    {
        "removed@lacnic.net",
        "abuse@example.com",
        "abuse@example.net",
        "noc@example.net",
        "nobody@nowhere.com",
    }
)
_PLACEHOLDER_WORDS = ("redacted", "not disclosed", "please query", "withheld", "data protected")

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
_ADDRESS = re.compile(rf"^({_LOCAL})@({_LABEL}(?:\.{_LABEL})+)$")


def _has_control(value: str) -> bool:
    """Control and format characters, and the line and paragraph separators (U+2028/9)."""
    return any(
        unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
        for ch in value
    )


def is_placeholder(address: str) -> bool:
    lowered = address.lower()
    return lowered in PLACEHOLDER_ADDRESSES or any(w in lowered for w in _PLACEHOLDER_WORDS)


def clean_address(raw: str) -> str | None:
    """A bare, valid, lower-cased-domain address from ``raw``, or None if it is not one.

    Accepts ``mailto:`` URIs (percent-decoded, query dropped) and ``Name <addr>`` forms. Anything
    holding control characters anywhere, even in the part that would be dropped (a CRLF injection
    attempt), is refused whole, not repaired. Surrounding spaces and tabs are ignored.
    """
    if not isinstance(raw, str) or len(raw) > 512:
        return None
    value = raw.strip(" \t")
    # checked on the whole value first: a CR LF in a display name or a mailto query, or a
    # trailing NEL, must not be cut away to leave a usable address beside it
    if _has_control(value):
        return None
    if value.lower().startswith("mailto:"):
        value = unquote(value[7:].split("?", 1)[0])
    if "<" in value and value.endswith(">"):
        value = value[value.rindex("<") + 1 : -1]
    if _has_control(value):  # percent-decoded from a mailto: URI
        return None
    value = value.strip()
    if is_placeholder(value):
        return None
    local, at, domain = value.rpartition("@")
    if not at:
        return None
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    candidate = f"{local}@{domain}"
    if len(candidate) > 254 or len(local) > 64 or not _ADDRESS.match(candidate):
        return None
    return candidate


def header_text(value: object, limit: int = 200) -> str:
    """Text safe for a header: control characters (CR, LF, NUL...) become spaces, runs collapse."""
    text = str(value)
    # printable ASCII holds no control character: skip the per-character look-up (messages of
    # a batch pass thousands of finding texts through here)
    if not (text.isascii() and text.isprintable()):
        text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
