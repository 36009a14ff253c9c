"""security.txt (RFC 9116), the format.

``parse_security_txt`` is pure: text in, ``SecurityTxt`` out, with every validity problem named by
the codes validators use (``no_contact``, ``no_expire``, ``multi_expire``, ``invalid_expiry``,
``expired``, ``no_canonical_match``, ``invalid_line``...). Bodies that are not a security.txt at all
(HTML soft-404s, nothing shaped like ``Field: value``, over the size or line limits of RFC 9116
§5.4) raise ``SecurityTxtError``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

from ..addresses import header_text
from ..errors import SourceProtocolError

__all__ = [
    "SecurityTxt",
    "SecurityTxtError",
    "parse_security_txt",
    "SOURCE",
    "BLOCKING_ERRORS",
    "MAX_LINES",
    "MAX_FIELD_LENGTH",
]

SOURCE = "security.txt"
MAX_LINES = 1000  # RFC 9116 §5.4
MAX_FIELD_LENGTH = 2048  # RFC 9116 §5.4
DEFAULT_MAX_BYTES = 32_768  # RFC 9116 §5.4
_MAX_UNKNOWN = 50

# problems after which a file's contacts are not mailed (the others are reported, not fatal)
BLOCKING_ERRORS = frozenset(
    {"no_contact", "no_expire", "multi_expire", "invalid_expiry", "expired", "no_canonical_match"}
)

_FIELD = re.compile(r"^([!-9;-~]+):(.*)$")  # RFC 5322 field-name: printable ASCII but ':'
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_HTML_MARKERS = ("<html", "<!doctype", "<head", "<body", "<?xml", "<script", "<title", "<meta")
_PGP_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
_PGP_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"
_PGP_END = "-----END PGP SIGNATURE-----"
_WEB_URI_FIELDS = ("canonical", "policy", "acknowledgments", "hiring", "csaf")


class SecurityTxtError(SourceProtocolError):
    """The body is not a usable security.txt: HTML, garbage, or over RFC 9116's limits.

    ``statement`` is True when the body is still recognisably the owner's file (broken OpenPGP
    armour, over the size or line limits), False for a page that is no security.txt at all.
    """

    def __init__(self, message: str, *, target: str | None = None, statement: bool = False):
        super().__init__(message, target=target, source=SOURCE)
        self.statement = statement


@dataclass(frozen=True, slots=True)
class SecurityTxt:
    """A parsed security.txt and what is wrong with it.

    ``errors`` and ``warnings`` hold validator codes, each once, in the order first seen;
    ``messages`` says where and why in words. ``contacts`` keeps the file's order (preference).
    """

    url: str
    contacts: tuple[str, ...] = ()
    expires: datetime | None = None
    encryption: tuple[str, ...] = ()
    policy: tuple[str, ...] = ()
    canonical: tuple[str, ...] = ()
    preferred_languages: tuple[str, ...] = ()
    acknowledgments: tuple[str, ...] = ()
    hiring: tuple[str, ...] = ()
    csaf: tuple[str, ...] = ()
    signed: bool = False
    signature: str = ""  # whether the signature verified, and by which key (notifier.trust)
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    unknown_fields: tuple[tuple[str, str], ...] = ()

    @property
    def valid(self) -> bool:
        """Free of every RFC 9116 error."""
        return not self.errors

    @property
    def expired(self) -> bool:
        return "expired" in self.errors

    @property
    def usable(self) -> bool:
        """Whether the contacts may be mailed: nothing in ``BLOCKING_ERRORS`` applies."""
        return not BLOCKING_ERRORS.intersection(self.errors)


@dataclass(slots=True)
class _Collector:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def error(self, code: str, message: str) -> None:
        if code not in self.errors:
            self.errors.append(code)
        if len(self.messages) < 100:
            self.messages.append(header_text(message, limit=300))

    def warn(self, code: str, message: str) -> None:
        if code not in self.warnings:
            self.warnings.append(code)
        if len(self.messages) < 100:
            self.messages.append(header_text(message, limit=300))


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch)[0] == "C" and ch != "\t" for ch in value)


def _parse_rfc3339(value: str) -> datetime | None:
    match = _RFC3339.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    try:
        if offset in ("Z", "z"):
            zone = UTC
        else:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                return None
            sign = -1 if offset[0] == "-" else 1
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        # RFC 3339 allows a leap second; datetime does not
        stamp = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone)
    except ValueError:
        return None
    if second > 60:
        return None
    if fraction:
        stamp += timedelta(microseconds=int(fraction[1:7].ljust(6, "0")))
    return stamp.astimezone(UTC)


def _normal_url(url: str) -> str:
    """``url`` as compared for Canonical: scheme and host case-folded, default port dropped."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port
    except ValueError:
        return url.strip()
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc += f":{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def _unsign(lines: list[str], problems: _Collector) -> tuple[list[tuple[int, str]], bool]:
    """The lines to parse (number, text): the signed part of a cleartext-signed file, un-escaped,
    and whether it was signed. The signature is checked elsewhere (``notifier.trust``), against
    the whole body."""
    numbered = list(enumerate(lines, 1))
    first = next((i for i, line in numbered if line.strip()), None)
    if first is None or lines[first - 1].strip() != _PGP_BEGIN:
        return numbered, False
    index = first  # 0-based position of the line after the BEGIN marker
    while index < len(lines) and lines[index].strip():
        if not _FIELD.match(lines[index]):
            raise SecurityTxtError("OpenPGP cleartext armour: bad header line", statement=True)
        index += 1
    if index >= len(lines):
        raise SecurityTxtError("OpenPGP cleartext armour without a signed text", statement=True)
    body: list[tuple[int, str]] = []
    index += 1
    while index < len(lines) and lines[index].strip() != _PGP_SIGNATURE:
        line = lines[index]
        if line.startswith("- "):
            line = line[2:]
        elif line.startswith("-"):
            problems.error("signed_format_issue", f"line {index + 1}: dash not escaped")
        body.append((index + 1, line))
        index += 1
    if index >= len(lines):
        raise SecurityTxtError(
            "OpenPGP cleartext-signed file without a signature block", statement=True
        )
    end = next(
        (i for i in range(index, len(lines)) if lines[i].strip() == _PGP_END),
        None,
    )
    if end is None:
        problems.error("pgp_data_error", "the signature block is not closed")
    elif any(line.strip() for line in lines[end + 1 :]):
        problems.error("data_after_sig", "data after the signature block")
    return body, True


