"""The operator's own word on who to tell: overrides in ``contacts.yaml``.

An override names a contact for a network (CIDR), an AS number or a domain. It is matched
against the target address (most specific network), the network's AS number, and the target's
host names together with their registrable domains (Public Suffix List, offline), so that an
override for ``example.org`` also covers ``db.example.org``.

An override replaces what the sources found in its scope (``mode: add`` keeps both): one for a
network or an AS number stands in for the registry's abuse contact, one for a domain for the
owner-level contacts (security.txt, registrant, guessed mailbox). The report lists the roles
replaced; ``notifier.resolve`` applies that. An entry's ``url`` is reported as a channel.
"""

from __future__ import annotations

from ..models import Channel, ChannelKind, Role, SourceReport
from . import LookupContext, Query
from .rdns import clean_hostname, registrable_domain

__all__ = ["lookup", "SOURCE"]

SOURCE = "overrides"
_MAX_NAMES = 50  # host names come from PTR records and findings: bound the work they cause


def _domains(query: Query) -> list[str]:
    """The target's host names and their registrable domains, cleaned and de-duplicated."""
    found: dict[str, None] = {}
    for raw in query.hostnames[:_MAX_NAMES]:
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
    matched = registry.matching_overrides(query.target.ip, asn, _domains(query))
    report.contacts.extend(registry.override_contacts(matched))
    for entry in matched:
        replaced = Role.NETWORK if entry.network_scope else Role.OWNER
        if entry.mode == "replace" and replaced not in report.replaces:
            report.replaces.append(replaced)
        if entry.url:
            kind = (
                ChannelKind.WEB if entry.url.lower().startswith("https://") else ChannelKind.OTHER
            )
            report.channels.append(
                Channel(
                    kind,
                    entry.url,
                    Role.OVERRIDE,
                    SOURCE,
                    (f"operator override for {entry.key}, {entry.origin}",),
                )
            )
    return report
