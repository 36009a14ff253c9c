"""The deliver stage: one composed message handed to the mail server, with its evidence.

A small pool of SMTP connections (deliveries to different recipients go in parallel), a sending
rate per recipient domain, and the write-ahead rule of the audit log: the stored copy of the
message and its ``intent`` record are written at the last moment before the message may leave —
after the pool slot, the rate wait, the connection and the envelope (MAIL FROM, RCPT TO), right
before SMTP DATA — and the ``outcome`` after. So a process killed while it waits, connects or is
refused at RCPT leaves nothing in doubt; only a message that may really have gone out is.

The intent is written only if the gate agrees under the log's lock (``Gate.claim``): no other
run claimed these findings for this recipient meanwhile, and the daily cap still has room.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from .compose import ComposedMessage
from .config import Settings
from .deliver import Mailer
from .errors import ConfigError, DeliveryError, TransientDeliveryError
from .gate import Gate, Refusal
from .ledger import GroupCommit
from .ledger.chain import Fields, normalise_fields
from .ledger.records import intent_findings
from .models import Contact, Delivery, Finding
from .net import RateLimiter
from .sources import Tracer

__all__ = ["Dispatcher", "MAX_SMTP_CONNECTIONS", "Handover"]

# SMTP connections a run keeps open at most: deliveries to different recipients go in parallel
# (a batch has hundreds), few enough that no mail server takes the run for a flood
MAX_SMTP_CONNECTIONS = 8


@dataclass(frozen=True, slots=True)
class Handover:
    """One message to hand over, and what its intent record says about it."""

    composed: ComposedMessage
    contact: Contact  # who it goes to (the tester, for a rehearsal)
    findings: list[Finding]
    intended: str | None = None  # a rehearsal: who would have received it
    exclusive: bool = True  # claim the findings (not for --force or a rehearsal)
    protection: dict[str, Any] | None = None  # how the message was signed or encrypted
    # the findings' keys, worked out in the sending process (where they are known already) and
    # carried to the relay, which would spend half a millisecond a message hashing them again
    keys: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(f.key for f in self.findings))

    @property
    def domain(self) -> str:
        """The recipient's domain: what the sending rate is kept per, and by one process."""
        return self.contact.address.rpartition("@")[2].lower()


class _NotOurs(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal[1])
        self.refusal = refusal


