"""Lookup sources: one module per source, one signature for all.

Each source module exposes ``async def lookup(query: Query, ctx: LookupContext) -> SourceReport``.
A source with nothing to say returns an empty report; it raises ``SourceError`` only for real
failures, which ``notifier.resolve`` records and survives. Sources never touch templates, SMTP or
the audit log, and never create their own network clients: those come in through the context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import dns.asyncresolver
import httpx

from ..config import Settings
from ..models import IPAddress, Network, SourceReport, Target
from ..net import RateLimiter

if TYPE_CHECKING:
    from ..contacts import ContactRegistry
    from .ares import BulkResolver

__all__ = ["Query", "LookupContext", "Source", "Cache", "Tracer", "utcnow"]

Tracer = Callable[[str, dict[str, Any]], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _no_trace(event: str, fields: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Query:
    """What a source is asked about: the target, and what earlier stages learnt of it."""

    target: Target
    hostnames: tuple[str, ...] = ()  # forward-confirmed PTR names and names from the finding
    network: Network | None = None


class Cache(Protocol):
    """Answers kept between lookups and runs (``notifier.cache``): by name, and by address range."""

    def get(self, kind: str, key: str) -> Any: ...

    def put(self, kind: str, key: str, value: Any, ttl: float) -> None: ...

    def lookup_range(self, kind: str, ip: IPAddress) -> Any: ...

    def store_range(self, kind: str, cidrs: list[str], value: Any, ttl: float) -> None: ...


@dataclass(slots=True)
class LookupContext:
    """The I/O clients, settings and clock every source shares."""

    settings: Settings
    resolver: dns.asyncresolver.Resolver
    http: httpx.AsyncClient
    limiter: RateLimiter
    clock: Callable[[], datetime] = utcnow
    trace: Tracer = _no_trace
    # whether anyone listens to ``trace``: the per-address events are not built otherwise
    tracing: bool = False
    cache: Cache | None = None
    contacts: ContactRegistry | None = None  # national CERTs and operator overrides
    # in-flight lookups shared by concurrent callers (same network, same host)
    inflight: dict[str, Any] = field(default_factory=dict)
    # c-ares for reverse DNS while a batch runs (cheaper per query than dnspython)
    bulk_dns: BulkResolver | None = None


class Source(Protocol):
    def __call__(self, query: Query, ctx: LookupContext) -> Awaitable[SourceReport]: ...
