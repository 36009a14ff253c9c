"""Reverse DNS: the PTR names of the target, kept only when they resolve back to it (FCrDNS).

Anyone who controls the reverse zone of an address can make its PTR say anything
(``www.bank.example``); only a name whose own A/AAAA records contain the address is evidence that
the name's owner runs the host. Unconfirmed names are reported as notes, never used.

Many confirmed names still say nothing about the owner: ``ec2-3-1-2-3.compute.amazonaws.com`` or
``static-1-2-3-4.dsl.isp.example`` name the provider's address pool, and their domain belongs to
the provider. ``is_generic_hosting_name`` spots them so that later sources (security.txt, role
mailboxes) do not mistake the provider for the owner.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from functools import cache, lru_cache

import dns.exception
import dns.name
import dns.resolver
import dns.reversename
from publicsuffixlist import PSLFILE, PublicSuffixList

from ..addresses import header_text
from ..errors import SourceProtocolError, SourceTimeout, SourceUnavailable
from ..models import Evidence, IPAddress, SourceReport
from . import LookupContext, Query

__all__ = ["lookup", "registrable_domain", "is_generic_hosting_name", "clean_hostname", "SOURCE"]

SOURCE = "rdns"
_MAX_PTR_NAMES = 10  # a hostile reverse zone may publish hundreds; each costs a forward lookup

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")

# hosting and cloud domains whose reverse names name the provider's pool, never a customer
_PROVIDER_DOMAINS = (
    "amazonaws.com",
    "googleusercontent.com",
    "linode.com",
    "linodeusercontent.com",
    "vultr.com",
    "vultrusercontent.com",
    "ovh.net",
    "ovh.ca",
    "ovh.us",
    "kimsufi.com",
    "your-server.de",
    "contaboserver.net",
    "poneytelecom.eu",
    "akamaitechnologies.com",
    "ec2.internal",
)
_PROVIDER_SUFFIXES = tuple("." + d for d in _PROVIDER_DOMAINS)
# words ISPs and hosters put in the names of address pools (a whole token, digits allowed)
_POOL_TOKEN = re.compile(
    r"^(?:[a-z]*dsl|dyn|dynamic|dynip|static|staticip|pool|cable|cablemodem|customers?|cust"
    r"|dhcp|ppp|pppoe|broadband|clients?|cpe|unassigned|unknown|rev|reverse|residential"
    r"|subscriber|dialup|dial|ftth|fibre|fiber|nat|mobile)\d*$"
)
# ip-…, host-…, ec2-… as the first label (OVH's ip-51-68-1.eu, AWS's ip-10-0-0-1)
_POOL_PREFIX = re.compile(r"^(?:ip-|ip\d|host-|ec2-)")
_NUMBERED_LABEL = re.compile(r"^(?:ip|host|ec2)-\d")
_ICANN_BEGIN = "// ===BEGIN ICANN DOMAINS==="
_ICANN_END = "// ===END ICANN DOMAINS==="
_DOTTED_QUAD = re.compile(r"(?<!\d)(\d{1,3})[-.](\d{1,3})[-.](\d{1,3})[-.](\d{1,3})(?!\d)")


@cache
def psl(*, only_icann: bool) -> PublicSuffixList:
    """The public suffix list shipped inside publicsuffixlist's wheel: parsed once a process
    (for every source that asks), never downloaded."""
    rules = _suffix_rules()
    if rules is None:  # a list without its ICANN markers: the library's own reading
        return PublicSuffixList(only_icann=only_icann)
    return PublicSuffixList(rules[1] if only_icann else rules[0], accept_encoded_idn=False)


def load_psl() -> None:
    """Both readings of the list (``psl``), ahead of the names that will need them."""
    psl(only_icann=False)
    psl(only_icann=True)


@cache
def _suffix_rules() -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The shipped list's rules, all and ICANN's, each internationalised one with its A-label
    beside it, as the library's parser adds them. It runs every rule through the IDNA codec (25
    ms a list, on the way to a batch's first registry answers); some 460 of 11,000 rules are not
    ASCII, and theirs are lower-case already, so Punycode alone gives their A-labels."""
    with open(PSLFILE, encoding="utf-8") as stream:
        text = stream.read()
    before, begin, rest = text.partition(_ICANN_BEGIN)
    icann, end, private = rest.partition(_ICANN_END)
    if not (begin and end):
        return None
    icann_rules = _rules(icann)
    return _rules(before) + icann_rules + _rules(private), icann_rules


