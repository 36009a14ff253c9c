"""RFC 2142 role mailbox: ``security@`` the owner's domain, as the very last guess.

Nobody published this address; RFC 2142 §4 only says it should exist. So it is offered once, at
low confidence, and only for a domain with a mail exchanger of its own: an MX record that is not
the null MX of RFC 7505 (``MX 0 .``). The address-record fallback of RFC 5321 §5.1 does not count:
a domain that never set up mail most likely reads none. Of RFC 2142's roles ``SECURITY``
("security bulletins or queries") is the one a vulnerability report is; ``ABUSE`` ("inappropriate
public behaviour") is for complaints about what a host does, and the network's abuse desk is
told already. Generic hosting names (``…compute.amazonaws.com``) are skipped: their domain is the
provider's, not the owner's. ``notifier.resolve`` decides whether guessing happens at all.
"""

from __future__ import annotations

import dns.exception
import dns.resolver

from ..addresses import clean_address
from ..errors import SourceError, SourceTimeout, SourceUnavailable
from ..models import Contact, Role, SourceReport
from . import LookupContext, Query
from .rdns import clean_hostname, is_generic_hosting_name, registrable_domain

__all__ = ["lookup", "mail_exchanger", "ROLE_MAILBOX", "SOURCE", "CONFIDENCE", "PROVENANCE"]

SOURCE = "role-mailbox"
ROLE_MAILBOX = "security"
PROVENANCE = "guessed"
CONFIDENCE = 0.3
_MAX_DOMAINS = 4


async def _records(ctx: LookupContext, name: str, rdtype: str) -> list[str] | None:
    """Record texts of ``name``/``rdtype``; [] when there are none, None when the name is absent.

    Asked through the batch's c-ares channel when there is one (same texts, same exceptions)."""
    try:
        if ctx.bulk_dns is not None:
            return list((await ctx.bulk_dns.query(name, rdtype)).values)
        answer = await ctx.resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.Timeout:
        raise SourceTimeout(
            f"{rdtype} lookup of {name} timed out after the {ctx.resolver.lifetime:g} s limit "
            "([dns] timeout)",
            source=SOURCE,
        ) from None
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

    ``how`` is ``"MX <host>"``, or None when the domain has no mail exchanger of its own; ``why
    not`` then says why. An address record alone is not enough (see the module's note).
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
    return None, f"{domain} has no MX record of its own"


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """At most one guess: ``security@`` the first owner domain that has an MX of its own."""
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
            report.notes.append(f"{why_not}: no role mailbox guessed")
            continue
        address = clean_address(f"{ROLE_MAILBOX}@{domain}")
        if address is None:
            continue
        report.contacts.append(
            Contact(
                address=address,
                role=Role.OWNER,
                sources=(SOURCE,),
                confidence=CONFIDENCE,
                provenance=(
                    PROVENANCE,
                    f"RFC 2142 role mailbox on {domain} ({how}); no source published it",
                ),
            )
        )
        return report
    if failures:
        # nothing guessed because DNS failed, not because no domain takes mail: say so
        raise failures[0]
    return report
