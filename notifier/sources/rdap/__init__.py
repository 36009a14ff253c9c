"""RDAP for IP addresses: the registry's record of the network, and its abuse desk.

Four parts, in the order of a lookup: ``bootstrap`` (IANA's map of which server answers for an
address, RFC 9224), ``client`` (the bounded, polite HTTP GET), ``parse`` (JSON in, network and
contacts out, no I/O) over ``entities`` (the entity tree and its jCards). ``lookup``, here, is the
source: bootstrap, ``ip/<addr>``, parse, report; abuse entities the answer only abbreviated are
fetched as ``entity/<handle>`` from the same server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ...errors import SourceError, SourceUnavailable
from ...models import IPAddress, SourceReport
from .. import LookupContext, Query
from .bootstrap import (
    Bootstrap,
    clear_bootstrap_cache,
    decode_json,
    domain_registry_ahead,
    load_bootstrap,
    parse_bootstrap,
)
from .client import ACCEPT, RETRY_ATTEMPTS, RDAPAnswer, RDAPClient, host_of, parse_retry_after
from .entities import MAX_DEPTH, MAX_ENTITIES, Entity, contacts_from_entities, walk_entities
from .parse import SOURCE, RDAPRecord, guess_registry, parse_rdap

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
    "host_of",
    "decode_json",
    "load_bootstrap",
    "domain_registry_ahead",
    "clear_bootstrap_cache",
    "lookup",
]


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
    answer = await client.fetch(f"{base}ip/{addr}", report)
    if answer.status == 404:
        report.notes.append(f"{host_of(answer.final_url)} has no RDAP record for {addr} (404)")
        return report
    if answer.status != 200 or answer.data is None:
        raise SourceUnavailable(f"{answer.final_url}: HTTP {answer.status}", source=SOURCE)
    record = parse_rdap(answer.data)
    if record.abbreviated and not record.abuse_found:
        resolved = await _resolve_entities(record, answer, client, report)
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
            fetched = await client.fetch(url, report)
        except SourceError as exc:
            report.notes.append(f"could not fetch abuse entity {handle}: {exc}")
            continue
        if fetched.status == 200 and fetched.data is not None:
            resolved[handle] = fetched.data
        else:
            report.notes.append(f"abuse entity {handle}: HTTP {fetched.status} from {url}")
    return resolved
