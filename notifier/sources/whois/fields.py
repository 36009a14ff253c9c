"""Cleaning and reading the values of a WHOIS answer: lines, HTML, ranges, contacts."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser

from ...addresses import clean_address, header_text, is_placeholder
from ...models import Contact, Network, Role
from .registries import _FALLBACK_BELOW, _MAX_CONTACTS, _MAX_NOTES, SOURCE, _is_registry_own, _label

__all__: list[str] = []  # internal: the package (sources.whois) is the surface

# --------------------------------------------------------------------------- text helpers

_EMAIL_IN_TEXT = re.compile(
    r"(?<![\w.+%-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)"
)
_ABUSE_WORDS = re.compile(r"abuse|spam|secur|incident|csirt|\bcert\b|fraud|phish|hack", re.I)
_ABUSE_LOCAL = re.compile(r"abuse|secur|cert|csirt|cirt|incident|spam|^soc$", re.I)
_HANDLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*$")


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch)[0] == "C" for ch in value.replace("\t", " "))


def _lines(text: str) -> list[str]:
    """Lines split on LF only, so a lone CR stays inside its value and taints it."""
    if "\n" not in text and "\r" in text:
        return text.split("\r")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


class _TextOnly(HTMLParser):
    """The text of an HTML page, without scripts and styles (registry web gateways)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li") and self.parts:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_HTML_HINT = re.compile(r"<\s*(?:!doctype|html|head|body|pre|script|meta|div)\b", re.I)


def _looks_like_html(text: str) -> bool:
    return bool(_HTML_HINT.search(text[:4096]))


def _strip_html(text: str) -> str:
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def _clip(value: str, limit: int = 200) -> str:
    return header_text(value, limit)


