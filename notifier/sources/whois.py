"""WHOIS over port 43 for IP addresses: one parser per registry format, a bounded client, referrals.

Three layers:

- ``parse_whois(text, server)`` is pure: it recognises the format (RPSL from RIPE, AFRINIC, APNIC
  and the NIRs that mirror it; ARIN's ``Key: value`` blocks; LACNIC and registro.br; JPNIC's
  bracketed labels; KRNIC; TWNIC's ``Netname:`` layout; IANA) and returns a ``WhoisRecord``: the
  network, the contacts with the reason each was chosen, and where to ask next.
- ``query_whois(server, query, ctx)`` talks to one server: per-server query syntax and charset,
  a byte cap, a deadline, per-server politeness, and rate-limit answers turned into errors.
- ``lookup(query, ctx)`` is the source: it starts at the network's registry (or asks IANA), and
  follows referrals (ARIN ``ReferralServer``, APNIC stubs, NIR mirrors) with a hop limit and
  loop detection, keeping every raw answer's SHA-256 as evidence.

Registry data is hostile input: every address goes through ``addresses.clean_address`` (so a
value carrying CR/LF is refused whole, with a note), names go through ``header_text``, and the
registries' own hostmaster mailboxes are never taken for the network's contact.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from typing import Protocol

from .. import net
from ..addresses import clean_address, header_text, is_placeholder
from ..errors import SourceError, SourceProtocolError, SourceUnavailable
from ..models import Contact, Evidence, Network, Role, SourceReport
from . import LookupContext, Query

__all__ = [
    "Referral",
    "WhoisRecord",
    "parse_whois",
    "decode_answer",
    "query_string",
    "registry_server",
    "query_whois",
    "lookup",
    "IANA_SERVER",
    "ABUSE_CONFIDENCE",
    "STATED_CONFIDENCE",
    "FALLBACK_CONFIDENCE",
]

SOURCE = "whois"
IANA_SERVER = "whois.iana.org"

# an explicit abuse field: abuse-mailbox, the RIPE abuse header, OrgAbuseEmail, an abuse-c handle
ABUSE_CONFIDENCE = 0.85
# an address the record itself says to use for abuse (remarks, an abuse@ role e-mail, the
# contact an NIR lists for the network)
STATED_CONFIDENCE = 0.7
# technical / NOC / administrative contacts: used only when nothing better is published
FALLBACK_CONFIDENCE = 0.5
_FALLBACK_BELOW = 0.6

_MAX_CONTACTS = 20
_MAX_NOTES = 60
_MAX_VALUE = 1000
_MAX_HANDLE_QUERIES = 2
# how long nobody queries a server that told us we are over its limit
_RATE_LIMIT_BACKOFF = 60.0


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True, slots=True)
class _Registry:
    label: str  # Network.registry, and how provenance names it (same spelling as RDAP)
    server: str
    charset: str


_REGISTRIES: dict[str, _Registry] = {
    r.server: r
    for r in (
        _Registry("ARIN", "whois.arin.net", "utf-8"),
        _Registry("RIPE NCC", "whois.ripe.net", "utf-8"),
        _Registry("APNIC", "whois.apnic.net", "iso-8859-1"),
        _Registry("LACNIC", "whois.lacnic.net", "utf-8"),
        _Registry("AFRINIC", "whois.afrinic.net", "utf-8"),
        _Registry("JPNIC", "whois.nic.ad.jp", "iso-2022-jp"),
        _Registry("KRNIC", "whois.nic.or.kr", "utf-8"),
        _Registry("TWNIC", "whois.twnic.net.tw", "utf-8"),
        _Registry("CNNIC", "whois.cnnic.cn", "utf-8"),
        _Registry("IDNIC", "whois.idnic.net", "utf-8"),
        _Registry("registro.br", "whois.registro.br", "iso-8859-1"),
        _Registry("IANA", IANA_SERVER, "utf-8"),
    )
}

# older or alternative names the registries' own texts still print
_SERVER_ALIASES = {
    "whois.krnic.net": "whois.nic.or.kr",
    "whois.kisa.or.kr": "whois.nic.or.kr",
    "whois.nic.br": "whois.registro.br",
    "whois.cnnic.net.cn": "whois.cnnic.cn",
    "ipwhois.cnnic.cn": "whois.cnnic.cn",
    "whois.twnic.tw": "whois.twnic.net.tw",
    "whois.afrinic.org": "whois.afrinic.net",
}

# registry names as RDAP, RPSL ``source:`` lines and configuration spell them
_NAMES = {
    "arin": "whois.arin.net",
    "ripe": "whois.ripe.net",
    "ripencc": "whois.ripe.net",
    "apnic": "whois.apnic.net",
    "lacnic": "whois.lacnic.net",
    "afrinic": "whois.afrinic.net",
    "jpnic": "whois.nic.ad.jp",
    "krnic": "whois.nic.or.kr",
    "kisa": "whois.nic.or.kr",
    "twnic": "whois.twnic.net.tw",
    "cnnic": "whois.cnnic.cn",
    "idnic": "whois.idnic.net",
    "registrobr": "whois.registro.br",
    "nicbr": "whois.registro.br",
    "iana": IANA_SERVER,
}

_NIRS = frozenset({"jpnic", "krnic", "twnic", "cnnic", "idnic"})

# Mailboxes at these domains belong to the registries themselves (hostmasters, IRTs the NIR
# registers for a whole block): writing to them about a host reaches nobody who runs it.
_REGISTRY_DOMAINS = (
    "iana.org",
    "arin.net",
    "ripe.net",
    "apnic.net",
    "lacnic.net",
    "afrinic.net",
    "nic.ad.jp",
    "nic.or.kr",
    "krnic.net",
    "kisa.or.kr",
    "twnic.net.tw",
    "twnic.tw",
    "cnnic.cn",
    "cnnic.net.cn",
    "idnic.net",
    "apjii.or.id",
    "registro.br",
)


def _canonical(server: str) -> str:
    name = server.strip().lower().rstrip(".")
    return _SERVER_ALIASES.get(name, name)


def registry_server(name: str) -> str | None:
    """The WHOIS server of a registry named as RDAP or RPSL name it (``RIPE NCC``, ``apnic``...).

    A WHOIS host name is accepted as is. ``None`` when the name means nothing to us.
    """
    text = name.strip().lower()
    if text.startswith("whois.") or text in _SERVER_ALIASES:
        return _canonical(text)
    key = re.sub(r"[^a-z]", "", text.split("#", 1)[0])
    if key in _NAMES:
        return _NAMES[key]
    for prefix, server in (("ripe", "whois.ripe.net"), ("idnic", "whois.idnic.net")):
        if key.startswith(prefix):  # RIPE-NONAUTH, ID-NIC...
            return server
    return None


def _label(server: str) -> str:
    known = _REGISTRIES.get(_canonical(server))
    return known.label if known else _canonical(server)


def _is_registry_own(address: str) -> bool:
    domain = address.rpartition("@")[2]
    return any(domain == d or domain.endswith("." + d) for d in _REGISTRY_DOMAINS)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Referral:
    """Where a WHOIS answer says to ask next.

    ``query`` is what to ask there (the original query when the answer does not say).
    ``supersedes`` is true when the referring answer is only a pointer between registries
    (IANA, a transfer stub): its contacts are the registry's, not the network's.
    """

    server: str
    query: str = ""
    port: int | None = None
    protocol: str = "whois"  # "whois" or "rwhois"
    reason: str = ""
    supersedes: bool = False


@dataclass(frozen=True, slots=True)
class WhoisRecord:
    """What one WHOIS answer says about a network."""

    server: str
    format: str  # rpsl, arin, lacnic, jpnic, krnic, twnic, iana, unknown
    registry: str
    network: Network | None = None
    contacts: tuple[Contact, ...] = ()
    referral: Referral | None = None
    notes: tuple[str, ...] = ()
    # JPNIC keeps e-mail addresses in separate contact records: (handle, what it is for)
    contact_handles: tuple[tuple[str, str], ...] = ()


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


# --------------------------------------------------------------------------- RPSL objects


@dataclass(slots=True)
class _Object:
    attrs: list[tuple[str, str]]

    @property
    def kind(self) -> str:
        return self.attrs[0][0]

    @property
    def key(self) -> str:
        if self.kind in ("role", "person"):
            return self.get("nic-hdl") or self.attrs[0][1]
        return self.attrs[0][1]

    def get(self, name: str) -> str:
        for key, value in self.attrs:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.attrs if key == name]


_ATTR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]{0,40}):[ \t]*(.*)$")


def _objects(lines: Iterable[str]) -> tuple[list[_Object], list[str]]:
    """RPSL-style ``key: value`` objects separated by blank lines, and the ``%``/``#`` comments."""
    objects: list[_Object] = []
    comments: list[str] = []
    current: list[tuple[str, str]] = []

    def flush() -> None:
        if current:
            objects.append(_Object(list(current)))
            current.clear()

    for line in lines:
        if line.startswith(("%", "#")):
            comments.append(line)
            flush()
        elif not line.strip():
            flush()
        elif line[0] in " \t+" and current:
            key, value = current[-1]
            extra = line.strip().lstrip("+").strip()
            current[-1] = (key, f"{value} {extra}".strip()[:_MAX_VALUE])
        else:
            match = _ATTR.match(line)
            if match:
                value = re.sub(r"\s+#.*$", "", match.group(2)).strip()
                current.append((match.group(1).lower(), value[:_MAX_VALUE]))
    flush()
    return objects, comments


