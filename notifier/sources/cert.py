"""The national CERT of the country the target's network is registered in (``contacts.yaml``).

The last rung of the ladder: ``resolve`` sends to it only when nobody closer to the address can
be reached. The country comes from the registry's record of the network (RDAP or WHOIS); without
one there is nothing to look up, and no CERT is guessed.
"""

from __future__ import annotations

import re

from ..addresses import header_text
from ..models import SourceReport
from . import LookupContext, Query

__all__ = ["lookup", "SOURCE"]

SOURCE = "national-cert"
_ISO = re.compile(r"^[A-Za-z]{2}\Z")


async def lookup(query: Query, ctx: LookupContext) -> SourceReport:
    """The national CERT for ``query.network.country`` from ``ctx.contacts``."""
    report = SourceReport(source=SOURCE)
    network = query.network
    country = network.country.strip() if network is not None else ""
    if not country:
        report.notes.append("no country for the network: no national CERT looked up")
        return report
    if not _ISO.match(country):
        # registries sometimes publish "EU", "AP" or free text; only an ISO code names a CERT
        report.notes.append(f"country {header_text(country, 40)!r} is not an ISO 3166 code")
        return report
    if ctx.contacts is None:
        report.notes.append("no contacts registry loaded")
        return report
    report.contacts.extend(ctx.contacts.national_cert_contacts(country))
    if not report.contacts:
        report.notes.append(f"no national CERT known for {country.upper()}")
    return report
