"""The batch: findings in, one message per recipient out, the fallback ladder climbed together."""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable

from ..cache import LookupCache
from ..compose import check_template
from ..errors import ConfigError
from ..ladder import SendOptions
from ..models import (
    DeliveryStatus,
    Finding,
    HostHint,
    IPAddress,
    Network,
    Resolution,
    Target,
)
from ..pipeline import MAX_SMTP_CONNECTIONS, Notifier, SendResult
from ..sources.hints import MAX_HINTS
from .ahead import Ahead
from .columns import Columns, Interned
from .heap import fewer_collections, usual_collections
from .records import ResolutionLog
from .share import Blocks, SharedUnits, each, unit_name
from .stages import Lookups
from .states import (
    ALREADY,
    CLIMBS,
    FROM_STATUS,
    IN_DOUBT,
    STATE_NAMES,
    BatchCounts,
    FindingOutcome,
    Plan,
    Reach,
    Route,
)

__all__ = ["Batch", "BatchCounts", "FindingOutcome"]

_PENDING = -1  # an address's route before its resolution is known
_UNRESOLVED = -2  # its resolution failed (the reason is kept aside)
_WRITE_BEHIND = 256  # lookup cache stores written in one transaction
_YIELD_EVERY = 16  # submits between two chances for the lookups to run
_MAX_DELIVERY_WORKERS = 2 * MAX_SMTP_CONNECTIONS  # compose the next messages while others send