def _rules(section: str) -> tuple[str, ...]:
    found: list[str] = []
    for line in section.splitlines():
        rule = line.lower().split(" ")[0].rstrip()
        if not rule or rule.startswith("//"):
            continue
        found.append(rule)
        if not rule.isascii():
            bare = rule.lstrip("!")
            encoded = ".".join(
                label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
                for label in bare.split(".")
            )
            found.append("!" + encoded if rule != bare else encoded)
    return tuple(found)


def clean_hostname(name: str) -> str | None:
    """``name`` as a lower-case ASCII (A-label) host name without the final dot, or None."""
    if not isinstance(name, str):
        return None
    value = name.strip().rstrip(".")
    if not value or len(value) > 253:
        return None
    literal = value.strip("[]")
    # only a text of digits and dots, or one with a colon, can be an address literal
    if ":" in literal or not literal.strip("0123456789."):
        try:
            ipaddress.ip_address(literal)
            return None
        except ValueError:
            pass
    if value.isascii():
        # what the IDNA codec does to ASCII, whose label-length checks _LABEL makes below
        value = value.lower()
    else:
        try:
            value = value.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    labels = value.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return value


def registrable_domain(name: str) -> str | None:
    """The domain a registrant holds for ``name`` (``db.example.co.uk`` → ``example.co.uk``).

    Uses the Public Suffix List shipped with ``publicsuffixlist`` (private suffixes included, so
    ``app.herokuapp.com`` is its own registrable domain). None for IP literals, public suffixes
    and names that are not host names.
    """
    host = clean_hostname(name)
    if host is None:
        return None
    found = psl(only_icann=False).privatesuffix(host)
    return found if isinstance(found, str) else None


def _ip_forms(ip: IPAddress) -> list[str]:
    """How an address tends to be written into its own reverse name."""
    if ip.version == 4:
        octets = str(ip).split(".")
        forms = [
            "-".join(octets),
            ".".join(octets),
            "-".join(reversed(octets)),
            ".".join(reversed(octets)),
            "".join(f"{int(o):03d}" for o in octets),
            f"{int(ip):08x}",
        ]
    else:
        forms = [
            str(ip).replace(":", "-"),
            ip.exploded.replace(":", ""),
            ip.exploded.replace(":", "-"),
        ]
    return [form for form in forms if len(form) >= 7]


@lru_cache(maxsize=4096)  # a batch asks about each address's names more than once
def is_generic_hosting_name(name: str, ip: IPAddress | None = None) -> bool:
    """Whether ``name`` is a provider's pool name rather than a name its customer chose.

    Matches cloud and hosting domains (AWS, Google Cloud, Linode, Vultr, OVH, Hetzner...), names
    that spell out an IPv4 address (or ``ip``'s own forms when given), and ISP pool words
    (``static``, ``dyn``, ``pool``, ``dsl``, ``cable``, ``customer``, ``ip-``, ``host-``...).
    """
    host = clean_hostname(name)
    if host is None:
        return False
    if host in _PROVIDER_DOMAINS or host.endswith(_PROVIDER_SUFFIXES):
        return True
    # some hosters register the pool names themselves (OVH's ip-51-68-1.eu)
    if any(_NUMBERED_LABEL.match(label) for label in host.split(".")):
        return True
    # judge only what the registrant chose: the labels left of the ICANN registrable domain
    base = psl(only_icann=True).privatesuffix(host)
    left = host[: -len(base) - 1] if isinstance(base, str) and host != base else ""
    if not left:
        return False
    if ip is not None and any(form in left for form in _ip_forms(ip)):
        return True
    for match in _DOTTED_QUAD.finditer(left):
        if all(int(part) <= 255 for part in match.groups()):
            return True
    if _POOL_PREFIX.match(left):
        return True
    tokens = re.split(r"[.-]", left)
    return any(_POOL_TOKEN.match(token) for token in tokens)


async def _query(name: str, rdtype: str, ctx: LookupContext) -> tuple[list[str], str]:
    """The values of ``rdtype`` records for ``name`` (PTR names without the final dot) and the
    answer's text, through the batch's c-ares resolver when there is one; dnspython's
    exceptions on failure either way."""
    if ctx.bulk_dns is not None:
        bulk = await ctx.bulk_dns.query(name, rdtype)
        return list(bulk.values), bulk.text
    answer = await ctx.resolver.resolve(name, rdtype, search=False)
    values = [
        rdata.target.to_text(omit_final_dot=True) if hasattr(rdata, "target") else rdata.to_text()
        for rdata in answer
    ]
    return values, answer.rrset.to_text() if answer.rrset is not None else ""