def parse_security_txt(
    text: str,
    *,
    url: str,
    now: datetime,
    max_bytes: int = DEFAULT_MAX_BYTES,
    chain: Sequence[str] = (),
) -> SecurityTxt:
    """Parse and validate a security.txt fetched from ``url`` (``chain``: its redirect chain).

    Raises ``SecurityTxtError`` for a body that is not a security.txt at all; everything short of
    that is reported in the result's ``errors`` and ``warnings``.
    """
    if not isinstance(text, str):
        raise SecurityTxtError("security.txt body is not text")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SecurityTxtError(f"security.txt over {max_bytes} bytes", statement=True)
    problems = _Collector()
    if text.startswith("\ufeff"):
        problems.error("bom_in_file", "the file starts with a byte order mark")
        text = text[1:]
    head = text[:2048].lstrip().lower()
    if head.startswith("<") or any(marker in head for marker in _HTML_MARKERS):
        raise SecurityTxtError("an HTML page, not a security.txt (soft 404?)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_LINES:
        raise SecurityTxtError(f"security.txt over {MAX_LINES} lines", statement=True)
    lines = [line.removesuffix("\r") for line in lines]
    if lines and "\n" not in text:
        problems.warn("no_line_separators", "the last line has no line separator")

    body, signed = _unsign(lines, problems)

    fields = 0
    values: dict[str, list[str]] = {}
    languages: list[str] = []
    unknown: list[tuple[str, str]] = []
    for number, raw in body:
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        line = raw
        if line[0] in " \t":
            problems.error("prec_ws", f"line {number}: leading whitespace")
            line = line.lstrip(" \t")
        match = _FIELD.match(line)
        if not match:
            problems.error("invalid_line", f"line {number}: not a 'Field: value' line")
            continue
        fields += 1
        name, value = match.group(1).lower(), match.group(2)
        if len(line) > MAX_FIELD_LENGTH:
            problems.error(
                "field_too_long", f"line {number}: over {MAX_FIELD_LENGTH} characters; ignored"
            )
            continue
        if value and value[0] not in " \t":
            problems.error("no_space", f"line {number}: no space after the colon")
        value = value.strip(" \t")
        if not value:
            problems.error("empty_value", f"line {number}: {name} has no value")
            continue
        if _has_control(value):
            problems.error("invalid_line", f"line {number}: control characters in {name}")
            continue
        if name == "preferred-languages":
            if languages:
                problems.error("multi_lang", f"line {number}: Preferred-Languages repeated")
                continue
            tags = [tag.strip() for tag in value.split(",")]
            for tag in tags:
                if not _LANGUAGE_TAG.match(tag):
                    problems.error("invalid_lang", f"line {number}: bad language tag {tag!r}")
            languages = [tag for tag in tags if _LANGUAGE_TAG.match(tag)] or ["und"]
            continue
        if name in ("contact", "expires", "encryption", *_WEB_URI_FIELDS):
            values.setdefault(name, []).append(value)
            lowered = value.lower()
            if name == "contact" and ":" not in value.split("@", 1)[0]:
                problems.error("no_uri", f"line {number}: Contact is not a URI: {value}")
            elif name != "expires" and lowered.startswith("http://"):
                problems.error("no_https", f"line {number}: {name} is not https: {value}")
            continue
        problems.warn("unknown_field", f"line {number}: unknown field {name}")
        if len(unknown) < _MAX_UNKNOWN:
            unknown.append((name, value))

    if fields == 0:
        raise SecurityTxtError("no 'Field: value' lines: not a security.txt")

    contacts = values.get("contact", [])
    if not contacts:
        problems.error("no_contact", "no Contact field")

    expires: datetime | None = None
    stamps = values.get("expires", [])
    if not stamps:
        problems.error("no_expire", "no Expires field")
    elif len(stamps) > 1:
        problems.error("multi_expire", f"{len(stamps)} Expires fields (exactly one allowed)")
    if stamps:
        parsed = [_parse_rfc3339(stamp) for stamp in stamps]
        good = [stamp for stamp in parsed if stamp is not None]
        if len(good) < len(parsed):
            problems.error("invalid_expiry", "Expires is not an RFC 3339 date-time")
        expires = min(good) if good else None
    if expires is not None:
        moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        if expires <= moment:
            problems.error("expired", f"expired on {expires.isoformat()}")
        elif expires - moment > timedelta(days=366):
            problems.warn("long_expiry", "Expires is more than a year ahead")

    canonical = values.get("canonical", [])
    if canonical:
        fetched = {_normal_url(u) for u in (url, *chain) if u}
        if not fetched.intersection(_normal_url(c) for c in canonical):
            problems.error("no_canonical_match", f"{url} is not among the Canonical URLs")
    elif signed:
        problems.warn("no_canonical", "signed, but without a Canonical field")
    if not signed:
        problems.warn("not_signed", "not OpenPGP-signed")
    if any(c.lower().startswith("mailto:") for c in contacts) and not values.get("encryption"):
        problems.warn("no_encryption", "a mailto: Contact without an Encryption field")

    return SecurityTxt(
        url=url,
        contacts=tuple(contacts),
        expires=expires,
        encryption=tuple(values.get("encryption", [])),
        policy=tuple(values.get("policy", [])),
        canonical=tuple(canonical),
        preferred_languages=tuple(languages),
        acknowledgments=tuple(values.get("acknowledgments", [])),
        hiring=tuple(values.get("hiring", [])),
        csaf=tuple(values.get("csaf", [])),
        signed=signed,
        errors=tuple(problems.errors),
        warnings=tuple(problems.warnings),
        messages=tuple(problems.messages),
        unknown_fields=tuple(unknown),
    )
