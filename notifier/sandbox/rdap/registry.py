"""The loopback RDAP registry: real HTTP(S), real RDAP JSON, misbehaviour on request.

One ``RDAPRegistry`` is one registry (an RIR, a domain registry or a registrar) on its own
``WebServer`` port. It answers ``ip/<addr>`` by longest match over the networks it holds,
``domain/<name>`` and ``entity/<handle>`` exactly, and ``/bootstrap/{ipv4,ipv6,asn,dns}.json`` in
IANA format for itself and any peers it is told about. Captured answers replay as they are:
``RDAPRegistry("RIPE NCC", networks={"62.239.237.1/32": json.load(f)})``.

Misbehaviour is chosen per test: ``rate_limit`` (429 with Retry-After, or a 200 "Rate Limit
Notice"), ``fail`` (5xx), ``redirect`` (to another registry, as RIRs do for transferred space),
``slow`` (a dripping body), ``huge`` (a body over any sane cap) and ``malformed`` (broken JSON).
``rate_limit_per_second`` is a standing limit, as registries enforce one: queries beyond it are
answered 429 with Retry-After (and counted in ``throttled``).
``counts`` keeps the upstream requests per network, which the benchmark reports.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..web import Reply, Request, SandboxCA, WebServer
from .documents import bootstrap_json

__all__ = ["RDAPRegistry", "write_bootstrap"]

_CONTENT_TYPE = {"Content-Type": "application/rdap+json"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def write_bootstrap(folder: Path, registries: Iterable[RDAPRegistry]) -> Path:
    """Write ipv4/ipv6/asn/dns.json for ``registries`` into ``folder`` (for a folder bootstrap)."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = list(registries)
    for kind in ("ipv4", "ipv6", "asn", "dns"):
        document = bootstrap_json((r.bootstrap_entries(kind), [r.base_url]) for r in chosen)
        (folder / f"{kind}.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    return folder


@dataclass(slots=True)
class _Fault:
    reply: Reply
    times: int


@dataclass(slots=True)
class _Redirect:
    network: Network | None
    target: RDAPRegistry | str  # the registry (or base URL) the query is sent on to
    status: int = 301

    @property
    def base_url(self) -> str:
        # read at request time: the other registry may start (and get its port) after set-up
        return self.target.base_url if isinstance(self.target, RDAPRegistry) else self.target


@dataclass(slots=True)
class _Mode:
    drip: float = 0.0
    huge: int = 0
    malformed: bytes | None = None
    redirects: list[_Redirect] = field(default_factory=list)


class RDAPRegistry:
    """One RDAP registry on loopback, serving the networks, domains and entities it is given."""

    def __init__(
        self,
        name: str = "RIPE NCC",
        *,
        networks: Mapping[str, dict[str, Any]] | Iterable[tuple[str, dict[str, Any]]] = (),
        domains: Mapping[str, dict[str, Any]] | None = None,
        entities: Mapping[str, dict[str, Any]] | None = None,
        blocks: Iterable[str] = (),
        tlds: Iterable[str] = (),
        asns: Iterable[str] = (),
        ca: SandboxCA | None = None,
        hostnames: list[str] | None = None,
        bind: list[str] | None = None,
        base_path: str = "/",
        server: WebServer | None = None,
        host: str | None = None,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        # a shared server hosts several registries as virtual hosts; it is started by its owner
        self._owns_server = server is None
        self.server = server or WebServer(ca=ca, hostnames=hostnames, bind=bind)
        self.host = host.lower() if host else None
        self.base_path = "/" + base_path.strip("/") + ("/" if base_path.strip("/") else "")
        self._networks: list[tuple[Network, str, dict[str, Any]]] = []
        items = networks.items() if isinstance(networks, Mapping) else networks
        for cidr, data in items:
            self.add_network(cidr, data)
        self._domains: dict[str, dict[str, Any]] = {}
        for domain, data in (domains or {}).items():
            self.add_domain(domain, data)
        self._entities: dict[str, dict[str, Any]] = dict(entities or {})
        self._blocks = [str(ipaddress.ip_network(b, strict=False)) for b in blocks]
        self._tlds = [t.lower().strip(".") for t in tlds]
        self._asns = list(asns)
        self._faults: deque[_Fault] = deque()
        self._mode = _Mode()
        self._peers: list[RDAPRegistry] = []
        # upstream requests per network CIDR / domain / entity handle ("miss" when unknown)
        self.counts: Counter[str] = Counter()
        # a standing limit on queries (bootstrap files excepted): a token bucket refilled at
        # ``rate_limit_per_second``, ``rate_limit_burst`` deep (default: one second's worth)
        self.rate_limit_per_second = rate_limit_per_second
        self.rate_limit_burst = rate_limit_burst
        self.throttled = 0  # queries answered 429 because they came faster than the limit
        self.bootstrap_max_age = 86_400  # Cache-Control max-age of the bootstrap files
        self._clock = clock
        self._tokens: float | None = None
        self._refilled = 0.0
        prefix = self.base_path
        self.server.route(f"{prefix}ip/*", self._ip, host=self.host)
        self.server.route(f"{prefix}domain/*", self._domain, host=self.host)
        self.server.route(f"{prefix}entity/*", self._entity, host=self.host)
        self.server.route("/bootstrap/*", self._bootstrap, host=self.host)

    # ------------------------------------------------------------------ set-up

    def add_network(self, cidr: str, data: dict[str, Any]) -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        self._networks.append((network, str(network), data))

    def add_domain(self, name: str, data: dict[str, Any]) -> None:
        self._domains[name.lower().strip(".")] = data

    def add_entity(self, handle: str, data: dict[str, Any]) -> None:
        self._entities[handle] = data

    def also_bootstrap(self, *peers: RDAPRegistry) -> None:
        """List ``peers`` too in the bootstrap files this registry serves."""
        self._peers.extend(p for p in peers if p is not self)

    async def start(self) -> None:
        if self._owns_server:
            await self.server.start()

    async def stop(self) -> None:
        if self._owns_server:
            await self.server.stop()

    async def __aenter__(self) -> RDAPRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """The RDAP base URL (ends in ``/``): on ``host`` if given, else on 127.0.0.1."""
        return self.url()

    def url(self, host: str | None = None) -> str:
        name = host or self.host or "127.0.0.1"
        literal = f"[{name}]" if ":" in name else name
        return f"{self.server.scheme}://{literal}:{self.server.port}{self.base_path}"

    @property
    def bootstrap_url(self) -> str:
        """What ``rdap.bootstrap`` is set to, to use the files this registry serves."""
        return self.url().removesuffix(self.base_path) + "/bootstrap/"

    @property
    def requests(self) -> list[Request]:
        """Requests this registry answered (its virtual host only, on a shared server)."""
        return [r for r in self.server.requests if self.host is None or r.host == self.host]

    @property
    def request_count(self) -> int:
        """RDAP queries seen (bootstrap fetches excluded)."""
        return sum(1 for r in self.requests if not r.path.startswith("/bootstrap/"))

    def bootstrap_entries(self, kind: str) -> list[str]:
        if kind in ("ipv4", "ipv6"):
            version = 4 if kind == "ipv4" else 6
            found = self._blocks or [cidr for _, cidr, _ in self._networks]
            return [c for c in dict.fromkeys(found) if ipaddress.ip_network(c).version == version]
        if kind == "dns":
            return list(dict.fromkeys(self._tlds))
        if kind == "asn":
            return list(self._asns)
        return []

    # ------------------------------------------------------------------ misbehaviour

    def rate_limit(
        self, times: int = 1, retry_after: str | None = "0", *, notice: bool = False
    ) -> None:
        """The next ``times`` queries are refused: HTTP 429 (or a 200 Rate Limit Notice)."""
        headers = dict(_CONTENT_TYPE)
        if notice:
            body = {
                "rdapConformance": ["rdap_level_0"],
                "notices": [{"title": "Rate Limit Notice", "description": ["Slow down."]}],
            }
            self._faults.append(_Fault(Reply(200, json.dumps(body).encode(), headers), times))
            return
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        error = {"errorCode": 429, "title": "Too Many Requests"}
        self._faults.append(_Fault(Reply(429, json.dumps(error).encode(), headers), times))

    def fail(self, times: int = 1, status: int = 500, retry_after: str | None = None) -> None:
        """The next ``times`` queries get ``status`` (a 5xx by default)."""
        headers = dict(_CONTENT_TYPE)
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        body = json.dumps({"errorCode": status, "title": "Server error"}).encode()
        self._faults.append(_Fault(Reply(status, body, headers), times))

    def redirect(self, to: RDAPRegistry | str, cidr: str | None = None, status: int = 301) -> None:
        """Send ``ip/`` queries (in ``cidr``, or all) on to another registry's base URL."""
        network = ipaddress.ip_network(cidr, strict=False) if cidr else None
        self._mode.redirects.append(_Redirect(network, to, status))

    def slow(self, drip: float) -> None:
        """Answers drip one byte every ``drip`` seconds."""
        self._mode.drip = drip

    def huge(self, size: int) -> None:
        """Answers are ``size`` bytes (streamed, never held in memory)."""
        self._mode.huge = size

    def malformed(self, body: bytes = b'{"objectClassName": "ip network", "entities": [') -> None:
        """Answers are ``body``: not valid JSON by default."""
        self._mode.malformed = body

    def _over_limit(self) -> Reply | None:
        """429 with Retry-After when this query exceeds ``rate_limit_per_second``, else None."""
        rate = self.rate_limit_per_second
        if not rate:
            return None
        depth = max(1.0, self.rate_limit_burst if self.rate_limit_burst else rate)
        now = self._clock()
        if self._tokens is None:
            self._tokens = depth
        else:
            self._tokens = min(depth, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        self.throttled += 1
        self.counts["throttled"] += 1
        # delay-seconds is an integer (RFC 9110 §10.2.3): a client that overran waits a whole one
        wait = max(1, math.ceil((1.0 - self._tokens) / rate))
        headers = {**_CONTENT_TYPE, "Retry-After": str(wait)}
        error = {"errorCode": 429, "title": "Too Many Requests", "description": ["Slow down."]}
        return Reply(429, json.dumps(error).encode(), headers)

    def behave(self) -> None:
        """Forget every misbehaviour asked for (the standing rate limit stays)."""
        self._faults.clear()
        self._mode = _Mode()

    # ------------------------------------------------------------------ serving

    def _answer(self, key: str, data: dict[str, Any] | None) -> Reply:
        self.counts[key] += 1
        if self._faults:
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            return fault.reply
        if data is None:
            body = {"errorCode": 404, "title": "Not Found", "description": ["no such object"]}
            return Reply(404, json.dumps(body).encode(), dict(_CONTENT_TYPE))
        if self._mode.malformed is not None:
            return Reply(200, self._mode.malformed, dict(_CONTENT_TYPE))
        if self._mode.huge:
            chunk = b" " * 65_536
            repeat = max(1, -(-self._mode.huge // len(chunk)))
            return Reply(200, chunk, dict(_CONTENT_TYPE), repeat=repeat)
        return Reply(200, json.dumps(data).encode(), dict(_CONTENT_TYPE), drip=self._mode.drip)

    def _tail(self, request: Request, kind: str) -> str:
        return request.path[len(self.base_path) + len(kind) + 1 :]

    def _ip(self, request: Request) -> Reply:
        refused = self._over_limit()
        if refused is not None:
            return refused
        text = self._tail(request, "ip")
        try:
            queried = ipaddress.ip_network(text, strict=False)
        except ValueError:
            body = {"errorCode": 400, "title": "Bad Request"}
            return Reply(400, json.dumps(body).encode(), dict(_CONTENT_TYPE))
        for rule in self._mode.redirects:
            if rule.network is None or (
                rule.network.version == queried.version and queried.subnet_of(rule.network)  # type: ignore[arg-type]
            ):
                self.counts[f"redirect:{rule.network or '*'}"] += 1
                return Reply(rule.status, b"", {"Location": f"{rule.base_url}ip/{text}"})
        best: tuple[Network, str, dict[str, Any]] | None = None
        for entry in self._networks:
            network = entry[0]
            if network.version == queried.version and queried.subnet_of(network):  # type: ignore[arg-type]
                if best is None or network.prefixlen > best[0].prefixlen:
                    best = entry
        if best is None:
            return self._answer("miss", None)
        return self._answer(best[1], best[2])

    def _domain(self, request: Request) -> Reply:
        refused = self._over_limit()
        if refused is not None:
            return refused
        name = self._tail(request, "domain").lower().strip(".")
        data = self._domains.get(name)
        return self._answer(name if data is not None else "miss", data)

    def _entity(self, request: Request) -> Reply:
        refused = self._over_limit()
        if refused is not None:
            return refused
        handle = self._tail(request, "entity")
        data = self._entities.get(handle)
        return self._answer(f"entity:{handle}" if data is not None else "miss", data)

    def _bootstrap(self, request: Request) -> Reply:
        kind = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        if kind not in ("ipv4", "ipv6", "asn", "dns"):
            return Reply(404, b"not found\n", {"Content-Type": "text/plain"})
        registries = [self, *self._peers]
        document = bootstrap_json((r.bootstrap_entries(kind), [r.base_url]) for r in registries)
        body = json.dumps(document).encode()
        # caching headers as IANA's server sends them, so clients can be tested revalidating
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        headers = {
            "Content-Type": "application/json",
            "Cache-Control": f"max-age={self.bootstrap_max_age}",
            "ETag": etag,
            "Last-Modified": "Mon, 01 Jun 2026 20:00:01 GMT",
        }
        if request.headers.get("if-none-match") == etag:
            return Reply(304, b"", headers)
        return Reply(200, body, headers)
