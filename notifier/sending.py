"""One message to one contact: the gate's say, compose (and sign or encrypt), hand over to the
SMTP pool, and record. ``Notifier.deliver`` is the front; the fallback ladder and the batch call
it for each message."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from .addresses import clean_address
from .compose.pool import Composer, Job
from .config import Settings
from .dispatch import Dispatcher, Handover
from .errors import ConfigError
from .gate import IN_FLIGHT_REASON, Gate, Refusal
from .ladder import DEFAULT_OPTIONS, SendOptions
from .ledger import GroupCommit, Ledger, format_head
from .models import Contact, Delivery, DeliveryStatus, Finding, Network, case_reference
from .outcome import SendResult
from .relay import DEPTH, Relay, pays
from .sources import LookupContext
from .trust import EncryptionRequired, MessageGuard

if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping, Sequence

__all__ = ["Sender"]


class _Run(Protocol):
    """What a message needs of the run it belongs to (``Notifier``)."""

    settings: Settings

    @property
    def ctx(self) -> LookupContext: ...

    @property
    def audit(self) -> Ledger: ...

    @property
    def gate(self) -> Gate: ...

    @property
    def journal(self) -> GroupCommit: ...

    def clock(self) -> datetime: ...

    @property
    def tracing(self) -> bool: ...

    def trace(self, event: str, fields: Mapping[str, object]) -> None: ...

    def priors(self, findings: Sequence[Finding], recipient: str) -> list[str | None]: ...

    def wrote(self) -> None: ...


class Sender:
    """Delivers single messages for one run."""

    def __init__(
        self, run: _Run, composer: Composer, guard: MessageGuard, stack: AsyncExitStack
    ) -> None:
        self._n = run
        self._composer = composer
        self._guard: MessageGuard | None = guard
        self._stack = stack
        self._dispatcher: Dispatcher | None = None
        self._relay: Relay | None = None
        self._relayed_before = 0  # messages the relays of earlier batches took

    def relay(self, messages: int) -> None:
        """This run will send about ``messages`` messages: open this process's connections to
        the mail server for the first of them, and start the relay if it pays."""
        self._dispatch().warm(messages)
        # a run's next batch, after the relay of the one before was told to end, gets its own
        if (self._relay is None or self._relay.finished) and pays(self._n.settings, messages):
            if self._relay is not None:
                self._relayed_before += self._relay.handed
            self._relay = Relay(self._n.settings, self._n.trace if self._n.tracing else None)
            self._stack.push_async_callback(self._relay.close)
            self._relay.start()

    def relayed_all(self) -> None:
        """The run hands over no more messages: the relay ends while it writes its reports."""
        if self._relay is not None:
            self._relay.finish()

    @property
    def relayed(self) -> int:
        """Messages the relays took (``relay.py``)."""
        return self._relayed_before + (self._relay.handed if self._relay is not None else 0)

    @property
    def relay_depth(self) -> int:
        """Messages the relay may hold besides this process's own: 0 without one."""
        return DEPTH if self._relay is not None and not self._relay.finished else 0

    def _refuse(
        self, findings: list[Finding], address: str, status: DeliveryStatus, reason: str
    ) -> None:
        self._n.audit.append(
            "refusal",
            ip=str(findings[0].ip),
            recipient=address,
            status=str(status),
            reason=reason,
            finding_keys=[f.key for f in findings],
        )
        self._n.trace("refusal", {"to": address, "reason": reason})

    async def deliver(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        options: SendOptions = DEFAULT_OPTIONS,
        priors: Sequence[str | None] | None = None,
    ) -> Delivery:
        """One message to one contact about ``findings``, written ahead to the audit log.

        Findings already delivered to this contact are left out (unless ``force``); findings
        an interrupted run may have sent are left out and reported in doubt. Suppressed
        addresses (SUPPRESSED) and the daily and per-run caps (HELD_BACK) are refused and logged.
        ``priors``: what the log said of each finding for this contact, when the caller has
        just asked (``Notifier.prior``); asked here otherwise.
        """
        dry_run, test_recipient = options.dry_run, options.test_recipient
        address = contact.address
        asked = findings
        if test_recipient:
            tester = clean_address(test_recipient)
            if tester is None:
                raise ConfigError(f"--test-recipient is not an e-mail address: {test_recipient!r}")
            contact = replace(contact, address=tester)

        def skipped(status: DeliveryStatus, reason: str) -> Delivery:
            delivery = Delivery(address, "", status, role=contact.role, reason=reason)
            result.deliveries.append(delivery)
            return delivery

        # a rehearsal (--test-recipient) always sends: it shows what owners would get
        if options.checks_history:
            doubt = "in doubt: an earlier run may have sent this (use --force to resend)"
            if priors is None:
                priors = self._n.priors(findings, contact.address)
            new = [f for f, p in zip(findings, priors, strict=True) if p is None]
            doubtful = [f for f, p in zip(findings, priors, strict=True) if p == "in-doubt"]
            busy = [f for f, p in zip(findings, priors, strict=True) if p == "in-flight"]
            if not new and busy and not doubtful:
                return skipped(DeliveryStatus.IN_FLIGHT, IN_FLIGHT_REASON)
            if doubtful:
                self._refuse(doubtful, contact.address, DeliveryStatus.IN_DOUBT, doubt)
            if not new:
                if doubtful:
                    return skipped(DeliveryStatus.IN_DOUBT, doubt)
                return skipped(DeliveryStatus.ALREADY_SENT, "delivered in an earlier run")
            findings = new
        gate = None if dry_run else self._n.gate
        refusal = gate.refusal(contact.address, rehearsal=bool(test_recipient)) if gate else None
        if refusal is not None:
            self._refuse(findings, contact.address, *refusal)
            return skipped(*refusal)
        if gate is not None:
            gate.in_flight += 1  # counted against the run cap from here on: no overshoot
        try:
            sent = await self._compose_and_hand_over(
                contact, findings, network, result, options, address
            )
        finally:
            if gate is not None:
                gate.in_flight -= 1
        if isinstance(sent, Delivery):
            if gate is not None and (sent.status != DeliveryStatus.FAILED or sent.attempts):
                gate.sent += 1
            result.deliveries.append(sent)
            return sent
        status, reason = sent
        if status == DeliveryStatus.HELD_BACK:
            self._refuse(findings, contact.address, status, reason)
        if status not in (DeliveryStatus.IN_DOUBT, DeliveryStatus.IN_FLIGHT):
            return skipped(status, reason)
        # another run on this store claimed some of these findings for this contact since we
        # looked: decide again with what it wrote, and send what is left, if anything
        return await self.deliver(contact, asked, network, result, options)

    async def _compose_and_hand_over(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        options: SendOptions,
        intended: str,
    ) -> Delivery | Refusal:
        """Compose (and sign or encrypt) the message, then hand it over (not in a dry run)."""
        if self._guard is not None:
            self._guard.prefetch(contact, self._n.ctx)  # the key's lookup runs while composing
        job = self._job(contact, findings, network, options, head=False)
        composed = await self._composer.compose(job, self._with_head)
        protection = None
        if self._guard is not None:
            try:
                composed, protection = await self._guard.protect(composed, contact, self._n.ctx)
            except EncryptionRequired as exc:
                self._refuse(findings, contact.address, DeliveryStatus.FAILED, str(exc))
                return DeliveryStatus.FAILED, str(exc)
        result.messages.append(composed)
        if options.dry_run:
            return Delivery(
                contact.address,
                composed.message_id,
                DeliveryStatus.DRY_RUN,
                digest=composed.digest,
                role=contact.role,
            )
        handover = Handover(
            composed,
            contact,
            findings,
            intended=intended if options.test_recipient else None,
            exclusive=options.checks_history,
            protection=protection.record() if protection else None,
        )
        self._n.wrote()
        relay = self._relay
        if relay is not None and relay.takes(handover.domain):
            sent = await relay.hand_over(handover)
            if not isinstance(sent, Delivery):
                self._n.gate.refresh()  # what the relay wrote: the next decision reads it
        else:
            sent = await self._dispatch().hand_over(handover)
        if not isinstance(sent, Delivery):
            result.messages.remove(composed)
        return sent

    def _job(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        options: SendOptions,
        *,
        head: bool = True,
    ) -> Job:
        """The message's job; with ``head`` False, the log's head is left for ``_with_head``
        (a message composed ahead carries its own)."""
        return Job(
            findings,
            contact,
            template=options.template,
            case_ref=options.case_ref or case_reference(findings),
            now=self._n.clock(),
            log_head=None if options.dry_run else self._head() if head else "",
            in_reply_to=options.in_reply_to,
            references=options.references,
            network=network,
        )

    def _head(self) -> str:
        return format_head(*self._n.audit.head())

    def _with_head(self, job: Job) -> Job:
        return replace(job, log_head=self._head()) if job.log_head == "" else job

    def ahead(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        options: SendOptions = DEFAULT_OPTIONS,
    ) -> Hashable | None:
        """Compose now, in a worker, the message ``deliver`` would send with these arguments
        (``Composer.ahead``): a key to drop it by, or None when nothing was started. Not for a
        rehearsal, nor when an earlier run dealt with any of the findings (the message then
        leaves them out: it is composed when sent)."""
        if options.test_recipient:
            return None
        if options.checks_history and any(
            p is not None for p in self._n.priors(findings, contact.address)
        ):
            return None
        return self._composer.ahead(self._job(contact, findings, network, options))

    def _dispatch(self) -> Dispatcher:
        if self._dispatcher is None:
            run = self._n
            self._dispatcher = Dispatcher(
                run.settings, run.journal, run.gate, self._stack, run.trace
            )
        return self._dispatcher