class Dispatcher:
    """Hands messages to the mail server over a small pool, writing the evidence around each."""

    def __init__(
        self,
        settings: Settings,
        journal: GroupCommit,
        gate: Gate,
        stack: AsyncExitStack,
        trace: Tracer,
    ) -> None:
        self.settings = settings
        self._journal = journal
        self._gate = gate
        self._stack = stack
        self._trace = trace
        self._mailers: list[Mailer] = []  # idle connections, reused
        self._made: list[Mailer] = []  # every connection of the pool, closed together
        self._opening: list[asyncio.Future[None]] = []  # connections opened ahead (``warm``)
        self._width = max(1, min(settings.limits.concurrency, MAX_SMTP_CONNECTIONS))
        self._slots = asyncio.Semaphore(self._width)
        self._domains = RateLimiter(settings.limits.per_domain_per_minute / 60)

    def warm(self, messages: int) -> None:
        """Open connections of the pool now for the first of some ``messages`` messages (up
        to the pool's size): connecting and EHLO on a busy event loop cost a batch's first
        messages 20 ms. They wait in the pool; a message that takes one still opening waits
        for it."""
        try:
            mailers = [self._new() for _ in range(min(messages, self._width) - len(self._made))]
        except ConfigError:
            return  # the first message meets it, and says so
        self._mailers.extend(mailers)
        self._opening += [asyncio.ensure_future(m.connect()) for m in mailers]

    def _new(self) -> Mailer:
        mailer = Mailer(self.settings)
        if not self._made:
            self._stack.push_async_callback(self._close)
        self._made.append(mailer)
        return mailer

    async def _close(self) -> None:
        """Every connection closed at once (each says QUIT and waits for the answer)."""
        for opening in self._opening:
            opening.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        await asyncio.gather(*(mailer.aclose() for mailer in self._made))

    @asynccontextmanager
    async def _mailer(self) -> AsyncIterator[Mailer]:
        """An SMTP connection of the run's small pool, for one message."""
        async with self._slots:
            mailer = self._mailers.pop() if self._mailers else self._new()
            try:
                yield mailer
            finally:
                self._mailers.append(mailer)

    async def hand_over(
        self, item: Handover, on_intent: Callable[[], None] | None = None
    ) -> Delivery | Refusal:
        """Send one message; its Delivery, or the gate's refusal when the claim failed.
        ``on_intent`` is called once its intent is on disk (from then on it must be finished).

        A refusal means nothing was sent and no intent written: IN_DOUBT (another run claimed
        these findings meanwhile: decide again) or HELD_BACK (the daily cap filled up).
        """
        composed, contact, findings = item.composed, item.contact, item.findings
        attempt_id = uuid.uuid4().hex[:16]
        keys = list(item.keys)
        recipient = contact.address
        rehearsal = item.intended is not None
        refused: list[Refusal] = []
        written = False

        def guard() -> bool:
            refusal = self._gate.claim(
                keys, recipient, exclusive=item.exclusive, rehearsal=rehearsal
            )
            if refusal is not None:
                refused.append(refusal)
            return refusal is None

        async def before_data() -> None:
            nonlocal written
            if written:
                return  # a retry of the same message: its intent stands
            own, ready = _intent(item, attempt_id)
            # the message kept once its intent is on disk: every kept message has an intent
            record = await self._journal.append_if(guard, "intent", ready, composed.raw, **own)
            if record is None:
                raise _NotOurs(refused[-1])
            written = True
            if on_intent is not None:
                on_intent()

        async def on_attempt(number: int, error: DeliveryError | None, reply: str) -> None:
            if error is not None:
                await self._journal.append(
                    "attempt",
                    attempt_id=attempt_id,
                    recipient=recipient,
                    number=number,
                    smtp_code=error.smtp_code,
                    error=str(error),
                    transient=isinstance(error, TransientDeliveryError),
                )

        await self._domains.wait(item.domain)
        try:
            async with self._mailer() as mailer:
                delivery = await mailer.send(
                    composed, on_attempt=on_attempt, before_data=before_data
                )
        except _NotOurs as exc:
            return exc.refusal
        delivery = replace(delivery, role=contact.role)
        if not written:
            # refused at MAIL or RCPT (or never connected): the message did not leave, and the
            # case still has to show whom it was meant for, so intent and outcome follow now
            if on_intent is not None:
                on_intent()
            own, ready = _intent(item, attempt_id)
            await self._journal.append("intent", ready, composed.raw, **own)
        await self._journal.append(
            "outcome",
            attempt_id=attempt_id,
            ip=str(findings[0].ip),
            recipient=recipient,
            message_id=composed.message_id,
            digest=composed.digest,
            status=str(delivery.status),
            smtp_code=delivery.smtp_code,
            smtp_reply=delivery.smtp_reply,
            attempts=delivery.attempts,
            finding_keys=keys,
            test=rehearsal,
        )
        if written:
            self._gate.settled(keys, recipient)
        else:
            self._gate.refresh()
        self._trace(
            "delivery",
            {"to": recipient, "status": str(delivery.status), "code": delivery.smtp_code},
        )
        return delivery


def _intent(item: Handover, attempt_id: str) -> tuple[dict[str, object], Fields]:
    """The intent's own fields, and what it says of the findings (as the compose worker wrote
    it, or written now)."""
    parts = item.composed.record_parts
    ready = (
        Fields.from_parts(parts)
        if parts is not None
        else normalise_fields(intent_findings(item.findings))
    )
    own: dict[str, object] = {
        "attempt_id": attempt_id,
        "ip": str(item.findings[0].ip),
        "recipient": item.contact.address,
        "intended_recipient": item.intended,
        "role": str(item.contact.role),
        "message_id": item.composed.message_id,
        "digest": item.composed.digest,
        "case": item.composed.case_ref,
        "protection": item.protection,
        # which language the owner reads it in, and why; which exposure guides it carries
        "language": item.composed.language,
        "language_reason": item.composed.language_reason,
        "guides": list(item.composed.guides),
    }
    return own, ready
