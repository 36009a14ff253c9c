"""RDAP for IP addresses: the registry's record of the network, and its abuse desk.

Three layers. ``parse_rdap`` (and ``parse_bootstrap``, in ``rdap_bootstrap``) are pure: JSON in,
values out, no I/O.
``RDAPClient`` fetches through the shared guarded HTTP client with a byte cap, a deadline, bounded
redirects (each hop recorded), per-registry politeness and tenacity retries on 429/5xx honouring
``Retry-After``. ``lookup`` is the source: IANA bootstrap (RFC 9224), ``ip/<addr>``, parse, report.

Registries publish the abuse desk in different places (a nested POC at ARIN, a top-level role
object at RIPE, an ``IRT`` object at APNIC) and AFRINIC publishes no roles at all, so the entity
tree is walked at every depth, bounded, and an answer without any role says so in a note: the
resolver then asks WHOIS instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)

from .. import net
from ..addresses import clean_address, header_text, is_placeholder
from ..errors import SourceError, SourceProtocolError, SourceUnavailable
from ..models import Contact, Evidence, IPAddress, Network, Role, SourceReport
from . import LookupContext, Query
from .rdap_bootstrap import (
    Bootstrap,
    clear_bootstrap_cache,
    decode_json,
    load_bootstrap,
    parse_bootstrap,
)

__all__ = [
    "ACCEPT",
    "MAX_DEPTH",
    "MAX_ENTITIES",
    "RETRY_ATTEMPTS",
    "Bootstrap",
    "Entity",
    "RDAPRecord",
    "RDAPAnswer",
    "RDAPClient",
    "parse_bootstrap",
    "parse_rdap",
    "parse_retry_after",
    "walk_entities",
    "contacts_from_entities",
    "guess_registry",
    "decode_json",
    "load_bootstrap",
    "clear_bootstrap_cache",
    "lookup",
]

SOURCE = "rdap"
ACCEPT = "application/rdap+json"
MAX_DEPTH = 16  # entity nesting we follow; real registries use three levels at most
MAX_ENTITIES = 500  # entities examined per answer, whatever the nesting
RETRY_ATTEMPTS = 3
_MAX_CIDRS = 32
_MAX_EMAILS_PER_ENTITY = 20
_MAX_ENTITY_FETCHES = 2
_RATE_LIMIT_TITLE = "rate limit notice"

# (domain suffix of port43 / link hosts, handle suffix, display name)
_REGISTRIES: tuple[tuple[str, str, str], ...] = (
    ("ripe.net", "-RIPE", "RIPE NCC"),
    ("arin.net", "-ARIN", "ARIN"),
    ("apnic.net", "-AP", "APNIC"),
    ("lacnic.net", "-LACNIC", "LACNIC"),
    ("afrinic.net", "-AFRINIC", "AFRINIC"),
)

_CONFIDENCE = {"abuse": 0.9, "noc": 0.5, "technical": 0.5, "registrant": 0.4}
_FALLBACK_ROLES = ("noc", "technical", "registrant")


# --------------------------------------------------------------------------- RDAP JSON (pure)


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of an RDAP answer, flattened out of the tree."""

    handle: str
    roles: frozenset[str]
    fn: str
    emails: tuple[str, ...]  # raw jCard values, most preferred first
    depth: int
    ancestor_roles: frozenset[str] = frozenset()
    has_vcard: bool = False
    self_link: str = ""
    raw_fn: str = ""
    postal: tuple[str, ...] = ()  # the jCard ``adr``, as printable lines (cleaned)


def _text(value: object, limit: int = 200) -> str:
    return header_text(value, limit) if isinstance(value, str) else ""


def _pref(params: object) -> int:
    """jCard ``pref`` (1 most preferred .. 100); absent or junk sorts last."""
    value = params.get("pref") if isinstance(params, dict) else None
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 1 <= value <= 100 else 100
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if 1 <= number <= 100 else 100
    return 101


