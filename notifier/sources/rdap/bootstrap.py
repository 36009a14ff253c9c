"""Where RDAP queries go: IANA's bootstrap registries (RFC 9224), live, cached, with a fallback.

``[rdap] bootstrap`` chooses the files:

- ``""`` (the default): IANA's own, ``https://data.iana.org/rdap/{ipv4,ipv6,asn,dns}.json``;
- a base URL (``https://…/``): the four files under it;
- ``"shipped"``: the snapshot shipped in ``notifier/data/bootstrap``, never fetching anything;
- a folder: the four files in it.

A fetched file is kept under ``<state dir>/rdap-bootstrap/`` with the HTTP caching headers of
its answer (RFC 9111): it is used without asking while fresh (``Cache-Control: max-age``, else
``Expires``, else a tenth of its age since ``Last-Modified``, at most a day), then revalidated
with ``If-None-Match`` / ``If-Modified-Since`` (a 304 keeps it). When the fetch fails, the stale
copy is used, else the shipped snapshot: a registry that cannot be reached never stops a lookup.
In a process each file is parsed once (RFC 9224 §8: do not fetch on every query).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx

from ...addresses import header_text
from ...config import shipped_path
from ...errors import ConfigError, SourceError, SourceProtocolError, SourceUnavailable
from ...hostcache import GuardedClient
from ...models import IPAddress
from .. import LookupContext
from .stored import Stored, freshness, load_stored, store

__all__ = [
    "Bootstrap",
    "parse_bootstrap",
    "decode_json",
    "load_bootstrap",
    "domain_registry_ahead",
    "clear_bootstrap_cache",
    "freshness",
    "IANA_BOOTSTRAP",
]

SOURCE = "rdap"
IANA_BOOTSTRAP = "https://data.iana.org/rdap/"
SHIPPED = "shipped"
_MAX_BYTES = 4_000_000  # IANA's dns.json is some 50 kB; far more is not a bootstrap file


class Bootstrap:
    """One IANA bootstrap registry (RFC 9224): ``ipv4``, ``ipv6``, ``asn`` or ``dns``."""

    def __init__(
        self,
        kind: str,
        services: Iterable[tuple[tuple[str, ...], tuple[str, ...]]],
        publication: str = "",
    ) -> None:
        self.kind = kind
        self.publication = publication
        self.services: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = tuple(services)
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
        self._by_length: list[tuple[tuple[int, int], dict[int, int]]] | None = None
        self._ranges: list[tuple[int, int, int]] = []
        self._labels: dict[str, int] = {}
        for index, (entries, _urls) in enumerate(self.services):
            for entry in entries:
                self._index(entry, index)

    def _index(self, entry: str, index: int) -> None:
        if self.kind in ("ipv4", "ipv6"):
            try:
                self._networks.append((ipaddress.ip_network(entry, strict=False), index))
            except ValueError:
                return
        elif self.kind == "asn":
            low, _, high = entry.partition("-")
            if low.isdigit() and (high or low).isdigit():
                self._ranges.append((int(low), int(high or low), index))
        elif self.kind == "dns":
            self._labels.setdefault(entry.lower().strip("."), index)

    def _urls(self, index: int) -> tuple[str, ...]:
        return self.services[index][1]

    def match_ip(self, addr: IPAddress) -> tuple[str, tuple[str, ...]] | None:
        """The longest prefix holding ``addr`` and its base URLs (HTTPS first), or None."""
        if self._by_length is None:
            # per (version, prefix length): network start -> entry; the first entry listed for
            # a prefix wins, as in a scan (a batch asks thousands of times: no scan each time)
            table: dict[tuple[int, int], dict[int, int]] = {}
            for network, index in self._networks:
                starts = table.setdefault((network.version, network.prefixlen), {})
                starts.setdefault(int(network.network_address), index)
            self._by_length = sorted(table.items(), key=lambda item: -item[0][1])
        value = int(addr)
        for (version, length), starts in self._by_length:
            if version != addr.version:
                continue
            shift = addr.max_prefixlen - length
            start = value >> shift << shift
            found = starts.get(start)
            if found is not None:
                if version == 4:
                    return str(ipaddress.IPv4Network((start, length))), self._urls(found)
                return str(ipaddress.IPv6Network((start, length))), self._urls(found)
        return None

    def match_asn(self, asn: int) -> tuple[str, tuple[str, ...]] | None:
        """The narrowest range holding ``asn`` and its base URLs, or None."""
        found = [(high - low, low, high, i) for low, high, i in self._ranges if low <= asn <= high]
        if not found:
            return None
        _, low, high, index = min(found)
        return f"{low}-{high}", self._urls(index)

    def match_domain(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """The longest label-wise suffix of ``name`` with a service, and its base URLs."""
        labels = name.lower().strip(".").split(".")
        for start in range(len(labels)):
            suffix = ".".join(labels[start:])
            index = self._labels.get(suffix)
            if index is not None:
                return suffix, self._urls(index)
        return None


def _base_urls(urls: object) -> tuple[str, ...]:
    """HTTP(S) base URLs ending in ``/``, HTTPS first (RFC 9224 §3)."""
    if not isinstance(urls, list):
        return ()
    found: list[str] = []
    for url in urls:
        if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) < 2048:
            found.append(url if url.endswith("/") else url + "/")
    return tuple(sorted(dict.fromkeys(found), key=lambda u: not u.startswith("https://")))


def parse_bootstrap(kind: str, data: object) -> Bootstrap:
    """Parse an IANA bootstrap document; malformed services are skipped, not fatal."""
    if not isinstance(data, dict) or not isinstance(data.get("services"), list):
        raise SourceProtocolError(f"RDAP bootstrap {kind}: no services array", source=SOURCE)
    services: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for service in data["services"]:
        if not isinstance(service, list) or len(service) < 2:
            continue
        entries, urls = service[0], _base_urls(service[1])
        if not isinstance(entries, list) or not urls:
            continue
        services.append((tuple(e for e in entries if isinstance(e, str)), urls))
    publication = data.get("publication")
    return Bootstrap(kind, services, publication if isinstance(publication, str) else "")


def decode_json(body: bytes, where: str) -> dict[str, Any]:
    """A JSON object from ``body``, or ``SourceProtocolError`` (never a third-party error)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise SourceProtocolError(f"{where}: answer is not valid JSON", source=SOURCE) from None
    if not isinstance(data, dict):
        raise SourceProtocolError(f"{where}: answer is not a JSON object", source=SOURCE)
    return data