def _most_specific(objects: Sequence[_Object], kinds: tuple[str, ...]) -> _Object | None:
    best: _Object | None = None
    best_size: int | None = None
    for obj in objects:
        if obj.kind not in kinds:
            continue
        size = _range_size(obj.attrs[0][1])
        if size is None:
            continue
        if best_size is None or size <= best_size:
            best, best_size = obj, size
    return best


_TRANSFERRED = re.compile(r"Transferred to the (.{2,40}?) region", re.I)
_MIRRORED = re.compile(r"mirrored by APNIC from\s+([A-Za-z-]{2,10})", re.I)
_IANA_BLOCKS = ("NON-RIPE-NCC-MANAGED-ADDRESS-BLOCK", "IANA-BLK", "IANA-BLOCK", "IANA-NETBLOCK")


def _rpsl_referral(objects: Sequence[_Object], server: str, query: str) -> Referral | None:
    here = _canonical(server)
    for obj in objects:
        texts = obj.all("descr") + obj.all("remarks")
        stub = any(m.upper() == "APNIC-STUB" for m in obj.all("mnt-by"))
        for text in texts:
            match = _TRANSFERRED.search(text)
            if match is None:
                continue
            target = registry_server(match.group(1))
            if target and target != here:
                reason = f"{_clip(match.group(0), 80)} (stub)"
                return Referral(target, query, reason=reason, supersedes=True)
        if stub and here != IANA_SERVER:
            return Referral(IANA_SERVER, query, reason="APNIC-STUB object", supersedes=True)
    for obj in objects:
        if obj.kind not in ("inetnum", "inet6num"):
            continue
        source = re.sub(r"[^a-z]", "", obj.get("source").lower())
        # the sentence runs across remarks lines: "...mirrored by APNIC from" / "KRNIC. To..."
        mirrored = _MIRRORED.search(" ".join(obj.all("remarks")))
        nir = mirrored.group(1).lower().replace("-", "") if mirrored else source
        if nir in _NIRS:
            target = _NAMES[nir]
            if target != here:
                return Referral(
                    target, query, reason=f"{nir.upper()} data partially mirrored by APNIC"
                )
    for obj in objects:
        netname = obj.get("netname").upper()
        if obj.kind in ("inetnum", "inet6num") and netname.startswith(_IANA_BLOCKS):
            if here != IANA_SERVER:
                return Referral(
                    IANA_SERVER,
                    query,
                    reason=f"{_clip(netname, 60)}: not managed here",
                    supersedes=True,
                )
    return None