def _vcard(entity: Mapping[str, Any]) -> tuple[str, tuple[str, ...], bool]:
    """(fn, emails by pref, whether a jCard was there at all)."""
    vcard = entity.get("vcardArray")
    if not (isinstance(vcard, list) and len(vcard) >= 2 and isinstance(vcard[1], list)):
        return "", (), False
    fn = ""
    emails: list[tuple[int, int, str]] = []
    for position, prop in enumerate(vcard[1][:500]):
        if not (isinstance(prop, list) and len(prop) >= 4 and isinstance(prop[0], str)):
            continue
        name = prop[0].lower()
        if name == "fn" and not fn and isinstance(prop[3], str):
            fn = prop[3]
        elif name == "email" and len(emails) < _MAX_EMAILS_PER_ENTITY:
            pref = _pref(prop[1])
            for value in prop[3:]:
                if isinstance(value, str):
                    emails.append((pref, position, value))
    emails.sort(key=lambda item: (item[0], item[1]))
    return fn, tuple(value for _, _, value in emails), True


def _postal(entity: Mapping[str, Any]) -> tuple[str, ...]:
    """The first jCard ``adr`` (RFC 7095 §3.3.1.3) as address lines, each cleaned of controls.

    The ``label`` parameter is the address as printed when the registry gives one; otherwise the
    structured parts: street lines, "postcode locality", region, country.
    """
    vcard = entity.get("vcardArray")
    if not (isinstance(vcard, list) and len(vcard) >= 2 and isinstance(vcard[1], list)):
        return ()
    for prop in vcard[1][:500]:
        if not (isinstance(prop, list) and len(prop) >= 4 and prop[0] == "adr"):
            continue
        params = prop[1] if isinstance(prop[1], dict) else {}
        label = params.get("label")
        if isinstance(label, str) and label.strip():
            lines = label.splitlines()
        elif isinstance(prop[3], list):
            parts = [p if isinstance(p, list) else [p] for p in prop[3][:7]]
            parts += [[] for _ in range(7 - len(parts))]
            text = [[str(x) for x in part if isinstance(x, str | int)] for part in parts]
            lines = [*text[1], *text[2], " ".join([*text[5], *text[3]]), *text[4], *text[6]]
        else:
            continue
        cleaned = [_text(line, 100) for line in lines[:8]]
        return tuple(line for line in cleaned if line)
    return ()


def _self_link(obj: Mapping[str, Any]) -> str:
    links = obj.get("links")
    if isinstance(links, list):
        for link in links[:50]:
            if isinstance(link, dict) and link.get("rel") == "self":
                href = link.get("href")
                if isinstance(href, str) and href.startswith(("https://", "http://")):
                    return href
    return ""