_PARSED: dict[str, tuple[Bootstrap, datetime | None]] = {}  # key -> (parsed, fresh until)
_LOOKING: set[asyncio.Future[None]] = set()  # servers' names resolved ahead, until answered


def clear_bootstrap_cache() -> None:
    """Forget every bootstrap file read or fetched so far in this process."""
    _PARSED.clear()


async def _get(
    ctx: LookupContext, url: str, stored: Stored | None, sent: asyncio.Event
) -> tuple[int, httpx.Headers, bytes]:
    """A bounded GET, conditional on the stored copy's validators; ``sent`` once its request
    has left."""

    async def trace(event: str, info: object) -> None:
        if event.endswith(".send_request_headers.complete"):
            sent.set()

    headers = {"Accept": "application/json"}
    if stored is not None and stored.etag:
        headers["If-None-Match"] = stored.etag
    if stored is not None and stored.last_modified:
        headers["If-Modified-Since"] = stored.last_modified
    deadline = ctx.settings.rdap.timeout
    try:
        async with asyncio.timeout(deadline):
            async with ctx.http.stream(
                "GET", url, headers=headers, extensions={"trace": trace}
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        raise SourceProtocolError(f"{url}: over {_MAX_BYTES} bytes")
                return response.status_code, response.headers, bytes(body)
    except TimeoutError:
        raise SourceUnavailable(f"{url}: no complete answer in {deadline:g} s") from None
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"{url}: {header_text(exc) or type(exc).__name__}") from None


async def _fetch(
    kind: str, url: str, ctx: LookupContext, sent: asyncio.Event
) -> tuple[Bootstrap, datetime | None]:
    """The parsed file and until when it is fresh, from the stored copy, IANA, or the snapshot;
    ``sent`` once the request has left, or once known that none will."""
    try:
        return await _fetched(kind, url, ctx, sent)
    finally:
        sent.set()


async def _fetched(
    kind: str, url: str, ctx: LookupContext, sent: asyncio.Event
) -> tuple[Bootstrap, datetime | None]:
    now = ctx.clock()
    # the server's name resolved while the stored copy is read: both are on the way to a
    # registry's first turn
    if isinstance(ctx.http, GuardedClient):
        looking = asyncio.ensure_future(ctx.http.look_up(url))
        _LOOKING.add(looking)
        looking.add_done_callback(_LOOKING.discard)
    stored = await asyncio.to_thread(load_stored, ctx, url)
    if stored is not None and stored.fresh_until > now:
        ctx.trace("rdap.bootstrap", {"url": url, "from": "stored, fresh"})
        return parse_bootstrap(kind, decode_json(stored.body, url)), stored.fresh_until
    try:
        status, headers, body = await _get(ctx, url, stored, sent)
        if status == 304 and stored is not None:
            # ETag and Last-Modified stay those of the 200 the copy came from
            kept = Stored(stored.body, freshness(headers, now), stored.etag, stored.last_modified)
            await asyncio.to_thread(store, ctx, url, kept)
            ctx.trace("rdap.bootstrap", {"url": url, "from": "stored, revalidated"})
            return parse_bootstrap(kind, decode_json(stored.body, url)), kept.fresh_until
        if status != 200:
            raise SourceUnavailable(f"{url}: HTTP {status}")
        parsed = parse_bootstrap(kind, decode_json(body, url))
        fresh = Stored(
            body,
            freshness(headers, now),
            headers.get("etag", "")[:200],
            headers.get("last-modified", "")[:100] or format_datetime(now, usegmt=True),
        )
        # two small files, no sync: less than a millisecond here, where a trip to a thread
        # and back costs a batch's busy loop some 15 ms on its way to the first registry
        with contextlib.suppress(OSError):  # an unwritable state dir costs a fetch next time
            store(ctx, url, fresh)
        ctx.trace("rdap.bootstrap", {"url": url, "from": "fetched", "status": status})
        return parsed, fresh.fresh_until
    except SourceError as exc:
        if stored is not None:
            ctx.trace("rdap.bootstrap", {"url": url, "from": "stored, stale", "why": str(exc)})
            # asked again after a short while, not on every query
            return parse_bootstrap(kind, decode_json(stored.body, url)), now + timedelta(minutes=5)
        ctx.trace("rdap.bootstrap", {"url": url, "from": "shipped snapshot", "why": str(exc)})
        return await _read_folder(kind, shipped_path("bootstrap")), now + timedelta(minutes=5)