_ABUSE_HEADER = re.compile(r"^%\s*Abuse contact for '([^']*)' is '([^']*)'", re.I)
_NO_ABUSE = re.compile(r"^%\s*No abuse contact registered for (.+)$", re.I)


def _parse_rpsl(lines: list[str], server: str, query: str) -> WhoisRecord:
    objects, comments = _objects(lines)
    notes: list[str] = []
    found = _Contacts(server, notes)
    for line in comments:
        header = _ABUSE_HEADER.match(line)
        if header:
            found.add(header.group(2), ABUSE_CONFIDENCE, f"abuse contact for {header.group(1)}")
            continue
        missing = _NO_ABUSE.match(line)
        if missing:
            found.note(f"{server}: no abuse contact registered for {_clip(missing.group(1), 80)}")

    primary = _most_specific(objects, ("inetnum", "inet6num"))
    organisations = {o.key.upper(): o for o in objects if o.kind == "organisation"}

    abuse_handles = {h.upper() for o in objects for h in o.all("abuse-c")}
    for obj in objects:
        label = obj.key if obj.kind == "irt" else f"{obj.kind} {obj.key}"
        for value in obj.all("abuse-mailbox"):
            found.add(value, ABUSE_CONFIDENCE, f"abuse-mailbox of {label}")
        if obj.kind in ("role", "person") and obj.key.upper() in abuse_handles:
            for value in obj.all("e-mail"):
                found.add(value, ABUSE_CONFIDENCE, f"e-mail of abuse-c {obj.key}", obj.attrs[0][1])
    for obj in objects:
        label = obj.key if obj.kind == "irt" else f"{obj.kind} {obj.key}"
        remarks = obj.all("remarks") + (obj.all("descr") if obj.kind.startswith("inet") else [])
        for index, text in enumerate(remarks):
            before = remarks[index - 1] if index else ""
            found.add_from_text(text, STATED_CONFIDENCE, f"remarks of {label}", before)
        if obj.kind in ("role", "person", "irt", "organisation"):
            name = obj.attrs[0][1] if obj.kind in ("role", "person") else obj.get("org-name")
            for value in obj.all("e-mail"):
                address = clean_address(value) or ""
                stated = obj.kind == "irt" or _is_abuse_local(address)
                confidence = STATED_CONFIDENCE if stated else FALLBACK_CONFIDENCE
                found.add(value, confidence, f"e-mail of {label}", name)

    network = None
    registry = _label(server)
    if primary is not None:
        source = registry_server(primary.get("source")) if primary.get("source") else None
        registry = _label(source) if source else registry
        org_ref = primary.get("org").upper()
        org_obj = organisations.get(org_ref) if org_ref else None
        org = org_obj.get("org-name") if org_obj else ""
        descr = primary.all("descr")
        network = _network(
            registry,
            primary.attrs[0][1],
            name=primary.get("netname"),
            country=primary.get("country"),
            org=org or (descr[0] if descr else ""),
            asn=next((_asn(o.get("origin")) for o in objects if o.kind.startswith("route")), None),
        )
    else:
        found.note(f"{server}: no inetnum or inet6num object in the answer")
    referral = _rpsl_referral(objects, server, query)
    contacts = found.result()
    return WhoisRecord(
        server=server,
        format="rpsl",
        registry=registry,
        network=network,
        contacts=contacts,
        referral=referral,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- ARIN

_ARIN_ABUSE = ("OrgAbuse", "RAbuse")
_ARIN_FALLBACK = ("OrgNOC", "RNOC", "OrgTech", "RTech")
_ALLOCATED_TO = re.compile(r"(?:Allocated|Transferred|Assigned) to (.{3,30})$", re.I)
_REFERRAL = re.compile(
    r"^(?:(?P<proto>r?whois)://)?(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>\d{1,5}))?/?$",
    re.I,
)


def _parse_referral_url(value: str, query: str, reason: str) -> Referral | None:
    match = _REFERRAL.match(value.strip())
    if not match:
        return None
    host = match.group("host").strip("[]").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.match(host):
            return None
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        return None
    protocol = (match.group("proto") or "whois").lower()
    canonical = _canonical(host)
    return Referral(
        server=canonical,
        query=query,
        port=port,
        protocol=protocol,
        reason=reason,
        supersedes=canonical in _REGISTRIES,
    )


def _parse_arin(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    sections: list[list[tuple[str, str]]] = []
    referral_value = ""
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        match = re.match(r"^([A-Za-z][A-Za-z0-9-]{0,40}):[ \t]*(.*)$", line)
        if match is None:
            if line.lower().startswith("no match found"):
                notes.append(f"{server}: {_clip(line, 120)}")
            continue
        key, value = match.group(1), match.group(2).strip()[:_MAX_VALUE]
        if key == "NetRange" or not sections:
            sections.append([])
        sections[-1].append((key, value))
        if key == "ReferralServer":
            referral_value = value  # the last one: it belongs to the most specific network

    def field(section: list[tuple[str, str]], name: str) -> str:
        return next((v for k, v in section if k == name), "")

    blocks = [s for s in sections if field(s, "NetRange") or field(s, "CIDR")]
    network = None
    if blocks:
        last = blocks[-1]
        org = field(last, "OrgName") or field(last, "CustName")
        org = org or re.sub(r"\s*\([^)]*\)\s*$", "", field(last, "Organization"))
        org = org or re.sub(r"\s*\([^)]*\)\s*$", "", field(last, "Customer"))
        country = field(last, "Country") or next(
            (field(s, "Country") for s in reversed(blocks) if field(s, "Country")), ""
        )
        network = _network(
            "ARIN",
            field(last, "NetRange") or field(last, "CIDR").split(",")[0],
            handle=field(last, "NetHandle"),
            name=field(last, "NetName"),
            country=country,
            org=org,
            asn=_asn(field(last, "OriginAS")),
            cidrs=[c.strip() for c in field(last, "CIDR").split(",") if c.strip()],
        )

    def collect(section: list[tuple[str, str]]) -> tuple[Contact, ...]:
        found = _Contacts(server, notes)
        owner = field(section, "OrgId") or field(section, "CustName") or field(section, "NetHandle")
        handles: dict[str, str] = {}
        comments = [v for k, v in section if k == "Comment"]
        for key, value in section:
            prefix = key.removesuffix("Handle")
            if key.endswith("Handle"):
                handles[prefix] = value
            if not key.endswith("Email"):
                continue
            prefix = key.removesuffix("Email")
            what = f"{key} of {owner} ({handles.get(prefix, '?')})" if owner else key
            name = field(section, prefix + "Name")
            if prefix in _ARIN_ABUSE:
                found.add(value, ABUSE_CONFIDENCE, what, name)
            elif prefix in _ARIN_FALLBACK:
                found.add(value, FALLBACK_CONFIDENCE, what, name)
        for index, text in enumerate(comments):
            before = comments[index - 1] if index else ""
            found.add_from_text(text, STATED_CONFIDENCE, f"Comment of {owner}", before)
        return found.result()

    # the most specific block with contacts speaks; if it names no abuse desk, the nearest
    # enclosing block's abuse desk is added (a reassigned customer block often has none)
    chosen: list[Contact] = []
    for section in reversed(sections):
        contacts = collect(section)
        if not contacts:
            continue
        chosen.extend(
            contacts if not chosen else [c for c in contacts if c.confidence >= ABUSE_CONFIDENCE]
        )
        if any(c.confidence >= ABUSE_CONFIDENCE for c in chosen):
            break
    contacts_out = _finish(chosen, notes)

    referral = None
    if referral_value:
        referral = _parse_referral_url(referral_value, query, "ReferralServer")
        if referral is None:
            notes.append(f"{server}: unusable ReferralServer {_clip(referral_value, 80)!r}")
    allocated = _ALLOCATED_TO.search(field(blocks[-1], "NetType")) if blocks else None
    if referral is None and allocated is not None:
        target = registry_server(allocated.group(1))
        if target and target != _canonical(server):
            reason = f"NetType: {_clip(allocated.group(0), 60)}"
            referral = Referral(target, query, reason=reason, supersedes=True)
    return WhoisRecord(
        server=server,
        format="arin",
        registry="ARIN",
        network=network,
        contacts=contacts_out,
        referral=referral,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- LACNIC / registro.br


def _parse_lacnic(lines: list[str], server: str, query: str, *, brazil: bool) -> WhoisRecord:
    objects, _comments = _objects(lines)
    notes: list[str] = []
    registry = "registro.br" if brazil else "LACNIC"
    found = _Contacts(server, notes, label=registry)
    people = {
        (o.get("nic-hdl") or o.get("nic-hdl-br")).upper(): o
        for o in objects
        if o.get("nic-hdl") or o.get("nic-hdl-br")
    }
    primary = _most_specific(objects, ("inetnum", "inet6num"))
    network = None
    if primary is not None:
        cidr = primary.attrs[0][1]
        parsed = _parse_range(cidr)
        network = _network(
            registry,
            cidr,
            handle=parsed[2][0] if parsed else cidr,
            name=primary.get("ownerid"),
            country=primary.get("country"),
            org=primary.get("owner"),
            asn=_asn(primary.get("aut-num")),
        )
        ladder = (
            ("abuse-c", ABUSE_CONFIDENCE),
            ("tech-c", FALLBACK_CONFIDENCE),
            ("owner-c", FALLBACK_CONFIDENCE),
        )
        for attr, confidence in ladder:
            for handle in primary.all(attr):
                person = people.get(handle.upper())
                if person is None:
                    found.note(f"{server}: {attr} {_clip(handle, 40)} has no contact block")
                    continue
                name = person.get("person")
                for value in person.all("e-mail"):
                    found.add(value, confidence, f"e-mail of {attr} {handle}", name)
    else:
        found.note(f"{server}: no inetnum in the answer")
    return WhoisRecord(
        server=server,
        format="lacnic",
        registry=registry,
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- JPNIC

_JP_LINE = re.compile(r"^\s*(?:[a-z]\.\s*)?\[([^\]]{1,40})\]\s*(.*)$")
_JP_LABELS = {
    "network number": "range",
    "ipネットワークアドレス": "range",
    "network name": "name",
    "ネットワーク名": "name",
    "organization": "org",
    "組織名": "org_ja",
    "administrative contact": "admin",
    "管理者連絡窓口": "admin",
    "technical contact": "tech",
    "技術連絡担当者": "tech",
    "abuse": "abuse",
    "e-mail": "email",
    "電子メイル": "email",
    "電子メール": "email",
    "reply mail": "reply",
    "返信アドレス": "reply",
    "jpnic handle": "handle",
    "jpnicハンドル": "handle",
    "last, first": "person",
    "氏名": "person_ja",
}


def _parse_jpnic(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    found = _Contacts(server, notes)
    values: dict[str, str] = {}
    handles: dict[str, list[str]] = {}
    for line in lines:
        if re.match(r"^\s*(Less|More) Specific Info", line, re.I) or "上位情報" in line:
            break  # other networks follow, listed without their contacts
        match = _JP_LINE.match(line)
        if not match:
            continue
        label = _JP_LABELS.get(match.group(1).strip().lower())
        value = match.group(2).strip()[:_MAX_VALUE]
        if label is None or not value:
            continue
        if label in ("admin", "tech"):
            role = "administrative contact" if label == "admin" else "technical contact"
            if _HANDLE.match(value):
                handles.setdefault(value.upper(), []).append(role)
            elif "@" in value:
                found.add(value, FALLBACK_CONFIDENCE, f"[{match.group(1)}]")
            continue
        if label == "abuse":
            found.add(value, ABUSE_CONFIDENCE, "[Abuse]")
            continue
        if label in ("email", "reply"):
            subject = values.get("handle", "")
            what = f"[{match.group(1)}] of JPNIC handle {subject}" if subject else match.group(1)
            who = values.get("person") or values.get("person_ja", "")
            found.add(value, FALLBACK_CONFIDENCE, what, who)
            continue
        values.setdefault(label, value)
    network = None
    if "range" in values:
        network = _network(
            "JPNIC",
            values["range"],
            name=values.get("name", ""),
            country="JP",
            org=values.get("org") or values.get("org_ja", ""),
        )
    network_name = values.get("name", "")
    pending = tuple(
        (
            handle,
            " and ".join(dict.fromkeys(roles)) + (f" of {network_name}" if network_name else ""),
        )
        for handle, roles in handles.items()
    )
    return WhoisRecord(
        server=server,
        format="jpnic",
        registry="JPNIC",
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
        contact_handles=pending[:_MAX_HANDLE_QUERIES],
    )


# --------------------------------------------------------------------------- KRNIC

_KR_LABELS = {
    "ipv4address": "range",
    "ipv6address": "range",
    "ipv4주소": "range",
    "ipv6주소": "range",
    "organizationname": "org",
    "기관명": "org",
    "servicename": "name",
    "서비스명": "name",
    "networktype": "type",
    "네트워크구분": "type",
    "e-mail": "email",
    "email": "email",
    "전자우편": "email",
    "name": "person",
    "이름": "person",
}


def _parse_krnic(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    found = _Contacts(server, notes)
    english = next((i for i, line in enumerate(lines) if line.strip() == "# ENGLISH"), None)
    if english is not None:
        lines = lines[english:]
    networks: list[dict[str, str]] = []
    abuse_block = False
    person = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            abuse_block = bool(re.search(r"abuse|어뷰즈", stripped, re.I))
            continue
        match = re.match(r"^\s*([^:\[\]]{1,40}?)\s*:\s*(.*)$", line)
        if not match:
            continue
        label = _KR_LABELS.get(re.sub(r"\s+", "", match.group(1)).lower())
        value = match.group(2).strip()[:_MAX_VALUE]
        if label == "range":
            networks.append({"range": value})
            abuse_block = False
        elif label == "person":
            person = value
            if re.search(r"abuse|어뷰즈", value, re.I):
                abuse_block = True
        elif label == "email":
            current = networks[-1] if networks else {}
            whose = current.get("org") or current.get("name") or "the network"
            where = current.get("range", "")
            what = f"e-mail of {whose} ({re.sub(r'[(].*?[)]', '', where).strip()})"
            confidence = ABUSE_CONFIDENCE if abuse_block else STATED_CONFIDENCE
            found.add(value, confidence, what if where else f"e-mail of {whose}", person)
        elif label and networks:
            networks[-1].setdefault(label, value)
    network = None
    if networks:
        last = networks[-1]
        # a customer block has no service name of its own: it runs on its ISP's service
        service = next((n["name"] for n in reversed(networks) if n.get("name")), "")
        network = _network(
            "KRNIC",
            last["range"],
            name=service,
            country="KR",
            org=last.get("org", ""),
        )
    return WhoisRecord(
        server=server,
        format="krnic",
        registry="KRNIC",
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- TWNIC (Netname:)

_TW_HEADING = re.compile(r"^\s*([A-Za-z][A-Za-z ]{1,40}):\s*$")


def _parse_twnic(lines: list[str], server: str, query: str) -> WhoisRecord:
    notes: list[str] = []
    found = _Contacts(server, notes)
    networks: list[dict[str, str]] = []
    block = ""
    for line in lines:
        keyed = re.match(r"^\s*(Netname|Netblock)\s*:\s*(\S.*)$", line, re.I)
        if keyed:
            key = keyed.group(1).lower()
            if key == "netname" or not networks:
                networks.append({})
            networks[-1][key] = keyed.group(2).strip()[:_MAX_VALUE]
            block = ""
            continue
        heading = _TW_HEADING.match(line)
        if heading:
            block = heading.group(1).strip().lower()
            continue
        if not line.strip():
            continue
        if not networks:
            continue
        if block == "registrant":
            networks[-1].setdefault("org", line.strip())
            if re.fullmatch(r"[A-Z]{2}", line.strip()):
                networks[-1]["country"] = line.strip()
        elif block.endswith("contact"):
            name = networks[-1].get("netname", "")
            what = f"{block} of {name}" if name else block
            confidence = ABUSE_CONFIDENCE if "abuse" in block else FALLBACK_CONFIDENCE
            if _has_control(line.strip()) and "@" in line:
                found.add(line.strip(), confidence, what)
                continue
            for match in _EMAIL_IN_TEXT.finditer(line):
                found.add(match.group(1), confidence, what)
    network = None
    if networks:
        last = networks[-1]
        network = _network(
            "TWNIC",
            last.get("netblock", ""),
            name=last.get("netname", ""),
            country=last.get("country", "TW"),
            org=last.get("org", ""),
        )
    return WhoisRecord(
        server=server,
        format="twnic",
        registry="TWNIC",
        network=network,
        contacts=found.result(),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- IANA and others


def _parse_iana(lines: list[str], server: str, query: str) -> WhoisRecord:
    objects, _ = _objects(lines)
    notes: list[str] = []
    refer = next((o.get("refer") for o in objects if o.get("refer")), "")
    refer = refer or next((o.get("whois") for o in objects if o.get("whois")), "")
    referral = None
    if refer:
        referral = _parse_referral_url(refer, query, "IANA refer:")
        if referral is not None:
            referral = replace(referral, supersedes=True)
        else:
            notes.append(f"{server}: unusable refer: {_clip(refer, 80)!r}")
    else:
        status = next((o.get("status") for o in objects if o.get("status")), "")
        notes.append(
            f"{server}: no registry to refer to"
            + (f" (status {_clip(status, 40)})" if status else "")
        )
    return WhoisRecord(
        server=server, format="iana", registry="IANA", referral=referral, notes=tuple(notes)
    )


_NOT_FOUND = re.compile(
    r"no entries found|no match(?:es)? found|no match!!|%ERROR:101|not found", re.I
)


def _parse_unknown(lines: list[str], server: str, query: str) -> WhoisRecord:
    """An unrecognised layout (an ISP's own server, rwhois): only lines that speak of abuse."""
    missing = _NOT_FOUND.search("\n".join(lines[:40]))
    if missing:
        notes = [f"{server}: no record for the query ({_clip(missing.group(0), 60)})"]
    else:
        notes = [f"{server}: unrecognised WHOIS format; only abuse lines were read"]
    found = _Contacts(server, notes)
    for index, line in enumerate(lines[:5000]):
        found.add_from_text(
            line, STATED_CONFIDENCE, "abuse line", lines[index - 1] if index else ""
        )
    return WhoisRecord(
        server=server,
        format="unknown",
        registry=_label(server),
        contacts=found.result(),
        notes=tuple(notes),
    )


_RESOURCE = re.compile(r"^%\s*(?:[A-Za-z]+ )?resource:\s*(\S+)", re.I | re.M)


def _detect(text: str, server: str) -> str:
    here = _canonical(server)
    head = text[:20000]
    if here == IANA_SERVER or "% IANA WHOIS server" in head:
        return "iana"
    if re.search(
        r"^\s*(?:[a-z]\.\s*)?\[(?:Network Number|Network Name|JPNIC Handle|"
        r"IPネットワークアドレス|ネットワーク名|JPNICハンドル)\]",
        head,
        re.M,
    ):
        return "jpnic"
    if re.search(r"^(?:NetRange|CIDR|OrgName|OrgId|CustName|ReferralServer):", head, re.M):
        return "arin"
    if re.search(r"^\s*(?:IPv[46] ?Address|IPv[46] ?주소)\s*:", head, re.M | re.I):
        return "krnic"
    if re.search(r"^\s*Netname:", head, re.M) and re.search(r"^\s*Netblock:", head, re.M):
        return "twnic"
    if re.search(r"^nic-hdl-br:", head, re.M) or re.search(r"Copyright \(c\) Nic\.br", head, re.I):
        return "registro.br"
    joint = "% Joint Whois" in head and here == "whois.lacnic.net"
    if re.search(r"^(?:ownerid|owner-c):", head, re.M) or joint:
        return "lacnic"
    if re.search(r"^(?:inetnum|inet6num|irt|role|organisation):", head, re.M):
        return "rpsl"
    if here == "whois.arin.net":
        return "arin"
    return "unknown"


def parse_whois(text: str, server: str, *, query: str = "") -> WhoisRecord:
    """What the WHOIS answer ``text`` from ``server`` says: network, contacts, referral.

    Pure: no I/O. The format is recognised from the text (LACNIC's Joint Whois relays other
    registries' answers), falling back on the server's name. ``query`` is carried into the
    referral so the next server is asked the same question.
    """
    if _looks_like_html(text):
        text = _strip_html(text)
    lines = _lines(text)
    resource = _RESOURCE.search(text[:4096])
    effective = server
    if resource and _canonical(resource.group(1)) in _REGISTRIES:
        effective = _canonical(resource.group(1))
    kind = _detect(text, effective)
    if kind == "iana":
        return _parse_iana(lines, server, query)
    if kind == "arin":
        return _parse_arin(lines, effective, query)
    if kind == "jpnic":
        return _parse_jpnic(lines, effective, query)
    if kind == "krnic":
        return _parse_krnic(lines, effective, query)
    if kind == "twnic":
        return _parse_twnic(lines, effective, query)
    if kind in ("lacnic", "registro.br"):
        return _parse_lacnic(lines, effective, query, brazil=kind == "registro.br")
    if kind == "rpsl":
        return _parse_rpsl(lines, effective, query)
    return _parse_unknown(lines, server, query)


# --------------------------------------------------------------------------- client

_LATIN1 = ("iso-8859-1", "latin-1", "latin1", "cp1252")
_META_CHARSET = re.compile(rb"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})", re.I)


def decode_answer(raw: bytes, server: str) -> str:
    """Text of a WHOIS answer in the server's charset, with safe fallbacks; never raises.

    An HTML page's declared charset goes first. Single-byte charsets accept any bytes, so for
    them strict UTF-8 is tried first (a server that moved to UTF-8 still reads right).
    """
    known = _REGISTRIES.get(_canonical(server))
    declared = known.charset if known else "utf-8"
    candidates: list[str] = []
    meta = _META_CHARSET.search(raw[:4096]) if b"<" in raw[:4096] else None
    if meta:
        candidates.append(meta.group(1).decode("ascii"))
    if declared in _LATIN1:
        candidates += ["utf-8", declared]
    else:
        candidates += [declared, "utf-8"]
    for charset in candidates:
        try:
            return raw.decode(charset)
        except (ValueError, LookupError):  # UnicodeError, or a meta tag naming a non-text codec
            continue
    return raw.decode("utf-8", errors="replace")


def query_string(server: str, query: str) -> str:
    """The line to send ``server`` for ``query`` (an address or a handle), without CRLF.

    RIPE gets ``-r`` so no personal-data objects count against its daily limit (its abuse
    header line still comes), and ``-B`` so the e-mail attributes of what it does return are
    not filtered. APNIC and AFRINIC keep recursion: their abuse mailboxes sit in the referenced
    IRT, role and organisation objects. ARIN needs ``n +`` for a network with its details;
    JPNIC answers in English with ``/e``.
    """
    name = _canonical(server)
    if name == "whois.arin.net":
        return f"n + {query}"
    if name == "whois.ripe.net":
        return f"-r -B {query}"
    if name in ("whois.apnic.net", "whois.afrinic.net"):
        return f"-B {query}"
    if name == "whois.nic.ad.jp":
        return query if query.endswith("/e") else f"{query}/e"
    return query


_RATE_LIMITED = re.compile(
    r"^[%# \t]*(?:ERROR:20[12]\b.*|.*query rate limit exceeded.*)$", re.I | re.M
)


def _endpoint(server: str, ctx: LookupContext, port: int | None) -> tuple[str, int, bool]:
    settings = ctx.settings.whois
    if server in settings.servers:
        host, real_port = settings.endpoint(server)
        return host, real_port, True
    return server, port or 43, False


async def _check_public(host: str, ctx: LookupContext) -> str:
    """A referral names any host; only public addresses are connected to (no SSRF).

    Returns the address to connect to: the one checked, since asking DNS again could be
    answered otherwise (DNS rebinding with a zero TTL).
    """
    policy = net.AddressPolicy(ctx.settings.http.allow_private)
    addresses = await net.resolve_host(ctx.resolver, host)
    if not addresses:
        raise SourceUnavailable(f"{host} does not resolve", source=SOURCE)
    refused = [a for a in addresses if not policy.allows(a)]
    if refused:
        raise SourceProtocolError(
            f"{host} resolves to a non-public address ({refused[0]}); refused", source=SOURCE
        )
    return str(addresses[0])


async def _exchange(
    server: str, query: str, ctx: LookupContext, *, port: int | None = None
) -> tuple[bytes, str]:
    name = _canonical(server)
    if not query or len(query) > 256 or _has_control(query):
        raise SourceProtocolError(f"refused to send WHOIS query {query[:40]!r}", source=SOURCE)
    settings = ctx.settings.whois
    host, real_port, overridden = _endpoint(name, ctx, port)
    if not overridden:
        host = await _check_public(host, ctx)
    line = query_string(name, query)
    try:
        async with asyncio.timeout(settings.timeout):
            await ctx.limiter.wait(name)
    except TimeoutError:
        raise SourceUnavailable(
            f"{name}: our rate limit would hold the query past {settings.timeout:g} s",
            source=SOURCE,
        ) from None
    ctx.trace("whois-query", {"server": name, "endpoint": f"{host}:{real_port}", "query": line})
    try:
        raw = await net.tcp_exchange(
            ctx.resolver,
            host,
            real_port,
            (line + "\r\n").encode("utf-8"),
            max_bytes=settings.max_bytes,
            deadline=settings.timeout,
            source=SOURCE,
        )
    except SourceError:
        raise
    except OSError as exc:
        raise SourceUnavailable(f"{name}: {exc}", source=SOURCE) from None
    if not raw.strip():
        raise SourceUnavailable(f"{name} closed the connection without an answer", source=SOURCE)
    text = decode_answer(raw, name)
    limited = _RATE_LIMITED.search(text)
    if limited:
        ctx.limiter.pause(name, _RATE_LIMIT_BACKOFF)
        raise SourceUnavailable(
            f"{name} says we are over its query limit: {_clip(limited.group(0), 100)}",
            source=SOURCE,
        )
    return raw, text


async def query_whois(
    server: str, query: str, ctx: LookupContext, *, port: int | None = None
) -> str:
    """Ask ``server`` about ``query`` over port 43 and return the decoded answer.

    The configured override (``whois.servers``) decides where ``server`` really is; without
    one, the host must resolve to public addresses. Raises ``SourceTimeout`` past
    ``whois.timeout``, ``SourceProtocolError`` over ``whois.max_bytes``, ``SourceUnavailable``
    when the server is unreachable, closes without answering or reports a rate limit.
    """
    _, text = await _exchange(server, query, ctx, port=port)
    return text


# --------------------------------------------------------------------------- the source


class _Fetch(Protocol):
    def __call__(
        self, name: str, what: str, *, port: int | None = None
    ) -> Awaitable[WhoisRecord]: ...


def _start_server(query: Query) -> str | None:
    network = query.network
    if network is None or not network.registry:
        return None
    return registry_server(network.registry)


def _contains(network: Network, ip: str) -> bool | None:
    try:
        address = ipaddress.ip_address(ip)
        start = ipaddress.ip_address(network.start)
        end = ipaddress.ip_address(network.end)
    except ValueError:
        return None
    if address.version != start.version:
        return False
    return int(start) <= int(address) <= int(end)


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """The network and abuse contacts of the target from WHOIS, following referrals.

    Starts at the registry earlier stages named (``query.network.registry``), else asks IANA.
    Referrals are followed up to ``whois.max_referrals`` (the IANA bootstrap does not count),
    never back to a server already asked; rwhois is followed only to a configured override.
    Raises ``SourceError`` when the first server fails, or when a later one fails and nothing
    was found; otherwise failures become notes.
    """
    ip = str(query.target.ip)
    settings = ctx.settings.whois
    report = SourceReport(source=SOURCE)
    start = _start_server(query)
    if start is None:
        report.notes.append(f"no registry known for {ip}: asking {IANA_SERVER}")
    server = start or IANA_SERVER
    port: int | None = None
    ask = ip
    visited: set[str] = set()
    records: list[WhoisRecord] = []
    failure: SourceError | None = None
    followed = 0

    async def fetch(name: str, what: str, *, port: int | None = None) -> WhoisRecord:
        raw, text = await _exchange(name, what, ctx, port=port)
        record = parse_whois(text, name, query=ip)
        report.evidence.append(
            Evidence(
                source=SOURCE,
                locator=f"whois://{name}/{query_string(name, what)}",
                sha256=hashlib.sha256(raw).hexdigest(),
                fetched_at=ctx.clock(),
                detail=f"{len(raw)} bytes, {record.format} format",
            )
        )
        return record

    while True:
        visited.add(server)
        try:
            record = await fetch(server, ask, port=port)
        except SourceError as exc:
            if not records:
                raise
            failure = exc
            report.notes.append(f"referral to {server} failed: {exc}")
            break
        if record.contact_handles and not record.contacts:
            record = await _follow_handles(record, server, fetch, report)
        records.append(record)
        report.notes.extend(record.notes)
        referral = record.referral
        if referral is None:
            break
        target = _canonical(referral.server)
        overridden = target in settings.servers
        if referral.protocol == "rwhois" and not overridden:
            report.notes.append(
                f"{server} refers to rwhois://{target}:{referral.port or 4321}/;"
                " not followed (rwhois is followed only to a configured server)"
            )
            break
        if target in visited:
            report.notes.append(
                f"referral loop: {server} refers back to {target}, already asked; stopped"
            )
            break
        bootstrap = server == IANA_SERVER and len(records) == 1
        if not bootstrap:
            if followed >= settings.max_referrals:
                report.notes.append(
                    f"{server} refers to {target}; not followed, {settings.max_referrals}"
                    " referrals already followed (whois.max_referrals)"
                )
                break
            followed += 1
        report.notes.append(
            f"following referral from {server} to {target} ({referral.reason or 'referral'})"
        )
        server, port, ask = target, referral.port, referral.query or ip

    # an answer that only points elsewhere speaks for a registry, not for the network
    standing = [
        r
        for index, r in enumerate(records)
        if not (r.referral and r.referral.supersedes and index < len(records) - 1)
    ]
    # the most specific (last asked) server first; the sort is stable
    found = (c for record in reversed(standing) for c in record.contacts)
    report.contacts = list(_finish(found, report.notes))
    report.network = next((r.network for r in reversed(records) if r.network), None)
    if report.network is not None and _contains(report.network, ip) is False:
        report.notes.append(
            f"{report.network.registry} record {report.network.handle} does not contain {ip}"
        )
    if not report.contacts:
        if failure is not None:
            raise failure
        report.notes.append(f"no usable WHOIS contact for {ip}")
    return report


async def _follow_handles(
    record: WhoisRecord,
    server: str,
    fetch: _Fetch,
    report: SourceReport,
) -> WhoisRecord:
    """JPNIC lists contacts by handle: ask for each handle's record to get its e-mail."""
    contacts: dict[str, Contact] = {}
    for handle, role in record.contact_handles[:_MAX_HANDLE_QUERIES]:
        if not _HANDLE.match(handle):
            report.notes.append(f"{server}: ignored contact handle {_clip(handle, 40)!r}")
            continue
        try:
            found = await fetch(server, handle)
        except SourceError as exc:
            report.notes.append(f"{server}: contact record {handle} not fetched: {exc}")
            continue
        report.notes.extend(found.notes)
        for contact in found.contacts:
            described = replace(
                contact, provenance=tuple(f"{p}; {role}" for p in contact.provenance)
            )
            known = contacts.get(described.address)
            contacts[described.address] = known.merged(described) if known else described
        if not found.contacts:
            report.notes.append(f"{server}: contact record {handle} lists no usable e-mail")
    return replace(record, contacts=tuple(contacts.values()))