def walk_entities(
    data: Mapping[str, Any],
    *,
    resolved: Mapping[str, Mapping[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> list[Entity]:
    """Every entity of ``data`` at any depth up to ``MAX_DEPTH``, in document order.

    ``resolved`` supplies full entity objects (``entity/<handle>`` answers) for entities the
    answer only abbreviated.
    """
    found: list[Entity] = []
    cut = False

    def visit(entities: object, depth: int, above: frozenset[str]) -> None:
        nonlocal cut
        if not isinstance(entities, list):
            return
        if depth > MAX_DEPTH:
            cut = True
            return
        for item in entities:
            if len(found) >= MAX_ENTITIES:
                cut = True
                return
            if not isinstance(item, dict):
                continue
            raw_handle = item.get("handle")
            handle = raw_handle if isinstance(raw_handle, str) else ""
            raw_roles = item.get("roles")
            roles = frozenset(
                r.strip().lower()
                for r in (raw_roles if isinstance(raw_roles, list) else [])[:20]
                if isinstance(r, str)
            )
            source: Mapping[str, Any] = item
            if "vcardArray" not in item and resolved and handle in resolved:
                source = resolved[handle]
            fn, emails, has_vcard = _vcard(source)
            found.append(
                Entity(
                    handle=_text(handle, 100),
                    roles=roles,
                    fn=_text(fn),
                    emails=emails,
                    depth=depth,
                    ancestor_roles=above,
                    has_vcard=has_vcard,
                    self_link=_self_link(item),
                    raw_fn=fn,
                    postal=_postal(source),
                )
            )
            visit(item.get("entities"), depth + 1, above | roles)

    visit(data.get("entities"), 1, frozenset())
    if cut and notes is not None:
        notes.append(
            f"entity tree cut at {MAX_DEPTH} levels / {MAX_ENTITIES} entities; deeper ones ignored"
        )
    return found


def guess_registry(data: Mapping[str, Any]) -> str:
    """Which registry wrote ``data``: from ``port43``, link hosts, then handle suffixes."""
    hosts: list[str] = []
    port43 = data.get("port43")
    if isinstance(port43, str):
        hosts.append(port43.lower())
    links = data.get("links")
    for link in links[:50] if isinstance(links, list) else []:
        if isinstance(link, dict) and isinstance(link.get("href"), str):
            hosts.append((urlsplit(link["href"]).hostname or "").lower())
    for host in hosts:
        for suffix, _, name in _REGISTRIES:
            if host == suffix or host.endswith("." + suffix):
                return name
    handles = [data.get("handle")]
    entities = data.get("entities")
    if isinstance(entities, list):
        handles += [e.get("handle") for e in entities[:50] if isinstance(e, dict)]
    for handle in handles:
        if not isinstance(handle, str):
            continue
        upper = handle.upper()
        if upper.startswith(("NET-", "NET6-")):
            return "ARIN"
        for _, suffix, name in _REGISTRIES:
            if upper.endswith(suffix):
                return name
    return _text(port43, 100) if isinstance(port43, str) and port43 else "unknown registry"


def _address(value: object) -> IPAddress | None:
    """An address from RIR spellings: ``074.125.000.000``, ``62.239.237.0/32``, padded IPv6."""
    if not isinstance(value, str) or len(value) > 100:
        return None
    text = value.strip().split("/", 1)[0]
    if "." in text and ":" not in text:
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
            return None
        text = ".".join(str(int(p)) for p in parts)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _cidrs(data: Mapping[str, Any]) -> tuple[tuple[str, ...], str, str]:
    start, end = _address(data.get("startAddress")), _address(data.get("endAddress"))
    cidrs: list[str] = []
    cidr0 = data.get("cidr0_cidrs")
    if isinstance(cidr0, list):
        for item in cidr0[:_MAX_CIDRS]:
            if not isinstance(item, dict):
                continue
            prefix = item.get("v4prefix") or item.get("v6prefix")
            length = item.get("length")
            if isinstance(prefix, str) and isinstance(length, int):
                try:
                    cidrs.append(str(ipaddress.ip_network(f"{prefix}/{length}", strict=False)))
                except ValueError:
                    continue
    if not cidrs:
        span: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
        if isinstance(start, ipaddress.IPv4Address) and isinstance(end, ipaddress.IPv4Address):
            span = ipaddress.summarize_address_range(start, end) if start <= end else ()
        elif isinstance(start, ipaddress.IPv6Address) and isinstance(end, ipaddress.IPv6Address):
            span = ipaddress.summarize_address_range(start, end) if start <= end else ()
        for network in span:
            cidrs.append(str(network))
            if len(cidrs) >= _MAX_CIDRS:
                break
    return (
        tuple(dict.fromkeys(cidrs)),
        str(start) if start is not None else "",
        str(end) if end is not None else "",
    )


def _asn(data: Mapping[str, Any]) -> int | None:
    for key in ("arin_originas0_originautnums", "originas0_originautnums"):
        values = data.get(key)
        if isinstance(values, list):
            for value in values:
                if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
                    return value
    return None


def _rate_limited(data: Mapping[str, Any]) -> bool:
    """A 200 that is really a refusal: some servers signal their limit as a notice."""
    notices = data.get("notices")
    return isinstance(notices, list) and any(
        isinstance(n, dict)
        and isinstance(n.get("title"), str)
        and n["title"].strip().lower() == _RATE_LIMIT_TITLE
        for n in notices[:50]
    )


@dataclass(frozen=True, slots=True)
class RDAPRecord:
    """What one RDAP ip network answer says: the network, the contacts and why."""

    network: Network
    contacts: tuple[Contact, ...] = ()
    notes: tuple[str, ...] = ()
    abuse_found: bool = False
    rate_limited: bool = False
    # handles of abuse entities published without a vCard, to fetch as entity/<handle>
    abbreviated: tuple[str, ...] = ()


def _refusal_note(raw: str, where: str) -> str:
    if any(ch in raw for ch in "\r\n\x00") or any(ord(ch) < 32 for ch in raw):
        return f"dropped an e-mail value with control characters (header injection?) in {where}"
    if is_placeholder(raw.strip()):
        return f"dropped placeholder address {header_text(raw, 80)!r} in {where}"
    return f"dropped invalid e-mail value {header_text(raw, 80)!r} in {where}"


def contacts_from_entities(
    entities: Iterable[Entity],
    *,
    role: Role,
    confidence: float,
    source: str,
    describe: str,
    notes: list[str],
) -> list[Contact]:
    """Clean each e-mail of ``entities`` into a Contact; refusals become notes. Deduplicated."""
    merged: dict[str, Contact] = {}
    for entity in entities:
        where = f"entity {entity.handle or '(no handle)'}"
        for raw in entity.emails:
            address = clean_address(raw)
            if address is None:
                notes.append(_refusal_note(raw, where))
                continue
            contact = Contact(
                address=address,
                role=role,
                sources=(source,),
                confidence=confidence,
                provenance=(f"{describe}, {where}",),
                name=entity.fn,
            )
            merged[address] = merged[address].merged(contact) if address in merged else contact
    return list(merged.values())


def parse_rdap(
    data: Mapping[str, Any], *, resolved: Mapping[str, Mapping[str, Any]] | None = None
) -> RDAPRecord:
    """The network and its contacts from one RDAP ``ip network`` answer (RFC 9083 §5.4).

    Abuse-role e-mails at any depth are the contacts (confidence 0.9); only when there are none,
    the first of noc, technical, registrant that has one stands in at lower confidence.
    """
    if not isinstance(data, Mapping):
        raise SourceProtocolError("RDAP answer is not a JSON object", source=SOURCE)
    kind = data.get("objectClassName")
    if kind is not None and (not isinstance(kind, str) or kind.strip().lower() != "ip network"):
        raise SourceProtocolError(
            f"RDAP answer is a {header_text(kind, 40)!r}, not an ip network", source=SOURCE
        )
    notes: list[str] = []
    registry = guess_registry(data)
    entities = walk_entities(data, resolved=resolved, notes=notes)
    cidrs, start, end = _cidrs(data)
    registrant = next((e for e in entities if "registrant" in e.roles and e.fn), None)
    # where a letter goes: the registrant's address, else the abuse desk's
    by_post = next((e for e in entities if "registrant" in e.roles and e.postal), None) or next(
        (e for e in entities if "abuse" in e.roles and e.postal), None
    )
    country = data.get("country")
    network = Network(
        registry=registry,
        handle=_text(data.get("handle"), 100),
        name=_text(data.get("name"), 100),
        cidrs=cidrs,
        start=start,
        end=end,
        country=country.strip().upper()
        if isinstance(country, str) and len(country.strip()) == 2 and country.strip().isalpha()
        else "",
        org=registrant.fn if registrant else "",
        asn=_asn(data),
        postal_name=by_post.fn if by_post else "",
        postal=by_post.postal if by_post else (),
    )
    label = cidrs[0] if cidrs else network.handle or f"{start} - {end}"
    describe = f"{registry} RDAP"

    abuse = [e for e in entities if "abuse" in e.roles]
    contacts = contacts_from_entities(
        abuse,
        role=Role.NETWORK,
        confidence=_CONFIDENCE["abuse"],
        source=SOURCE,
        describe=f"abuse contact of {label}, {describe}",
        notes=notes,
    )
    abbreviated = tuple(e.handle for e in abuse if not e.has_vcard and e.handle)
    abbreviated = tuple(dict.fromkeys(abbreviated))[:_MAX_ENTITY_FETCHES]
    abuse_found = bool(contacts)
    if not abuse_found:
        if not entities:
            notes.append(f"{registry} RDAP answer for {label} lists no entities: no abuse contact")
        elif not any(e.roles for e in entities):
            notes.append(
                f"{registry} RDAP answer for {label} gives its entities no roles"
                " (AFRINIC style): no abuse contact; WHOIS should be asked"
            )
        elif abuse:
            notes.append(f"abuse entity of {label} at {registry} publishes no usable e-mail")
        else:
            notes.append(f"{registry} RDAP answer for {label} has no abuse role")
        for fallback in _FALLBACK_ROLES:
            holders = [e for e in entities if fallback in e.roles]
            found = contacts_from_entities(
                holders,
                role=Role.NETWORK,
                confidence=_CONFIDENCE[fallback],
                source=SOURCE,
                describe=f"{fallback} contact of {label} (no abuse contact published), {describe}",
                notes=notes,
            )
            if found:
                notes.append(f"using the {fallback} contact of {label} at lower confidence")
                contacts = found
                break
    return RDAPRecord(
        network=network,
        contacts=tuple(contacts),
        notes=tuple(dict.fromkeys(notes)),
        abuse_found=abuse_found,
        rate_limited=_rate_limited(data),
        abbreviated=abbreviated,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


# --------------------------------------------------------------------------- client


@dataclass(slots=True)
class RDAPAnswer:
    """One RDAP answer: HTTP status, decoded object (200 only), raw bytes and redirect chain."""

    url: str
    status: int
    body: bytes
    chain: list[str]
    data: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    attempts: int = 1

    @property
    def final_url(self) -> str:
        return self.chain[-1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def hops(self) -> list[str]:
        """One line per redirect followed: registries pass queries on for transferred space."""
        return [
            f"RDAP redirect: {a} -> {b}" for a, b in zip(self.chain, self.chain[1:], strict=False)
        ]

    def evidence(self, fetched_at: datetime, source: str = SOURCE) -> Evidence:
        detail = f"HTTP {self.status}"
        if len(self.chain) > 1:
            detail += " via " + " -> ".join(self.chain)
        return Evidence(source, self.final_url, self.sha256, fetched_at, detail)


class _Retryable(Exception):
    def __init__(self, reason: str, delay: float):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class RDAPClient:
    """Bounded, polite RDAP GETs over the context's guarded HTTP client."""

    def __init__(self, ctx: LookupContext, *, source: str = SOURCE) -> None:
        self.ctx = ctx
        self.source = source
        self.requests = 0

    async def get(self, url: str) -> RDAPAnswer:
        """GET ``url`` with retries on 429/5xx/rate-limit notices; 404 and others are returned.

        All the waiting one call does, whatever the servers ask, stays within
        ``rdap.max_retry_after``. Raises ``SourceUnavailable`` when retries run out or a server
        asks for more than is left of that; ``SourceProtocolError`` for a malformed 200.
        """
        call = _Call()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    call.attempts += 1
                    answer = await self._once(url, call)
        except _Retryable as exc:
            raise SourceUnavailable(
                f"{url}: {exc.reason}; gave up after {call.attempts} attempts", source=self.source
            ) from None
        answer.notes = call.notes + answer.hops()
        answer.attempts = call.attempts
        return answer

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        return exc.delay if isinstance(exc, _Retryable) else 0.0

    async def _once(self, url: str, call: _Call) -> RDAPAnswer:
        settings = self.ctx.settings.rdap
        await self.ctx.limiter.wait(_host(url))
        self.requests += 1
        self.ctx.trace("rdap.request", {"url": url, "attempt": call.attempts})
        result = await net.fetch(
            self.ctx.http,
            url,
            max_bytes=settings.max_bytes,
            deadline=settings.timeout,
            accept=ACCEPT,
            max_redirects=settings.max_redirects,
            # a query that starts over HTTPS is never downgraded by a redirect
            https_only=url.startswith("https://"),
            source=self.source,
        )
        answer = RDAPAnswer(url=url, status=result.status, body=result.body, chain=result.chain)
        final_host = _host(result.url)
        limited = result.status == 429 or 500 <= result.status <= 599
        reason = f"{final_host} answered HTTP {result.status}"
        if result.status == 200:
            answer.data = decode_json(result.body, result.url)
            if _rate_limited(answer.data):
                limited, reason = True, f"{final_host} sent a Rate Limit Notice"
        if not limited:
            return answer
        left = max(0.0, settings.max_retry_after - call.waited)
        asked = parse_retry_after(result.headers.get("retry-after"), self.ctx.clock())
        delay = asked if asked is not None else min(2.0 ** (call.attempts - 1), left)
        self.ctx.limiter.pause(final_host, delay)
        if delay > left:
            raise SourceUnavailable(
                f"{reason} asking to wait {delay:g} s, more than is left of "
                f"rdap.max_retry_after ({settings.max_retry_after:g} s)",
                source=self.source,
            )
        call.waited += delay
        call.notes.append(
            f"{reason}; waiting {delay:g} s before retrying (attempt {call.attempts})"
        )
        self.ctx.trace("rdap.retry", {"url": url, "status": result.status, "delay": delay})
        raise _Retryable(reason, delay)


@dataclass(slots=True)
class _Call:
    """State of one ``RDAPClient.get`` across its attempts."""

    attempts: int = 0
    waited: float = 0.0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the source


def _stamp(exc: SourceError, target: str) -> SourceError:
    exc.target = exc.target or target
    exc.source = exc.source or SOURCE
    return exc


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """The network record and abuse contacts of ``query.target.ip`` from its RIR's RDAP."""
    addr = query.target.ip
    try:
        return await _lookup(addr, ctx)
    except SourceError as exc:
        raise _stamp(exc, str(addr)) from None


async def _lookup(addr: IPAddress, ctx: LookupContext) -> SourceReport:
    report = SourceReport(source=SOURCE)
    kind = "ipv4" if addr.version == 4 else "ipv6"
    bootstrap = await load_bootstrap(kind, ctx)
    match = bootstrap.match_ip(addr)
    if match is None:
        report.notes.append(f"no RDAP service for {addr} in the {kind} bootstrap")
        return report
    entry, urls = match
    base = urls[0]
    report.notes.append(f"RDAP bootstrap: {addr} is in {entry}, served by {base}")
    client = RDAPClient(ctx)
    answer = await client.get(f"{base}ip/{addr}")
    report.notes.extend(answer.notes)
    report.evidence.append(answer.evidence(ctx.clock()))
    if answer.status == 404:
        report.notes.append(f"{_host(answer.final_url)} has no RDAP record for {addr} (404)")
        return report
    if answer.status != 200 or answer.data is None:
        raise SourceUnavailable(f"{answer.final_url}: HTTP {answer.status}", source=SOURCE)
    record = parse_rdap(answer.data)
    if record.abbreviated and not record.abuse_found:
        resolved = await _resolve_entities(record, answer, client, ctx, report)
        if resolved:
            record = parse_rdap(answer.data, resolved=resolved)
    report.network = record.network
    report.contacts = list(record.contacts)
    report.notes.extend(record.notes)
    ctx.trace(
        "rdap.answer",
        {
            "ip": str(addr),
            "url": answer.final_url,
            "contacts": [c.address for c in record.contacts],
        },
    )
    return report


async def _resolve_entities(
    record: RDAPRecord,
    answer: RDAPAnswer,
    client: RDAPClient,
    ctx: LookupContext,
    report: SourceReport,
) -> dict[str, dict[str, Any]]:
    """Fetch abuse entities the answer only abbreviated (RFC 9083 allows it).

    The entity is asked of the server that answered, not of a self link the answer names, so an
    answer cannot send us to a host of its choosing.
    """
    base = answer.final_url.rsplit("/ip/", 1)[0] + "/"
    resolved: dict[str, dict[str, Any]] = {}
    for handle in record.abbreviated:
        url = f"{base}entity/{quote(handle, safe='')}"
        try:
            fetched = await client.get(url)
        except SourceError as exc:
            report.notes.append(f"could not fetch abuse entity {handle}: {exc}")
            continue
        report.notes.extend(fetched.notes)
        report.evidence.append(fetched.evidence(ctx.clock()))
        if fetched.status == 200 and fetched.data is not None:
            resolved[handle] = fetched.data
        else:
            report.notes.append(f"abuse entity {handle}: HTTP {fetched.status} from {url}")
    return resolved