def _parse_range(value: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(start, end, cidrs) from ``a - b``, a CIDR (LACNIC's ``200.57.128/19`` too) or an address."""
    text = re.sub(r"\(.*?\)", "", value).strip()
    try:
        if "-" in text and "/" not in text:
            first, _, last = text.partition("-")
            start = ipaddress.ip_address(first.strip())
            end = ipaddress.ip_address(last.strip())
            if start.version != end.version or int(end) < int(start):
                return None
            nets = list(ipaddress.summarize_address_range(start, end))
            cidrs = tuple(str(n) for n in nets[:32])
            return str(start), str(end), cidrs
        if "/" in text:
            address, _, length = text.partition("/")
            if ":" not in address and address.count(".") < 3:
                address = ".".join((address.split(".") + ["0", "0", "0"])[:4])
            network = ipaddress.ip_network(f"{address}/{length.strip()}", strict=False)
            return (
                str(network.network_address),
                str(network.broadcast_address),
                (str(network),),
            )
        single = ipaddress.ip_address(text)
        return str(single), str(single), (str(ipaddress.ip_network(single)),)
    except ValueError:
        return None


def _range_size(value: str) -> int | None:
    parsed = _parse_range(value)
    if parsed is None:
        return None
    return int(ipaddress.ip_address(parsed[1])) - int(ipaddress.ip_address(parsed[0]))


def _country(value: str) -> str:
    code = value.strip().split("#", 1)[0].strip().upper()
    return code if re.fullmatch(r"[A-Z]{2}", code) and code != "ZZ" else ""


def _asn(value: str) -> int | None:
    match = re.search(r"\bAS\s?(\d{1,10})\b", value, re.I)
    if match:
        number = int(match.group(1))
        return number if 0 < number < 2**32 else None
    return None


def _network(
    registry: str,
    range_text: str,
    *,
    handle: str = "",
    name: str = "",
    country: str = "",
    org: str = "",
    asn: int | None = None,
    cidrs: Sequence[str] = (),
) -> Network | None:
    parsed = _parse_range(range_text)
    if parsed is None and not cidrs:
        return None
    start, end, found = parsed if parsed else ("", "", ())
    declared: list[str] = []
    for cidr in cidrs:
        one = _parse_range(cidr)
        if one is not None:
            declared.extend(one[2])
    return Network(
        registry=registry,
        handle=_clip(handle or re.sub(r"\(.*?\)", "", range_text).strip(), 120),
        name=_clip(name, 120),
        cidrs=tuple(declared[:32]) or found,
        start=start,
        end=end,
        country=_country(country),
        org=_clip(org),
        asn=asn,
    )


class _Contacts:
    """Addresses found in one answer, cleaned, de-duplicated, each with why it was chosen."""

    def __init__(self, server: str, notes: list[str], label: str = ""):
        self._server = server
        self._label = label or _label(server)
        self._notes = notes
        self._found: dict[str, Contact] = {}

    def note(self, text: str) -> None:
        if len(self._notes) < _MAX_NOTES:
            self._notes.append(text)

    def add(self, raw: str, confidence: float, what: str, name: str = "") -> None:
        what = _clip(what, 160)
        value = raw.strip()
        if _has_control(value):
            self.note(
                f"refused an address with control characters in {what} at {self._server}"
                " (possible header injection)"
            )
            return
        address = clean_address(value)
        if address is None:
            if is_placeholder(value.strip("'\"<> ")):
                self.note(f"dropped placeholder address {_clip(value, 80)} ({what})")
            elif value:
                self.note(f"ignored malformed address {_clip(value, 80)!r} ({what})")
            return
        if _is_registry_own(address):
            self.note(f"skipped {address} ({what}): the registry's own mailbox, not the network's")
            return
        provenance = f"{what}, {self._label} WHOIS ({self._server})"
        contact = Contact(
            address=address,
            role=Role.NETWORK,
            sources=(SOURCE,),
            confidence=confidence,
            provenance=(provenance,),
            name=_clip(name, 120),
        )
        known = self._found.get(address)
        self._found[address] = known.merged(contact) if known else contact

    def add_from_text(self, text: str, confidence: float, what: str, context: str = "") -> None:
        """Addresses inside free text (remarks, comments) that speaks of abuse.

        ``context`` is the line before: "For abuse reports write to:" then the address. A line
        before that carries its own address introduced that one, not this one.
        """
        introduced = "@" not in context and bool(_ABUSE_WORDS.search(context))
        if not _ABUSE_WORDS.search(text) and not introduced:
            return
        if _has_control(text):
            if "@" in text:
                self.add(text, confidence, what)
            return
        for match in _EMAIL_IN_TEXT.finditer(text):
            self.add(match.group(1), confidence, what)

    def result(self) -> tuple[Contact, ...]:
        return _finish(self._found.values(), self._notes)


def _finish(contacts: Iterable[Contact], notes: list[str] | None = None) -> tuple[Contact, ...]:
    """Merge repeats, drop fallbacks when an abuse contact exists, strongest first, capped."""
    merged: dict[str, Contact] = {}
    for contact in contacts:
        known = merged.get(contact.address)
        merged[contact.address] = known.merged(contact) if known else contact
    found = list(merged.values())
    if any(c.confidence >= _FALLBACK_BELOW for c in found):
        dropped = [c.address for c in found if c.confidence < _FALLBACK_BELOW]
        found = [c for c in found if c.confidence >= _FALLBACK_BELOW]
        if dropped and notes is not None and len(notes) < _MAX_NOTES:
            notes.append(
                "technical/administrative contacts not used, an abuse contact exists: "
                + ", ".join(dropped[:5])
            )
    found.sort(key=lambda c: -c.confidence)
    if len(found) > _MAX_CONTACTS and notes is not None:
        notes.append(f"kept the first {_MAX_CONTACTS} of {len(found)} addresses")
    return tuple(found[:_MAX_CONTACTS])


def _is_abuse_local(address: str) -> bool:
    return bool(_ABUSE_LOCAL.search(address.partition("@")[0]))
