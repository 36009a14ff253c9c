"""A batch's lookups in stages, each with its own width and queue.

One address at a time through every stage would let the slowest set everyone's pace (an address
waiting for a rate-limited registry would hold a slot the DNS lookups need), so they are apart:

- reverse DNS with forward confirmation: ``limits.dns_concurrency`` queries in flight to one
  resolver, over the whole input while the registries' queues drain (once their bootstraps
  are asked for: ``resolve.ready``);
- the registry (RDAP, WHOIS): one task per /24 (v6 /48) with addresses waiting, one request per
  network range: an address whose range is already answered takes that answer without a
  request, each registry host is paced apart (one answering 429 slows only its own queue), no
  more fetches start at once than the registries answer in three seconds (a fetch's deadline
  runs while it waits), and a block whose lookups failed twice shares that failure;
- the rest (security.txt and domain lookups by host name, overrides, the national CERT) once an
  address has both: again ``limits.dns_concurrency`` wide.

An address whose DNS goes unanswered is not held up: every query has a deadline, and a silent
resolver is asked no more but for a probe a second (``turns.Silence``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import NotifierError
from ..models import Resolution, SourceReport, Target
from ..resolve import by_name, complete, ready, registry, reverse_dns
from ..sources import LookupContext
from ..sources.ares import BulkResolver
from ..sources.rdap import domain_registry_ahead
from ..sources.rdns import is_generic_hosting_name
from ..workers import warm_forkserver
from .remote import REMOTE_AFTER, Remote, Result, default_lookup_workers
from .turns import Answered, Silence, Turns

__all__ = ["Lookups"]

_BLOCK = {4: 24, 6: 48}  # addresses of one block wait for one registry answer
_QUEUE_SECONDS = 3  # registry fetches started at once: this many seconds of their rate
_BLOCK_FAILURES = 2  # failed registry lookups in one block before its addresses share the failure

_BULK_PER_TICK = 8  # addresses the DNS and finishing stages take up per event-loop iteration
_PRELOAD = 256  # addresses whose cached PTR answers are read in one query
_WARM_WORKERS_AT = 256  # addresses waiting for DNS that start the fork server (0.5 s of imports)
_HOLD_DNS = 0.5  # seconds bulk DNS waits at most for the registries' bootstraps to be asked for

T = TypeVar("T")
Finish = Callable[[int, Resolution], Awaitable[None]]
Fail = Callable[[int, str], None]


class Lookups:
    """Resolve each distinct address of a batch; ``finish`` gets each resolution, ``fail`` the
    reason an address could not be resolved."""

    def __init__(
        self,
        ctx: LookupContext,
        target: Callable[[int], Target],
        finish: Finish,
        fail: Fail,
        *,
        width: int | None = None,
        own_registry: bool = True,
        on_dns: Callable[[], None] | None = None,
    ) -> None:
        """``own_registry`` False: a lookup worker's, given each address's registry answer
        (``answer``) by the sending process; ``on_dns`` is told each reverse lookup done."""
        self._ctx = ctx
        self._target = target
        self._finish = finish
        self._fail = fail
        self._width = width or ctx.settings.limits.dns_concurrency
        self._own_registry = own_registry
        self._on_dns = on_dns
        wanted = ctx.settings.limits.lookup_workers
        wanted = default_lookup_workers() if wanted is None else wanted
        self._workers_wanted = wanted if own_registry else 0
        self._remotes: list[Remote] = []
        self._sharing: set[Remote] = set()  # workers up, whose share of the width they have
        self.worker_cpu = 0.0  # CPU seconds the workers used, once they are done
        self._remote_of: dict[int, Remote] = {}  # addresses a worker holds
        self._pumping = False
        self._dns_queue: deque[int] = deque()
        # the same addresses in the same order, until their cached answers are read in bulk
        self._unloaded: deque[int] = deque()
        self._dns_workers = 0
        self._blocks: dict[tuple[int, int], deque[int]] = {}
        rate = ctx.settings.rdap.rate_per_second
        self._fetching = asyncio.Semaphore(max(10, int(rate * _QUEUE_SECONDS)))
        self._answered = Answered()
        self._rdns: dict[int, SourceReport] = {}  # DNS done, registry not yet
        self._registry: dict[int, list[SourceReport]] = {}  # registry done, DNS not yet
        self._ready: deque[tuple[int, SourceReport, list[SourceReport]]] = deque()
        self._early: dict[int, asyncio.Task[list[SourceReport]]] = {}  # lookups by name
        self._finishers = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._failure: BaseException | None = None
        self._bulk: BulkResolver | None = None  # ours to close
        self._turns = Turns(_BULK_PER_TICK)
        self._silence = Silence(ctx.settings.dns.timeout)
        self._warmed = False
        self._asked = asyncio.Event()  # the registries' bootstraps asked for: bulk DNS may go

    # -- scheduling -------------------------------------------------------------------------

    def add(self, ip_id: int) -> None:
        """Start resolving address ``ip_id``: its DNS and its registry lookups are queued."""
        if self._ctx.bulk_dns is None:
            self._bulk = self._ctx.bulk_dns = BulkResolver(self._ctx.settings.dns)
        if not self._warmed:
            self._warmed = True
            self._spawn(ready(self._ctx, self._target(ip_id).ip.version, self._asked))
        self._pending += 1
        self._idle.clear()
        self._dns_queue.append(ip_id)
        self._unloaded.append(ip_id)
        if self._dns_workers < self._width:
            self._dns_workers += 1
            self._spawn(self._dns_worker())
        if self._remotes:
            self._pump()
        elif self._workers_wanted and len(self._dns_queue) > REMOTE_AFTER:
            self._start_workers()
        elif self._workers_wanted and len(self._dns_queue) == _WARM_WORKERS_AT:
            warm_forkserver()  # workers (lookup or compose) are likely: their server starts now
        if not self._own_registry:
            return
        ip = self._target(ip_id).ip
        block = (ip.version, int(ip) >> (ip.max_prefixlen - _BLOCK[ip.version]))
        waiting = self._blocks.get(block)
        if waiting is None:
            self._blocks[block] = deque([ip_id])
            self._spawn(self._registry_worker(block))
        else:
            waiting.append(ip_id)

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            self._idle.set()

    async def wait(self) -> None:
        """Until every address added is resolved (or could not be). The DNS channel stays
        open for what the run still looks up by name (recipients' keys) until ``close``."""
        try:
            await self._idle.wait()
        finally:
            await self.stop()
        if self._failure is not None:
            raise self._failure

    async def stop(self) -> None:
        """Stop every lookup still going; let the workers go."""
        self._workers_wanted = 0  # a later wave of addresses is looked up here
        remotes, self._remotes = self._remotes, []
        await asyncio.gather(*(remote.close() for remote in remotes))
        self.worker_cpu += sum(remote.cpu_seconds for remote in remotes)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """``stop``, and hand the DNS channel back."""
        await self.stop()
        bulk, self._bulk = self._bulk, None
        if bulk is not None:
            if self._ctx.bulk_dns is bulk:
                self._ctx.bulk_dns = None
            await bulk.close()

    @property
    def bulk_done(self) -> bool:
        """Every address is past reverse DNS, here and in the workers: the cores have room."""
        return not (self._dns_queue or self._dns_workers or any(r.in_dns for r in self._remotes))

    def _settled(self) -> None:
        self._pending -= 1
        if not self._pending:
            self._idle.set()

    # -- the stages -------------------------------------------------------------------------

    async def _dns_worker(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._asked.wait(), _HOLD_DNS)
        try:
            while self._dns_queue and self._dns_workers <= self._width:
                ip_id = self._dns_queue.popleft()
                if len(self._unloaded) > len(self._dns_queue):  # ``ip_id`` among them
                    self._preload()
                await self._turns.take()
                report = await self._reverse_dns(ip_id)
                if self._on_dns is not None:
                    self._on_dns()
                self._by_name_early(ip_id, report)
                reports = self._registry.pop(ip_id, None)
                if reports is None:
                    self._rdns[ip_id] = report
                else:
                    self._ready_to_finish(ip_id, report, reports)
        finally:
            self._dns_workers -= 1

    def _preload(self) -> None:
        """Read the cached PTR answers of the next addresses in one query, not one each."""
        count = min(_PRELOAD, len(self._unloaded))
        keys = [str(self._target(self._unloaded.popleft()).ip) for _ in range(count)]
        preload = getattr(self._ctx.cache, "preload", None)
        if preload is not None:
            preload("ptr", keys)

    async def _reverse_dns(self, ip_id: int) -> SourceReport:
        skipped = self._silence.skip()
        if skipped is not None:
            return SourceReport("rdns", error=skipped)
        began = time.monotonic()
        try:
            report = await reverse_dns(self._target(ip_id), self._ctx)
        except NotifierError as exc:
            report = SourceReport("rdns", error=str(exc))
        self._silence.answered(bool(report.error), time.monotonic() - began)
        return report

    async def _registry_worker(self, block: tuple[int, int]) -> None:
        waiting = self._blocks[block]
        failures = 0
        try:
            while waiting:
                ip_id = waiting[0]
                target = self._target(ip_id)
                reports = self._answered.get(target.ip)
                if reports is None:
                    try:
                        async with self._fetching:
                            reports = await registry(target, self._ctx)
                    except NotifierError as exc:
                        reports = [SourceReport("rdap", error=str(exc))]
                    if not self._learn(target, reports) and all(r.error for r in reports):
                        failures += 1
                        if failures >= _BLOCK_FAILURES:
                            # the registry keeps failing for this block: its other addresses
                            # share the failure rather than each asking a registry in trouble
                            self._answered.add(f"{target.ip}/{_BLOCK[target.ip.version]}", reports)
                waiting.popleft()
                self.answer(ip_id, reports)
        finally:
            del self._blocks[block]

    def _by_name_early(self, ip_id: int, report: SourceReport) -> None:
        """Start the lookups by host name (security.txt, domain RDAP) of an address with an
        owner's name now, not once its network is known: the domain registries have their own
        pace, which their queue then keeps from the start (their servers' names asked ahead)."""
        names = tuple(report.hostnames)
        domain_registry_ahead(names, self._ctx)
        target = self._target(ip_id)
        if any(not is_generic_hosting_name(n, target.ip) for n in names):
            self._early[ip_id] = self._spawn(by_name(target, names, self._ctx))

    def answer(self, ip_id: int, reports: list[SourceReport]) -> None:
        """The registry's answer for an address: to its worker, or paired with its reverse DNS."""
        remote = self._remote_of.get(ip_id)
        if remote is not None:
            remote.answer(ip_id, reports)
            return
        report = self._rdns.pop(ip_id, None)
        if report is None:
            self._registry[ip_id] = reports
        else:
            self._ready_to_finish(ip_id, report, reports)

    def _learn(self, target: Target, reports: list[SourceReport]) -> bool:
        """Keep the registry's answer for the ranges it named that hold the address (not wider
        than /8, v6 /16: a hostile answer cannot speak for everyone); whether any was kept."""
        kept = False
        for cidr in (c for r in reports if r.network for c in r.network.cidrs):
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            if target.ip in net and net.prefixlen >= (8 if net.version == 4 else 16):
                self._answered.add(cidr, reports)
                kept = True
        return kept

    def _ready_to_finish(
        self, ip_id: int, report: SourceReport, reports: list[SourceReport]
    ) -> None:
        self._ready.append((ip_id, report, reports))
        if self._finishers < self._width:
            self._finishers += 1
            self._spawn(self._finisher())

    async def _finisher(self) -> None:
        try:
            while self._ready:
                ip_id, report, reports = self._ready.popleft()
                # reverse DNS first: it names the hosts the domain registry's queue waits for,
                # while what is finished here waits for the last lookup anyway
                await self._turns.take(later=True)
                target = self._target(ip_id)
                early = self._early.pop(ip_id, None)
                try:
                    resolution = await complete(target, report, reports, self._ctx, early)
                except NotifierError as exc:
                    self._fail(ip_id, str(exc))  # this address cannot be resolved; the rest goes on
                else:
                    await self._finish(ip_id, resolution)
                self._settled()
        finally:
            self._finishers -= 1

    # -- workers in other processes ---------------------------------------------------------

    def _start_workers(self) -> None:
        """A large batch: workers take addresses from the DNS queue as fast as they can; each
        process gets its share of the queries in flight (one resolver, still bounded)."""
        count = self._workers_wanted
        self._workers_wanted = 0
        share = max(1, self._width * 3 // (4 * count))
        for _ in range(count):
            self._remotes.append(
                Remote(self._ctx.settings, share, self._remote_result, self._remote_lost)
            )
        self._pump()

    def _pump(self) -> None:
        if not self._pumping and self._dns_queue:
            self._pumping = True
            self._spawn(self._pumping_to_workers())

    async def _pumping_to_workers(self) -> None:
        try:
            while self._dns_queue and self._remotes:
                remote = max(self._remotes, key=lambda r: r.room())
                room = remote.room()
                if room <= 0:
                    await remote.wait_room()
                    continue
                if remote not in self._sharing:
                    # its share of the queries in flight is taken from here once it is up,
                    # not while it starts (half a second when this process would have less)
                    self._sharing.add(remote)
                    self._width = max(1, self._width - remote.width)
                for _ in range(min(room, len(self._dns_queue))):
                    # from the far end: this process's DNS stage keeps what it preloaded
                    ip_id = self._dns_queue.pop()
                    if self._unloaded and self._unloaded[-1] == ip_id:
                        self._unloaded.pop()  # the worker reads the cache for it
                    self._remote_of[ip_id] = remote
                    remote.give(ip_id, self._target(ip_id), self._registry.pop(ip_id, None))
                await asyncio.sleep(0)
        finally:
            self._pumping = False

    async def _remote_result(self, result: Result) -> None:
        ip_id, resolution, reason = result
        if self._remote_of.pop(ip_id, None) is None:
            return  # already taken back from a worker thought lost
        if resolution is None:
            self._fail(ip_id, reason)
        else:
            await self._finish(ip_id, resolution)
        self._settled()

    def _remote_lost(self, remote: Remote) -> None:
        """A worker is gone (or never came): what it held is looked up here."""
        if remote in self._remotes:
            self._remotes.remove(remote)
            self.worker_cpu += remote.cpu_seconds
        if remote in self._sharing:
            self._sharing.discard(remote)
            self._width += remote.width
        for ip_id, reports in remote.held.items():
            if self._remote_of.get(ip_id) is remote:
                del self._remote_of[ip_id]
                self._dns_queue.appendleft(ip_id)
                if reports is not None:
                    self._registry[ip_id] = reports
        remote.held.clear()
        while self._dns_workers < self._width and self._dns_queue:
            self._dns_workers += 1
            self._spawn(self._dns_worker())
