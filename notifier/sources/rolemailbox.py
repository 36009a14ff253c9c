"""RFC 2142 role mailboxes: ``security@`` and ``abuse@`` the owner's domain, as a last guess.

Nobody published these addresses; RFC 2142 §4 only says they should exist. So they are offered at
low confidence, and only for a domain that takes mail at all: it has an MX that is not the null MX
of RFC 7505 (``MX 0 .``), or no MX but an address record, which RFC 5321 §5.1 makes the implicit
mail exchanger. Generic hosting names (``…compute.amazonaws.com``) are skipped: their domain is
the provider's, not the owner's.
"""

from __future__ import annotations

import dns.exception
import dns.resolver

from ..addresses import clean_address
from ..errors import SourceError, SourceTimeout, SourceUnavailable
from ..models import Contact, Role, SourceReport
from . import LookupContext, Query
from .rdns import clean_hostname, is_generic_hosting_name, registrable_domain

__all__ = ["lookup", "mail_exchanger", "ROLE_MAILBOXES", "SOURCE", "CONFIDENCE"]

SOURCE = "role-mailbox"
ROLE_MAILBOXES = ("security", "abuse")
CONFIDENCE = 0.3
_MAX_DOMAINS = 4


async def _records(ctx: LookupContext, name: str, rdtype: str) -> list[str] | None:
    """Record texts of ``name``/``rdtype``; [] when there are none, None when the name is absent."""
    try:
        answer = await ctx.resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.Timeout:
        raise SourceTimeout(f"{rdtype} lookup of {name} timed out", source=SOURCE) from None
    except dns.resolver.NoNameservers:
        raise SourceUnavailable(
            f"{rdtype} lookup of {name}: no nameserver answered", source=SOURCE
        ) from None
    except dns.exception.DNSException as exc:
        raise SourceUnavailable(
            f"{rdtype} lookup of {name} failed ({type(exc).__name__})", source=SOURCE
        ) from None
    return [rdata.to_text() for rdata in answer]


async def mail_exchanger(ctx: LookupContext, domain: str) -> tuple[str | None, str]:
    """Where mail for ``domain`` goes, as (how, why not).

    ``how`` is ``"MX <host>"`` or ``"no MX; address fallback"``, or None when the domain takes no
    mail; ``why not`` then says why.
    """
    mx = await _records(ctx, domain, "MX")
    if mx is None:
        return None, f"{domain} does not exist"
    exchanges: list[tuple[int, str]] = []
    for text in mx:
        preference, _, exchange = text.partition(" ")
        try:
            exchanges.append((int(preference), exchange.strip().rstrip(".").lower()))
        except ValueError:
            continue
    real = sorted((pref, host) for pref, host in exchanges if host)
    if real:
        return f"MX {real[0][1]}", ""
    if exchanges:
        return None, f"{domain} publishes a null MX (RFC 7505): it accepts no mail"
    for rdtype in ("A", "AAAA"):
        found = await _records(ctx, domain, rdtype)
        if found:
            return f"no MX; {rdtype} record fallback (RFC 5321)", ""
    return None, f"{domain} has neither MX nor address records: it accepts no mail"


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """``security@`` and ``abuse@`` on the owner's registrable domain, when it takes mail."""
    report = SourceReport(source=SOURCE)
    domains: list[str] = []
    for raw in query.hostnames:
        host = clean_hostname(raw)
        if host is None:
            continue
        if is_generic_hosting_name(host, query.target.ip):
            report.notes.append(f"{host} is a generic hosting name: no role mailbox guessed")
            continue
        domain = registrable_domain(host)
        if domain and domain not in domains:
            domains.append(domain)
    failures: list[SourceError] = []
    for domain in domains[:_MAX_DOMAINS]:
        try:
            how, why_not = await mail_exchanger(ctx, domain)
        except SourceError as exc:
            failures.append(exc)
            report.notes.append(str(exc))
            continue
        if how is None:
            report.notes.append(why_not)
            continue
        for mailbox in ROLE_MAILBOXES:
            address = clean_address(f"{mailbox}@{domain}")
            if address is None:
                continue
            report.contacts.append(
                Contact(
                    address=address,
                    role=Role.OWNER,
                    sources=(SOURCE,),
                    confidence=CONFIDENCE,
                    provenance=(f"RFC 2142 role mailbox on {domain} ({how})",),
                )
            )
    if failures and not report.contacts:
        # nothing guessed because DNS failed, not because no domain takes mail: say so
        raise failures[0]
    return report
