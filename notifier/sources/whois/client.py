"""Talking to one WHOIS server: query syntax, charset, byte cap, deadline, politeness."""

from __future__ import annotations

import asyncio
import re

from ... import net
from ...errors import SourceError, SourceProtocolError, SourceUnavailable
from .. import LookupContext
from .fields import _clip, _has_control
from .registries import _RATE_LIMIT_BACKOFF, _REGISTRIES, SOURCE, _canonical

__all__: list[str] = []  # internal: the package (sources.whois) is the surface

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
    addresses = await net.resolve_host(ctx.resolver, host, ctx.bulk_dns)
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
            bulk=ctx.bulk_dns,
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