async def _read_folder(kind: str, folder: Path) -> Bootstrap:
    path = folder / f"{kind}.json"
    try:
        stat = await asyncio.to_thread(path.stat)
        key = f"{path}@{stat.st_mtime_ns}"
        if key in _PARSED:
            return _PARSED[key][0]
        body = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise SourceUnavailable(
            f"RDAP bootstrap file {path} unreadable: {exc.strerror or exc}"
        ) from None
    parsed = parse_bootstrap(kind, decode_json(body, str(path)))
    _PARSED[key] = (parsed, None)
    return parsed


async def load_bootstrap(
    kind: str, ctx: LookupContext, *, source: str = SOURCE, asked: asyncio.Event | None = None
) -> Bootstrap:
    """The ``kind`` bootstrap (ipv4, ipv6, asn or dns) as ``rdap.bootstrap`` says; ``asked`` is
    set once its request to the server has left (or none is needed)."""
    try:
        return await _load_bootstrap(kind, ctx, source, asked)
    finally:
        if asked is not None:
            asked.set()


async def _load_bootstrap(
    kind: str, ctx: LookupContext, source: str, asked: asyncio.Event | None
) -> Bootstrap:
    setting = ctx.settings.rdap.bootstrap.strip()
    try:
        if setting == SHIPPED:
            return await _read_folder(kind, shipped_path("bootstrap"))
        if setting and not setting.startswith(("http://", "https://")):
            return await _read_folder(kind, Path(setting))
    except ConfigError as exc:
        raise SourceUnavailable(f"RDAP bootstrap: {exc}", source=source) from None
    except SourceError as exc:
        exc.source = exc.source or source
        raise
    url = (setting or IANA_BOOTSTRAP).rstrip("/") + f"/{kind}.json"
    known = _PARSED.get(url)
    if known is not None and known[1] is not None and known[1] > ctx.clock():
        return known[0]
    fetching = ctx.inflight.get(f"rdap-bootstrap:{url}")
    if fetching is None:
        sent = asyncio.Event()  # set by the fetch once its request has left, or at its end
        fetching = ctx.inflight[f"rdap-bootstrap:{url}"] = (
            asyncio.ensure_future(_fetch(kind, url, ctx, sent)),
            sent,
        )
    pending, sent = fetching
    if asked is not None and not pending.done():
        await sent.wait()  # whoever started the fetch
        asked.set()
    try:
        found: tuple[Bootstrap, datetime | None] = await asyncio.shield(pending)
    except SourceError as exc:
        exc.source = exc.source or source
        raise
    finally:
        if pending.done():
            ctx.inflight.pop(f"rdap-bootstrap:{url}", None)
    _PARSED[url] = found
    return found[0]


def domain_registry_ahead(names: Sequence[str], ctx: LookupContext) -> None:
    """The name of the RDAP server that the first of ``names``'s domain would be asked of,
    resolved now (once a top-level domain): a batch calls this with the names reverse DNS
    finds, so that the first owner's name to reach the domain registry finds its address known
    (the domain registry's first request of the 10k benchmark leaves 50-100 ms sooner)."""
    if not names:
        return
    name = names[0]
    tld = name.rstrip(".").rpartition(".")[2].lower()
    key = f"domain-registry-ahead:{tld}"
    if not tld or key in ctx.inflight or not isinstance(ctx.http, GuardedClient):
        return
    ctx.inflight[key] = True
    looking = asyncio.ensure_future(_domain_registry_ahead(name, ctx, ctx.http))
    _LOOKING.add(looking)
    looking.add_done_callback(_LOOKING.discard)


async def _domain_registry_ahead(name: str, ctx: LookupContext, http: GuardedClient) -> None:
    with contextlib.suppress(SourceError):  # the lookup that needs it meets the failure
        match = (await load_bootstrap("dns", ctx)).match_domain(name)
        if match is not None and match[1]:
            await http.look_up(match[1][0])
