"""The operator's own word on who to tell: overrides in ``contacts.yaml``.

An override names a contact for a network (CIDR), an AS number or a domain. It is matched
against the target address (most specific network), the network's AS number, and the target's
host names together with their registrable domains (Public Suffix List, offline), so that an
override for ``example.org`` also covers ``db.example.org``.
"""

from __future__ import annotations

from ..models import SourceReport
from . import LookupContext, Query
from .rdns import clean_hostname, registrable_domain

__all__ = ["lookup", "SOURCE"]

SOURCE = "overrides"
_MAX_NAMES = 50  # host names come from PTR records and findings: bound the work they cause


def _domains(query: Query) -> list[str]:
    """The target's host names and their registrable domains, cleaned and de-duplicated."""
    found: dict[str, None] = {}
    for raw in (*query.hostnames, *query.target.hostnames)[:_MAX_NAMES]:
        host = clean_hostname(raw)
        if host is None:
            continue
        found[host] = None
        domain = registrable_domain(host)
        if domain is not None:
            found[domain] = None
    return list(found)


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """Overrides for the target address, its network's AS number and its domains."""
    report = SourceReport(source=SOURCE)
    registry = ctx.contacts
    if registry is None or not registry.overrides:
        return report
    asn = query.network.asn if query.network is not None else None
    report.contacts.extend(registry.overrides_for(query.target.ip, asn, _domains(query)))
    return report
