"""Who to tell: run the sources in stages, merge what they found, rank it, and explain it.

Stage 1 (concurrent): reverse DNS; the registry (RDAP, with WHOIS when RDAP fails or names no
abuse contact). Stage 2: the host name hints of the finding are forward-confirmed; then
(concurrent, needs the confirmed names and the network) security.txt, domain RDAP and operator
overrides; the RFC 2142 role mailbox only as the last resort (``guess_allowed``). Stage 3: the
national CERT of the network's country. Each source runs under its own deadline; a failing source
is recorded, never fatal. The policy (what replaces what, when to guess, who is told) is in
``notifier.policy``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from .inflight import gate
from .models import (
    HintCheck,
    Network,
    Resolution,
    Role,
    SourceReport,
    Target,
)
from .policy import apply_overrides, choose, guess_allowed, merge_contacts
from .sources import (
    LookupContext,
    Query,
    cert,
    domain_rdap,
    hints,
    overrides,
    rdap,
    rdns,
    rolemailbox,
    securitytxt,
    whois,
)

__all__ = ["resolve", "choose", "merge_contacts", "apply_overrides", "guess_allowed"]
__all__ += ["reverse_dns", "registry", "complete", "by_name", "ready"]

Lookup = Callable[[Query, LookupContext], Awaitable[SourceReport]]


async def _cached(
    kind: str,
    key: str,
    name: str,
    lookup: Lookup,
    query: Query,
    ctx: LookupContext,
    deadline: float | None,
) -> SourceReport:
    """A by-name source's answer from the cache, else run and cached (failures are not).

    Concurrent callers with the same key wait for the first one's answer rather than asking
    again (a batch has many addresses behind one host name or one domain).
    """
    if ctx.cache is None or not key:
        return await _run(name, lookup, query, ctx, deadline)
    # one address's PTR is asked by one process: a mark in the shared store would cost more
    # than the query it saves; names and domains are shared by many addresses and processes
    async with gate(ctx, f"{kind}:{key}", shared=kind != "ptr"):
        hit = ctx.cache.get(kind, key)
        if hit is not None:
            if ctx.tracing:
                ctx.trace("cache-hit", {"kind": kind, "key": key})
            cached: list[SourceReport] = hit
            return cached[0]
        report = await _run(name, lookup, query, ctx, deadline)
        if report.error is None:
            ctx.cache.put(kind, key, [report], ctx.settings.batch.cache_ttl_hours * 3600)
        return report


async def _run(
    name: str, lookup: Lookup, query: Query, ctx: LookupContext, deadline: float | None
) -> SourceReport:
    # ``deadline`` None: a lookup that asks no server (for each address, a timer costs more)
    if ctx.tracing:
        ctx.trace("source-start", {"source": name, "ip": str(query.target.ip)})
    try:
        if deadline is None:
            report = await lookup(query, ctx)
        else:
            async with asyncio.timeout(deadline):
                report = await lookup(query, ctx)
    except TimeoutError:
        report = SourceReport(name, error=f"no answer within {deadline:g} s")
    except Exception as exc:  # noqa: BLE001 - one source's failure never sinks the others
        report = SourceReport(name, error=str(exc) or type(exc).__name__)
    if not ctx.tracing:
        return report
    ctx.trace(
        "source-done",
        {
            "source": name,
            "contacts": [c.address for c in report.contacts],
            "hostnames": list(report.hostnames),
            "error": report.error,
        },
    )
    return report


# Lookups of addresses in one block queue behind each other, so that a network is fetched once
# however many of its addresses arrive together. The block starts coarse (/16; v6 /32), since
# nothing is known of the networks there yet, and narrows to the size of the networks the
# registry answered with (down to /24; v6 /48), so the customer networks side by side in one
# provider block are fetched in parallel, not one after another.
_COARSE = {4: 16, 6: 32}
_FINEST = {4: 24, 6: 48}


def _block(target: Target, length: int) -> str:
    """A name for the /``length`` holding the target (integer arithmetic: called per lookup)."""
    host_bits = target.ip.max_prefixlen - length
    return f"{target.ip.version}:{int(target.ip) >> host_bits << host_bits:x}/{length}"


async def _registry(query: Query, ctx: LookupContext) -> list[SourceReport]:
    """RDAP, then WHOIS when RDAP failed or named no abuse contact; answers cached by range."""
    target = query.target
    version = target.ip.version
    if ctx.cache is not None:
        cached = ctx.cache.lookup_range("registry", target.ip)
        if cached is not None:  # the common case in a batch: no lock, no mark
            if ctx.tracing:
                ctx.trace("cache-hit", {"kind": "registry", "ip": str(target.ip)})
            reports: list[SourceReport] = cached
            return reports
    coarse = _block(target, _COARSE[version])
    while True:
        grain = _grain(ctx, coarse, version)
        async with gate(ctx, f"registry:{_block(target, grain)}"):
            if _grain(ctx, coarse, version) != grain:
                continue  # the block narrowed while we waited: queue in our own part of it
            found, cidrs = await _registry_locked(query, ctx)
            if cidrs:
                finest = max(ipaddress.ip_network(c).prefixlen for c in cidrs)
                narrower = min(finest, _FINEST[version])
                if narrower > grain:
                    _narrow(ctx, coarse, narrower)
            return found


def _grain(ctx: LookupContext, coarse: str, version: int) -> int:
    """The width at which lookups in the block ``coarse`` queue: what this process learnt, or
    what another process sharing the cache did (both must name a network's mark alike)."""
    grain: int = ctx.inflight.get("registry-grain:" + coarse, _COARSE[version])
    if grain < _FINEST[version] and ctx.cache is not None:
        shared = ctx.cache.get("registry-grain", coarse)
        if isinstance(shared, int) and grain < shared <= _FINEST[version]:
            grain = ctx.inflight["registry-grain:" + coarse] = shared
    return grain


def _narrow(ctx: LookupContext, coarse: str, grain: int) -> None:
    ctx.inflight["registry-grain:" + coarse] = grain
    if ctx.cache is not None:
        ctx.cache.put("registry-grain", coarse, grain, ctx.settings.batch.cache_ttl_hours * 3600)


async def _registry_locked(
    query: Query, ctx: LookupContext
) -> tuple[list[SourceReport], list[str]]:
    """The registry's reports for the query (from the cache when it has them), and the ranges
    they were stored for."""
    settings = ctx.settings
    if ctx.cache is not None:
        cached = ctx.cache.lookup_range("registry", query.target.ip)
        if cached is not None:
            if ctx.tracing:
                ctx.trace("cache-hit", {"kind": "registry", "ip": str(query.target.ip)})
            reports: list[SourceReport] = cached
            return reports, []
    rdap_deadline = settings.rdap.timeout * 4 + settings.rdap.max_retry_after
    found = [await _run("rdap", rdap.lookup, query, ctx, rdap_deadline)]
    first = found[0]
    if first.error or not any(c.confidence >= 0.8 for c in first.contacts):
        whois_query = replace(query, network=first.network)
        whois_deadline = settings.whois.timeout * (settings.whois.max_referrals + 4)
        found.append(await _run("whois", whois.lookup, whois_query, ctx, whois_deadline))
    cidrs = _cacheable(query.target, (c for r in found if r.network for c in r.network.cidrs))
    ttl = settings.batch.cache_ttl_hours * 3600
    if ctx.cache is not None and cidrs:
        ctx.cache.store_range("registry", cidrs, found, ttl)
    elif ctx.cache is not None and not any(r.error for r in found):
        # a registry that answered "nothing here" is asked again only after a while, and only
        # for this address: a failure (timeout, 5xx) is never cached
        host = f"{query.target.ip}/{query.target.ip.max_prefixlen}"
        ctx.cache.store_range("registry", [host], found, ttl / 4)
    return found, cidrs


def _cacheable(target: Target, cidrs: Iterable[str]) -> list[str]:
    """Ranges an answer may speak for: those holding the queried address and no wider than /8
    (v6: /16), so a hostile answer claiming 0.0.0.0/0 cannot answer for everyone else."""
    kept = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if target.ip in net and net.prefixlen >= (8 if net.version == 4 else 16):
            kept.append(str(net))
    return kept


def _network(reports: Iterable[SourceReport]) -> Network | None:
    """RDAP's network record, gaps filled from WHOIS."""
    networks = [r.network for r in reports if r.network is not None]
    if not networks:
        return None
    best = networks[0]
    for other in networks[1:]:
        best = replace(
            best,
            country=best.country or other.country,
            org=best.org or other.org,
            name=best.name or other.name,
            cidrs=best.cidrs or other.cidrs,
            asn=best.asn if best.asn is not None else other.asn,
        )
    return best


async def resolve(target: Target, ctx: LookupContext) -> Resolution:
    """Every contact for ``target``, ranked, with provenance, notes and evidence."""
    rdns_report, registry_reports = await asyncio.gather(
        reverse_dns(target, ctx), registry(target, ctx)
    )
    return await complete(target, rdns_report, registry_reports, ctx)


# The stages, for callers that schedule them apart (a batch runs each with its own width).


async def reverse_dns(target: Target, ctx: LookupContext) -> SourceReport:
    """Stage 1a: the target's forward-confirmed PTR names (cached by address)."""
    deadline = ctx.settings.dns.timeout * 4
    base = Query(target, hostnames=target.hostnames)
    return await _cached("ptr", str(target.ip), "rdns", rdns.lookup, base, ctx, deadline)


async def registry(target: Target, ctx: LookupContext) -> list[SourceReport]:
    """Stage 1b: the registry's answer for the target's network (cached by range)."""
    return await _registry(Query(target, hostnames=target.hostnames), ctx)


async def ready(ctx: LookupContext, version: int, asked: asyncio.Event | None = None) -> None:
    """What a batch's first lookups need, readied with its first address: the bootstraps of
    that address family's registries and of the domain registries, then the public suffix
    lists (30 ms of parsing each: in threads, while the bootstraps' answers are on their way).
    ``asked`` is set once both bootstraps' requests have left (or none was needed): bulk DNS
    waits for it, as its answers would keep the event loop from making those connections."""
    marks = [asyncio.Event(), asyncio.Event()]
    loads = asyncio.gather(
        rdap.load_bootstrap("dns", ctx, asked=marks[0]),
        rdap.load_bootstrap(f"ipv{version}", ctx, asked=marks[1]),
        return_exceptions=True,  # the lookup that needs one reports its failure
    )
    try:
        for mark in marks:
            await mark.wait()
        if asked is not None:
            asked.set()
        await asyncio.to_thread(rdns.load_psl)
        await loads
    finally:
        if asked is not None:
            asked.set()
        loads.cancel()  # done by now, unless this was cancelled


async def complete(
    target: Target,
    rdns_report: SourceReport,
    registry_reports: list[SourceReport],
    ctx: LookupContext,
    early: Awaitable[list[SourceReport]] | None = None,
) -> Resolution:
    """Stages 2 and 3, given stage 1's reports: names, owner sources, the national CERT.

    ``early``: ``by_name`` for the reverse-DNS names, started as soon as they were known (a
    batch does, while the address waits for its network's answer); used when no host name hint
    added a name to them.
    """
    settings = ctx.settings
    dns_deadline = settings.dns.timeout * 4
    reports = [rdns_report, *registry_reports]
    checks, hint_notes = await hints.check_hints(
        hints.hints_of(target), rdns_report.hostnames, target, ctx
    )
    confirmed = [c.name for c in checks if c.confirmed]
    hostnames = tuple(dict.fromkeys([*rdns_report.hostnames, *confirmed]))
    network = _network(registry_reports)
    query = Query(target, hostnames=hostnames, network=network)
    if early is not None and hostnames == tuple(rdns_report.hostnames):
        reports += await early
    else:
        reports += await by_name(target, hostnames, ctx)
    reports.append(await _run("overrides", overrides.lookup, query, ctx, dns_deadline))
    return await _decide(target, query, reports, checks, hint_notes, ctx)


async def by_name(
    target: Target, hostnames: tuple[str, ...], ctx: LookupContext
) -> list[SourceReport]:
    """The lookups by host name: security.txt, and the RDAP of the names' domains (cached by
    name, one fetch per name in flight)."""
    settings = ctx.settings
    query = Query(target, hostnames=hostnames)
    # a generic hosting name's domain is the provider's: its registrar and registrant say
    # nothing of the host's owner (and a batch would ask the domain registry once per pool)
    named = tuple(h for h in hostnames if not rdns.is_generic_hosting_name(h, target.ip))
    # only generic names: the source has nothing to fetch, so nothing to keep or share
    names = ",".join(sorted(hostnames)) if named else ""
    lookups = (
        _cached(
            "security.txt",
            names,
            "security.txt",
            securitytxt.lookup,
            query,
            ctx,
            settings.http.timeout * 4 + 1 if named else None,
        ),
        _cached(
            "domain-rdap",
            ",".join(domain_rdap.registrable_domains(named)),
            "domain-rdap",
            domain_rdap.lookup,
            replace(query, hostnames=named),
            ctx,
            settings.rdap.timeout * 3 + settings.whois.timeout if named else None,
        ),
    )
    if named:
        return list(await asyncio.gather(*lookups))
    # nothing to fetch by name (most addresses of a batch): no task for each of them
    return [await lookup for lookup in lookups]


async def _decide(
    target: Target,
    query: Query,
    reports: list[SourceReport],
    checks: list[HintCheck],
    hint_notes: list[str],
    ctx: LookupContext,
) -> Resolution:
    """The policy over the sources' reports: overrides, the last-resort guess, the national
    CERT, and who of all that is told."""
    dns_deadline = ctx.settings.dns.timeout * 4
    found, _, _ = apply_overrides(
        merge_contacts(c for r in reports for c in r.contacts), [], reports
    )
    why_not = guess_allowed(found, reports, ctx)
    if why_not is None:
        reports.append(await _run("role-mailbox", rolemailbox.lookup, query, ctx, dns_deadline))
    elif query.hostnames and not any(c.role in (Role.OWNER, Role.OVERRIDE) for c in found):
        reports.append(SourceReport("role-mailbox", notes=[f"no role mailbox guessed: {why_not}"]))
    reports.append(await _run("national-cert", cert.lookup, query, ctx, None))

    contacts, channels, replaced = apply_overrides(
        merge_contacts(c for r in reports for c in r.contacts),
        list(dict.fromkeys(ch for r in reports for ch in r.channels)),
        reports,
    )
    recipients, fallbacks = choose(contacts)
    return Resolution(
        target=target,
        recipients=recipients,
        fallbacks=fallbacks,
        network=query.network,
        hostnames=query.hostnames,
        notes=(
            *(f"{r.source}: {n}" for r in reports for n in r.notes),
            *(f"hints: {n}" for n in hint_notes),
            *(f"overrides: {n}" for n in replaced),
        ),
        evidence=tuple(e for r in reports for e in r.evidence),
        errors=tuple((r.source, r.error) for r in reports if r.error),
        channels=tuple(channels),
        hints=tuple(checks),
    )