async def _confirm(name: str, ip: IPAddress, ctx: LookupContext) -> str | None:
    """None when ``name`` resolves back to ``ip``; otherwise why it does not."""
    rdtype = "A" if ip.version == 4 else "AAAA"
    try:
        values, _ = await _query(name, rdtype, ctx)
    except dns.resolver.NXDOMAIN:
        return "the name does not exist"
    except dns.resolver.NoAnswer:
        return f"it has no {rdtype} record"
    except dns.exception.Timeout:
        return "the forward lookup timed out"
    except dns.resolver.NoNameservers:
        return "no nameserver answered the forward lookup"
    except dns.exception.DNSException as exc:
        return f"the forward lookup failed ({type(exc).__name__})"
    addresses: list[IPAddress] = []
    for value in values:
        try:
            addresses.append(ipaddress.ip_address(value))
        except ValueError:
            continue
    if ip in addresses:
        return None
    shown = ", ".join(str(a) for a in addresses[:3]) or "nothing"
    return f"its {rdtype} records point elsewhere ({shown})"


def _reverse_name(ip: IPAddress) -> str:
    """The PTR name of ``ip`` as dnspython writes it (``4.3.2.1.in-addr.arpa.``)."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        # dnspython puts a mapped IPv4 address under in-addr.arpa
        return str(dns.reversename.from_address(str(ip)).to_text())
    return ip.reverse_pointer + "."


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """PTR names of the target, forward-confirmed; confirmed names go to ``report.hostnames``."""
    report = SourceReport(source=SOURCE)
    ip = query.target.ip
    reverse = _reverse_name(ip)
    try:
        found, rrset_text = await _query(reverse, "PTR", ctx)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        report.notes.append(f"no PTR record for {ip}")
        return report
    except dns.exception.Timeout:
        raise SourceTimeout(
            f"PTR lookup for {ip} timed out after the {ctx.resolver.lifetime:g} s limit "
            "([dns] timeout)",
            target=str(ip),
            source=SOURCE,
        ) from None
    except dns.resolver.NoNameservers:
        raise SourceUnavailable(
            f"PTR lookup for {ip}: no nameserver answered (SERVFAIL or refused)",
            target=str(ip),
            source=SOURCE,
        ) from None
    except dns.exception.DNSException as exc:
        raise SourceProtocolError(
            f"PTR lookup for {ip} failed: {header_text(exc) or type(exc).__name__}",
            target=str(ip),
            source=SOURCE,
        ) from None

    names: list[str] = []
    for raw in found:
        name = clean_hostname(raw)
        if name is None:
            report.notes.append(f"ignored a PTR answer that is not a host name: {header_text(raw)}")
        elif name not in names:
            names.append(name)
    if len(names) > _MAX_PTR_NAMES:
        report.notes.append(f"{len(names)} PTR names; only the first {_MAX_PTR_NAMES} checked")
        names = names[:_MAX_PTR_NAMES]
    report.evidence.append(
        Evidence(
            source=SOURCE,
            locator=f"PTR {reverse}",
            sha256=hashlib.sha256(rrset_text.encode()).hexdigest(),
            fetched_at=ctx.clock(),
            detail=header_text(", ".join(names) or "no usable name", limit=500),
        )
    )
    if ctx.tracing:
        ctx.trace("rdns.ptr", {"ip": str(ip), "names": list(names)})

    if len(names) == 1:  # the usual case: no task for it
        reasons = [await _confirm(names[0], ip, ctx)]
    else:
        reasons = await asyncio.gather(*(_confirm(name, ip, ctx) for name in names))
    for name, reason in zip(names, reasons, strict=True):
        if reason is not None:
            report.notes.append(f"PTR name {name} is not forward-confirmed: {reason}; not used")
            continue
        report.hostnames.append(name)
        if is_generic_hosting_name(name, ip):
            domain = registrable_domain(name) or name
            report.notes.append(
                f"{name} looks like a generic hosting name: its domain {domain} belongs to the "
                "provider, not to the owner of the host"
            )
    if ctx.tracing:
        ctx.trace("rdns.confirmed", {"ip": str(ip), "hostnames": list(report.hostnames)})
    return report
