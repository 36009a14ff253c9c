"""RDAP over HTTP: bounded, polite GETs through the shared guarded HTTP client.

A byte cap, a deadline, bounded redirects (each hop recorded), per-registry politeness and
tenacity retries on 429/5xx and rate-limit notices, honouring ``Retry-After`` within
``rdap.max_retry_after``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)

from ... import net
from ...errors import SourceUnavailable
from ...hostcache import GuardedClient
from ...models import Evidence, SourceReport
from ...ratelimit import Turn
from .. import LookupContext
from .bootstrap import decode_json
from .parse import SOURCE, rate_limited

__all__ = ["ACCEPT", "RETRY_ATTEMPTS", "RDAPAnswer", "RDAPClient", "host_of", "parse_retry_after"]

ACCEPT = "application/rdap+json"
RETRY_ATTEMPTS = 3
# connections a batch opens ahead to each registry it asks: at its rate, answers that take a
# round trip or two keep this many requests in flight beside the first
SPARES = 2


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(slots=True)
class RDAPAnswer:
    """One RDAP answer: HTTP status, decoded object (200 only), raw bytes and redirect chain."""

    url: str
    status: int
    body: bytes
    chain: list[str]
    data: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    attempts: int = 1

    @property
    def final_url(self) -> str:
        return self.chain[-1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def hops(self) -> list[str]:
        """One line per redirect followed: registries pass queries on for transferred space."""
        return [
            f"RDAP redirect: {a} -> {b}" for a, b in zip(self.chain, self.chain[1:], strict=False)
        ]

    def evidence(self, fetched_at: datetime, source: str = SOURCE) -> Evidence:
        detail = f"HTTP {self.status}"
        if len(self.chain) > 1:
            detail += " via " + " -> ".join(self.chain)
        return Evidence(source, self.final_url, self.sha256, fetched_at, detail)


class _Retryable(Exception):
    def __init__(self, reason: str, delay: float):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class RDAPClient:
    """Bounded, polite RDAP GETs over the context's guarded HTTP client."""

    def __init__(self, ctx: LookupContext, *, source: str = SOURCE) -> None:
        self.ctx = ctx
        self.source = source
        self.requests = 0

    async def fetch(self, url: str, report: SourceReport) -> RDAPAnswer:
        """``get``, with the answer's notes and evidence added to ``report``."""
        answer = await self.get(url)
        report.notes.extend(answer.notes)
        report.evidence.append(answer.evidence(self.ctx.clock(), self.source))
        return answer

    async def get(self, url: str) -> RDAPAnswer:
        """GET ``url`` with retries on 429/5xx/rate-limit notices; 404 and others are returned.

        All the waiting one call does, whatever the servers ask, stays within
        ``rdap.max_retry_after``. Raises ``SourceUnavailable`` when retries run out or a server
        asks for more than is left of that; ``SourceProtocolError`` for a malformed 200.
        """
        call = _Call()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    call.attempts += 1
                    answer = await self._once(url, call)
        except _Retryable as exc:
            raise SourceUnavailable(
                f"{url}: {exc.reason}; gave up after {call.attempts} attempts", source=self.source
            ) from None
        answer.notes = call.notes + answer.hops()
        answer.attempts = call.attempts
        return answer

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        return exc.delay if isinstance(exc, _Retryable) else 0.0

    async def _once(self, url: str, call: _Call) -> RDAPAnswer:
        # a turn is taken only with a connection to the registry free: a request that took its
        # turn and then queued for a connection would leave with the ones queued beside it, and
        # the registry would count them together (some answers of 429 at the start of a batch)
        async with self._slot(host_of(url)):
            return await self._paced(url, call)

    def _slot(self, host: str) -> asyncio.Semaphore:
        key = f"rdap-slots:{host}"
        slot = self.ctx.inflight.get(key)
        if not isinstance(slot, asyncio.Semaphore):
            slot = self.ctx.inflight[key] = asyncio.Semaphore(
                self.ctx.settings.http.connections_per_host
            )
        return slot

    def _spare(self, url: str, turn: Turn) -> None:
        """In a batch, the first turn at a registry opens connections for the requests that
        will follow it there, so that theirs are up when their turns come (``Spares``): once
        its own request has left, whose handshake theirs would otherwise slow (at a batch's
        start, five registries' first requests left 30 ms later beside ten more handshakes)."""
        http = self.ctx.http
        key = f"rdap-spares:{host_of(url)}"
        if (
            self.ctx.bulk_dns is None
            or key in self.ctx.inflight
            or not isinstance(http, GuardedClient)
        ):
            return
        self.ctx.inflight[key] = True
        count = min(SPARES, self.ctx.settings.http.connections_per_host - 1)
        http.spare(url, count, after=turn.left)

    async def _paced(self, url: str, call: _Call) -> RDAPAnswer:
        settings = self.ctx.settings.rdap
        # the next turn at this registry waits until this request has really left
        turn = await self.ctx.limiter.wait(host_of(url), confirm=True)
        self._spare(url, turn)
        self.requests += 1
        self.ctx.trace("rdap.request", {"url": url, "attempt": call.attempts})
        try:
            result = await net.fetch(
                self.ctx.http,
                url,
                max_bytes=settings.max_bytes,
                deadline=settings.timeout,
                accept=ACCEPT,
                max_redirects=settings.max_redirects,
                # a query that starts over HTTPS is never downgraded by a redirect
                https_only=url.startswith("https://"),
                source=self.source,
                # a redirect's registry takes its turn too (its rate counts that request)
                before_hop=lambda hop: self.ctx.limiter.wait(host_of(hop)),
                turn=turn,
            )
        finally:
            turn.sent()  # it never left (no connection): the turn is over all the same
        answer = RDAPAnswer(url=url, status=result.status, body=result.body, chain=result.chain)
        final_host = host_of(result.url)
        limited = result.status == 429 or 500 <= result.status <= 599
        reason = f"{final_host} answered HTTP {result.status}"
        if result.status == 200:
            answer.data = decode_json(result.body, result.url)
            if rate_limited(answer.data):
                limited, reason = True, f"{final_host} sent a Rate Limit Notice"
        if not limited:
            return answer
        left = max(0.0, settings.max_retry_after - call.waited)
        asked = parse_retry_after(result.headers.get("retry-after"), self.ctx.clock())
        delay = asked if asked is not None else min(2.0 ** (call.attempts - 1), left)
        self.ctx.limiter.pause(final_host, delay)
        if delay > left:
            raise SourceUnavailable(
                f"{reason} asking to wait {delay:g} s, more than is left of "
                f"rdap.max_retry_after ({settings.max_retry_after:g} s)",
                source=self.source,
            )
        call.waited += delay
        call.notes.append(
            f"{reason}; waiting {delay:g} s before retrying (attempt {call.attempts})"
        )
        self.ctx.trace("rdap.retry", {"url": url, "status": result.status, "delay": delay})
        raise _Retryable(reason, delay)


@dataclass(slots=True)
class _Call:
    """State of one ``RDAPClient.get`` across its attempts."""

    attempts: int = 0
    waited: float = 0.0
    notes: list[str] = field(default_factory=list)