class Batch:
    """Collect findings with ``submit``, then ``flush`` to deliver them; the CLI's ``batch``.

    ``on_progress`` is called with the running counts; ``on_outcome`` with each finding's
    outcome once it is known.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        template: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        test_recipient: str | None = None,
        on_progress: Callable[[BatchCounts], None] | None = None,
        on_outcome: Callable[[FindingOutcome], None] | None = None,
    ) -> None:
        self.notifier = notifier
        check_template(notifier.settings, template)
        self.options = SendOptions(
            template=template, dry_run=dry_run, force=force, test_recipient=test_recipient
        )
        self.counts = BatchCounts()
        self._on_progress = on_progress or (lambda counts: None)
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._rows = Columns()
        self._ip_route = array("i")  # per address: its route, or pending / unresolved
        # host name hints scanners gave per address (most addresses have none: kept sparse)
        self._hints: dict[int, list[HostHint]] = {}
        self._refused: dict[IPAddress, str] = {}
        self._errors: dict[int, str] = {}
        # addresses whose owner published web forms or phone lines (few: kept sparse)
        self._channels: dict[int, Resolution] = {}
        self._routes = Interned(None)
        self._lookups = Lookups(notifier.ctx, self._target, self._resolved, self._unresolved)
        self._records = ResolutionLog(notifier, lambda: self._lookups.bulk_done)
        self.result = SendResult()
        # other processes on this input share its lookups and messages through the cache
        cache = notifier.ctx.cache
        share = SharedUnits(cache) if isinstance(cache, LookupCache) else None
        if isinstance(cache, LookupCache):
            cache.write_behind = _WRITE_BEHIND  # an answer per address: written in bulk
        self._blocks = Blocks(share) if share is not None else None
        self._real = not (dry_run or test_recipient)  # messages to owners, not a rehearsal
        self._units = share if self._real else None
        # recipients' keys looked up as they are found (a rehearsal encrypts to the tester)
        self._keys_ahead = not test_recipient
        self._recipients: set[str] = set()  # found so far (each gets at least one message)
        self._collecting_less = False
        self._ahead = Ahead(
            notifier,
            self._rows,
            self._address_route,
            self.options,
            lambda: self._lookups.bulk_done,
        )

    @property
    def lookup_workers_cpu(self) -> float:
        """CPU seconds the lookup worker processes used (known once they are done)."""
        return self._lookups.worker_cpu

    def on_outcome(self, callback: Callable[[FindingOutcome], None]) -> None:
        """Also report each finding's outcome to ``callback``."""
        previous = self._on_outcome

        def both(outcome: FindingOutcome) -> None:
            previous(outcome)
            callback(outcome)

        self._on_outcome = both

    # -- input ------------------------------------------------------------------------------

    def problem(self, line: int, message: str) -> None:
        """A malformed input line: counted and reported, the rest goes on."""
        self.counts.problems += 1
        self._on_outcome(
            FindingOutcome("", None, "", "bad-input", reason=f"line {line}: {message}")
        )

    async def submit(self, finding: Finding) -> None:
        """Queue one finding; its address starts resolving at once (bounded concurrency)."""
        self.counts.read += 1
        if not self._collecting_less:
            self._collecting_less = True
            fewer_collections()
        if self.counts.read % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a long input read in one go must not starve the lookups
        rows = self._rows
        ip_id = rows.ip_ids.get(finding.ip)
        if ip_id is None:
            refusal = self._refused.get(finding.ip)
            if refusal is None:
                try:
                    address = self.notifier.target(str(finding.ip))
                except ConfigError as exc:
                    refusal = self._refused[finding.ip] = str(exc)
                else:
                    ip_id = rows.ip_ids.get(address)
            if refusal is not None:
                self.counts.refused += 1
                self._on_outcome(
                    FindingOutcome(
                        str(finding.ip), finding.port, finding.text, "refused", reason=refusal
                    )
                )
                return
            if ip_id is None:
                ip_id = rows.address(address, finding.hostname)
                rows.ip_ids[finding.ip] = ip_id
                self._ip_route.append(_PENDING)
                self.counts.addresses += 1
                self._look_up(ip_id, address)
        if not rows.add(ip_id, finding):
            self.counts.duplicates += 1
            return
        if finding.hints:
            kept = self._hints.setdefault(ip_id, [])
            # resolve checks at most MAX_HINTS names; a few more leave room for refused ones
            kept.extend(finding.hints[: max(0, 2 * MAX_HINTS - len(kept))])
        self._on_progress(self.counts)

    # -- lookups ----------------------------------------------------------------------------

    def _look_up(self, ip_id: int, address: IPAddress) -> None:
        """Queue the address's lookups, unless another process on this input took its block."""
        if self._blocks is None or self._blocks.mine(address, ip_id):
            self._lookups.add(ip_id)

    def _target(self, ip_id: int) -> Target:
        host = self._rows.hostname(ip_id)
        hints = tuple(self._hints.get(ip_id, ()))
        return Target(self._rows.ips[ip_id], (host,) if host else (), hints)

    async def _resolved(self, ip_id: int, resolution: Resolution) -> None:
        if not self.options.dry_run:
            self._records.add(resolution)
        if resolution.channels and not self.options.dry_run:
            self._channels[ip_id] = resolution
        route = Route(resolution.recipients, resolution.fallbacks, resolution.network)
        routes = len(self._routes.values)
        self._ip_route[ip_id] = self._routes.id(route)
        self._ahead.resolved(ip_id, route)
        if len(self._routes.values) > routes:  # maybe new recipients: ready for their messages
            new = [c for c in route.recipients if c.address not in self._recipients]
            if new:
                self._recipients.update(c.address for c in new)
                self.notifier.expect_messages(len(self._recipients), relay=self._real)
                if self._keys_ahead:
                    self._keys_ahead = self.notifier.prefetch_keys(new)
        self.counts.resolved += 1
        self._on_progress(self.counts)

    def _unresolved(self, ip_id: int, reason: str) -> None:
        self._errors[ip_id] = reason
        self._ip_route[ip_id] = _UNRESOLVED
        self.counts.resolved += 1
        self._on_progress(self.counts)

    # -- delivery ---------------------------------------------------------------------------

    def _route(self, row: int) -> Route | None:
        return self._address_route(self._rows.row_ip[row])

    def _address_route(self, ip_id: int) -> Route | None:
        route_id = self._ip_route[ip_id]
        return self._routes.values[route_id] if route_id > 0 else None

    async def flush(self) -> SendResult:
        """Wait for every lookup, deliver one message per recipient, climb the ladder.

        A batch is flushed once: what is submitted afterwards belongs in a new ``Batch``.
        """
        try:
            return await self._flush()
        finally:
            await self._lookups.close()
            if self._collecting_less:
                self._collecting_less = False
                usual_collections()

    async def _flush(self) -> SendResult:
        self._rows.sealed()
        self._ahead.start()
        try:
            await self._lookups.wait()
            if self._blocks is not None:
                # the others' addresses, from the cache their takers filled, once they let go
                for ip_id in await self._blocks.theirs():
                    self._lookups.add(ip_id)
                await self._lookups.wait()
        finally:
            await self._ahead.stop()
        if isinstance(self.notifier.ctx.cache, LookupCache):
            self.notifier.ctx.cache.flush()  # what was learnt is kept even if sending fails
        await self._records.written()
        rows = len(self._rows)
        state = bytearray(rows)
        plans: dict[str, Plan] = {}
        for index in range(rows):
            route = self._route(index)
            if route is not None:
                for contact in route.recipients:
                    plans.setdefault(contact.address, Plan(contact)).rows.append(index)
        self.counts.recipients = len(plans)
        self._ahead.give(plans)
        rounds = [plans]
        if self._keys_ahead:  # in the order of sending, before those waiting from the lookups
            self.notifier.prefetch_keys([plans[a].contact for a in sorted(plans)], first=True)
        try:
            await self._deliver_round(plans, state, 0)
        finally:
            self.notifier.stop_prefetch()
            self.notifier.drop_ahead()  # what the round did not use (none, unless it failed)

        # the ladder: findings nobody took climb to their next fallback, rung by rung
        rung = 0
        while True:
            plans = {}
            for index in range(rows):
                if state[index] not in CLIMBS:
                    continue
                route = self._route(index)
                if route is not None and rung < len(route.fallbacks):
                    contact = route.fallbacks[rung]
                    plans.setdefault(contact.address, Plan(contact)).rows.append(index)
            if not plans:
                break
            rung += 1
            rounds.append(plans)
            await self._deliver_round(plans, state, rung)

        self.notifier.sending.relayed_all()
        await self._prepare_manual(rows)
        shown: dict[int, str] = {}  # each address written once, not once per finding
        reach = Reach(rounds, self.notifier.settings.batch.max_findings_per_message)
        for index in range(rows):
            self._on_outcome(self._outcome(index, state[index], reach, shown))
        return self.result

    async def _prepare_manual(self, rows: int) -> None:
        """A ready-to-submit report for each web form or phone line an owner published."""
        if not self._channels:
            return
        by_ip: dict[int, list[Finding]] = {ip_id: [] for ip_id in self._channels}
        for index in range(rows):
            found = by_ip.get(self._rows.row_ip[index])
            if found is not None:
                found.append(self._rows.finding(index))
        for ip_id, resolution in self._channels.items():
            self.result.manual += await self.notifier.prepare_manual(resolution, by_ip[ip_id])

    def _outcome(
        self, index: int, state: int, reach: Reach, shown: dict[int, str]
    ) -> FindingOutcome:
        rows = self._rows
        port = rows.row_port[index]
        ip_id = rows.row_ip[index]
        route_id = self._ip_route[ip_id]
        recipients, message_ids = reach(index, route_id, self._address_route(ip_id), state)
        ip = shown.get(ip_id)
        if ip is None:
            ip = shown[ip_id] = str(rows.ips[ip_id])
        return FindingOutcome(
            ip,
            None if port < 0 else port,
            rows.strings.values[rows.row_text[index]],
            STATE_NAMES[state],
            recipients,
            message_ids,
            self._errors.get(ip_id, ""),
        )

    async def _deliver_round(self, plans: dict[str, Plan], state: bytearray, rung: int) -> None:
        """Every plan of one round (``rung`` 0: the chosen recipients, then each rung of the
        ladder); different recipients in parallel, one's messages in turn."""

        async def deliver(address: str, first: bool = True) -> None:
            plan = plans[address]
            if rung and first and not self.options.dry_run:
                await self.notifier.log(
                    "fallback",
                    to=plan.contact.address,
                    role=str(plan.contact.role),
                    findings=len(plan.rows),
                    reason="no contact found or every contact failed",
                )
            if not first:  # another process held it: see what it wrote
                self.notifier.gate.refresh()
            try:
                await self._deliver_plan(plan, state)
            finally:
                plan.findings = None

        # with a relay, as many more as it holds messages
        most = _MAX_DELIVERY_WORKERS + self.notifier.sending.relay_depth
        width = max(1, min(self.notifier.settings.limits.concurrency, most))
        if self._units is None:
            await each(sorted(plans), deliver, width)
            return
        finding = self._rows.finding

        def name(address: str) -> str:
            # named as each is taken: all of them at once held the first message back (30,000
            # findings' keys: a quarter of a second)
            return unit_name(rung, address, (f.key for f in plans[address].built(finding)))

        await self._units.round(sorted(plans), name, deliver, width=width)

    async def _deliver_plan(self, plan: Plan, state: bytearray) -> None:
        limit = self.notifier.settings.batch.max_findings_per_message
        address = plan.contact.address
        checks = self.options.checks_history
        plan.priors = bytearray(len(plan.rows))
        for start in range(0, len(plan.rows), limit):
            chunk = plan.rows[start : start + limit]
            self.counts.queued += 1
            self._on_progress(self.counts)
            findings = plan.built(self._rows.finding)[start : start + limit]
            routes = {self._ip_route[self._rows.row_ip[i]] for i in chunk}  # not hashed: numbers
            networks = {self._routes.values[r].network for r in routes if r > 0}
            network: Network | None = networks.pop() if len(networks) == 1 else None
            priors = self.notifier.priors(findings, address) if checks else [None] * len(chunk)
            # a scratch result: the batch keeps the deliveries, not every message's bytes
            scratch = SendResult()
            delivery = await self.notifier.deliver(
                plan.contact, findings, network, scratch, self.options, priors if checks else None
            )
            self.result.deliveries.extend(scratch.deliveries)
            outcome = FROM_STATUS[delivery.status]
            if delivery.status == DeliveryStatus.DELIVERED:
                self.counts.sent += 1
            elif delivery.status == DeliveryStatus.FAILED:
                self.counts.failed += 1
            elif delivery.status == DeliveryStatus.HELD_BACK:
                self.counts.held_back += 1
                reasons = self.counts.held_reasons
                reasons[delivery.reason] = reasons.get(delivery.reason, 0) + 1
            else:
                self.counts.skipped += 1
            plan.message_ids.append(delivery.message_id)
            for offset, (i, prior) in enumerate(zip(chunk, priors, strict=True)):
                # a finding the message left out keeps what an earlier run did with it
                mine = {"delivered": ALREADY, "in-doubt": IN_DOUBT}.get(prior or "", outcome)
                state[i] = max(state[i], mine)
                plan.priors[start + offset] = prior is not None
            self._on_progress(self.counts)
