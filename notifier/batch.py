"""Many findings at once: resolve each address once, send each recipient one message.

Findings are kept compactly (interned addresses and texts) so a million-line scanner output fits
in bounded memory; each distinct address is resolved once, with bounded concurrency, and the
registry answers are cached by network range (``notifier.cache``), so a network is looked up once
however many of its addresses appear. Every recipient then gets one message listing all of its
findings (split past ``batch.max_findings_per_message``), and findings whose every recipient
failed climb the fallback ladder together. Re-running on the same input after an interruption
sends only what was not delivered: idempotence comes from the audit log.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import ConfigError, NotifierError
from .models import Contact, DeliveryStatus, Finding, IPAddress, Network, Resolution
from .pipeline import Notifier, SendResult

__all__ = ["Batch", "BatchCounts", "FindingOutcome"]

# per-finding state, best wins: a finding reached by any recipient is reached
_NONE, _FAILED, _SUPPRESSED, _IN_DOUBT, _ALREADY, _DRY, _SENT = range(7)
_STATE_NAMES = {
    _NONE: "no-contact",
    _FAILED: "failed",
    _SUPPRESSED: "suppressed",
    _IN_DOUBT: "in-doubt",
    _ALREADY: "already-sent",
    _DRY: "dry-run",
    _SENT: "sent",
}
_FROM_STATUS = {
    DeliveryStatus.DELIVERED: _SENT,
    DeliveryStatus.DRY_RUN: _DRY,
    DeliveryStatus.ALREADY_SENT: _ALREADY,
    DeliveryStatus.IN_DOUBT: _IN_DOUBT,
    DeliveryStatus.SUPPRESSED: _SUPPRESSED,
    DeliveryStatus.FAILED: _FAILED,
}


@dataclass(slots=True)
class BatchCounts:
    """Running totals, for the progress bar and the closing summary."""

    read: int = 0
    problems: int = 0
    refused: int = 0
    duplicates: int = 0
    addresses: int = 0
    resolved: int = 0
    queued: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    recipients: int = 0


@dataclass(frozen=True, slots=True)
class FindingOutcome:
    """What happened to one finding (one JSON line with ``batch --json``)."""

    ip: str
    port: int | None
    finding: str
    status: str
    recipients: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "port": self.port,
            "finding": self.finding,
            "status": self.status,
            "recipients": list(self.recipients),
            "message_ids": list(self.message_ids),
            "reason": self.reason,
        }


@dataclass(slots=True)
class _Row:
    ip: int
    port: int
    text: int
    host: int
    seen: str


@dataclass(slots=True)
class _Plan:
    contact: Contact
    rows: list[int] = field(default_factory=list)


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
        self.options: dict[str, Any] = {
            "template": template,
            "dry_run": dry_run,
            "force": force,
            "test_recipient": test_recipient,
        }
        self.counts = BatchCounts()
        self._on_progress = on_progress or (lambda counts: None)
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._ips: list[IPAddress] = []
        self._ip_ids: dict[IPAddress, int] = {}
        self._strings: list[str] = [""]
        self._string_ids: dict[str, int] = {"": 0}
        self._rows: list[_Row] = []
        self._seen: set[tuple[int, int, int]] = set()
        self._resolutions: dict[int, Resolution | str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(notifier.settings.limits.concurrency)
        self.result = SendResult()

    def on_outcome(self, callback: Callable[[FindingOutcome], None]) -> None:
        """Also report each finding's outcome to ``callback``."""
        previous = self._on_outcome

        def both(outcome: FindingOutcome) -> None:
            previous(outcome)
            callback(outcome)

        self._on_outcome = both

    # -- input ------------------------------------------------------------------------------

    def _intern(self, text: str | None) -> int:
        if not text:
            return 0
        found = self._string_ids.get(text)
        if found is None:
            found = self._string_ids[text] = len(self._strings)
            self._strings.append(text)
        return found

    def problem(self, line: int, message: str) -> None:
        """A malformed input line: counted and reported, the rest goes on."""
        self.counts.problems += 1
        self._on_outcome(
            FindingOutcome("", None, "", "bad-input", reason=f"line {line}: {message}")
        )

    async def submit(self, finding: Finding) -> None:
        """Queue one finding; its address starts resolving at once (bounded concurrency)."""
        self.counts.read += 1
        try:
            address = self.notifier.target(str(finding.ip))
        except ConfigError as exc:
            self.counts.refused += 1
            self._on_outcome(
                FindingOutcome(
                    str(finding.ip), finding.port, finding.text, "refused", reason=str(exc)
                )
            )
            return
        ip_id = self._ip_ids.get(address)
        new_address = ip_id is None
        if ip_id is None:
            ip_id = self._ip_ids[address] = len(self._ips)
            self._ips.append(address)
        identity = (ip_id, -1 if finding.port is None else finding.port, self._intern(finding.text))
        if identity in self._seen:
            self.counts.duplicates += 1
            return
        self._seen.add(identity)
        seen = finding.observed_at.isoformat() if finding.observed_at else ""
        self._rows.append(
            _Row(ip_id, identity[1], identity[2], self._intern(finding.hostname), seen)
        )
        if new_address:
            self.counts.addresses += 1
            # backpressure: never more than a few rounds of lookups waiting in memory
            while len(self._tasks) >= 4 * self.notifier.settings.limits.concurrency:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self._resolve(ip_id, finding.hostname))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._on_progress(self.counts)

    async def _resolve(self, ip_id: int, hostname: str | None) -> None:
        async with self._slots:
            try:
                resolution = await self.notifier.resolve(
                    self._ips[ip_id], [hostname] if hostname else []
                )
            except NotifierError as exc:
                self._resolutions[ip_id] = str(exc)
            else:
                self._resolutions[ip_id] = resolution
                if not self.options["dry_run"]:
                    self.notifier.record_resolution(resolution)
        self.counts.resolved += 1
        self._on_progress(self.counts)

    # -- delivery ---------------------------------------------------------------------------

    def _finding(self, index: int) -> Finding:
        row = self._rows[index]
        return Finding(
            self._ips[row.ip],
            self._strings[row.text],
            port=None if row.port < 0 else row.port,
            hostname=self._strings[row.host] or None,
            observed_at=datetime.fromisoformat(row.seen) if row.seen else None,
        )

    async def flush(self) -> SendResult:
        """Wait for every lookup, deliver one message per recipient, climb the ladder."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        state = bytearray(len(self._rows))
        recipients_of: dict[int, list[str]] = defaultdict(list)
        message_ids: dict[int, list[str]] = defaultdict(list)
        plans: dict[str, _Plan] = {}
        for index, row in enumerate(self._rows):
            resolution = self._resolutions.get(row.ip)
            if isinstance(resolution, Resolution):
                for contact in resolution.recipients:
                    plans.setdefault(contact.address, _Plan(contact)).rows.append(index)
        self.counts.recipients = len(plans)
        await self._deliver_plans(plans, state, recipients_of, message_ids)

        # the ladder: findings nobody took climb to their next fallback, rung by rung
        rung = 0
        while True:
            plans = {}
            for index, row in enumerate(self._rows):
                resolution = self._resolutions.get(row.ip)
                if not isinstance(resolution, Resolution) or state[index] not in (_NONE, _FAILED):
                    continue
                if rung < len(resolution.fallbacks):
                    contact = resolution.fallbacks[rung]
                    plans.setdefault(contact.address, _Plan(contact)).rows.append(index)
            if not plans:
                break
            for plan in plans.values():
                if not self.options["dry_run"]:
                    self.notifier.audit.append(
                        "fallback",
                        to=plan.contact.address,
                        role=str(plan.contact.role),
                        findings=len(plan.rows),
                        reason="no contact found or every contact failed",
                    )
            await self._deliver_plans(plans, state, recipients_of, message_ids)
            rung += 1

        for index, row in enumerate(self._rows):
            resolution = self._resolutions.get(row.ip)
            reason = resolution if isinstance(resolution, str) else ""
            self._on_outcome(
                FindingOutcome(
                    str(self._ips[row.ip]),
                    None if row.port < 0 else row.port,
                    self._strings[row.text],
                    _STATE_NAMES[state[index]],
                    tuple(recipients_of.get(index, ())),
                    tuple(message_ids.get(index, ())),
                    reason,
                )
            )
        return self.result

    async def _deliver_plans(
        self,
        plans: dict[str, _Plan],
        state: bytearray,
        recipients_of: dict[int, list[str]],
        message_ids: dict[int, list[str]],
    ) -> None:
        limit = self.notifier.settings.batch.max_findings_per_message
        for address in sorted(plans):
            plan = plans[address]
            for start in range(0, len(plan.rows), limit):
                chunk = plan.rows[start : start + limit]
                self.counts.queued += 1
                self._on_progress(self.counts)
                findings = [self._finding(i) for i in chunk]
                networks = {
                    r.network
                    for i in chunk
                    if isinstance(r := self._resolutions.get(self._rows[i].ip), Resolution)
                }
                network: Network | None = networks.pop() if len(networks) == 1 else None
                checks = not any(self.options[k] for k in ("force", "dry_run", "test_recipient"))
                priors = [self.notifier.prior(f, address) if checks else None for f in findings]
                delivery = await self.notifier.deliver(
                    plan.contact, findings, network, self.result, **self.options
                )
                outcome = _FROM_STATUS[delivery.status]
                if delivery.status == DeliveryStatus.DELIVERED:
                    self.counts.sent += 1
                elif delivery.status == DeliveryStatus.FAILED:
                    self.counts.failed += 1
                else:
                    self.counts.skipped += 1
                for i, prior in zip(chunk, priors, strict=True):
                    # a finding the message left out keeps what an earlier run did with it
                    mine = {"delivered": _ALREADY, "in-doubt": _IN_DOUBT}.get(prior or "", outcome)
                    state[i] = max(state[i], mine)
                    recipients_of[i].append(address)
                    if delivery.message_id and prior is None:
                        message_ids[i].append(delivery.message_id)
                self._on_progress(self.counts)
