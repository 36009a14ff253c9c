"""The Notifier: target → contacts → messages → deliveries → audit log.

Everything the CLI does is a call into this class, so pipelines embedding notifier get exactly
the CLI's behaviour. It owns the network clients' lifetimes and is the only writer of the audit
log: an intent record is on disk before each SMTP transaction, its outcome after.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from . import __version__
from .addresses import clean_address
from .audit import AuditLog, format_head, head, load_signing_key
from .compose import ComposedMessage, compose
from .config import Settings
from .contacts import ContactRegistry
from .deliver import Mailer
from .errors import ConfigError, DeliveryError, TransientDeliveryError
from .models import (
    Contact,
    Delivery,
    DeliveryStatus,
    Finding,
    IPAddress,
    Network,
    Resolution,
    Role,
    Target,
    case_reference,
)
from .net import RateLimiter, make_http_client, make_resolver
from .resolve import resolve
from .sources import LookupContext, Tracer, utcnow
from .targets import parse_target

__all__ = ["Notifier", "SendResult", "contact_record"]


def contact_record(contact: Contact) -> dict[str, Any]:
    """A contact as the audit log and ``resolve --json`` show it."""
    return {
        "address": contact.address,
        "sources": list(contact.sources),
        "role": str(contact.role),
        "confidence": round(contact.confidence, 2),
        "provenance": list(contact.provenance),
        "name": contact.name,
    }


@dataclass(slots=True)
class SendResult:
    """What happened to one target's findings."""

    resolution: Resolution
    deliveries: list[Delivery] = field(default_factory=list)
    messages: list[ComposedMessage] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A delivery failed and nothing later on the ladder reached anyone in its place."""
        statuses = [d.status for d in self.deliveries]
        if DeliveryStatus.FAILED not in statuses:
            return False
        last_failure = max(i for i, s in enumerate(statuses) if s == DeliveryStatus.FAILED)
        fallback_reached = any(
            d.status == DeliveryStatus.DELIVERED and d.role in (Role.REGISTRAR, Role.NATIONAL_CERT)
            for d in self.deliveries[last_failure + 1 :]
        )
        return not fallback_reached

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Notifier:
    """Resolve owners, compose disclosures, deliver them, and keep the evidence.

    Use as an async context manager::

        async with Notifier(settings) as notifier:
            result = await notifier.send([Finding(ip, "Elasticsearch on 9200 without auth")])
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        trace: Tracer | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._clock = clock
        self._trace: Tracer = trace or (lambda event, fields: None)
        self._stack = AsyncExitStack()
        self._ctx: LookupContext | None = None
        self._audit: AuditLog | None = None
        self._mailer: Mailer | None = None
        self._delivered: set[tuple[str, str]] = set()
        self._in_doubt: set[tuple[str, str]] = set()
        self.sent_this_run = 0

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Notifier:
        settings = self.settings
        resolver = make_resolver(settings.dns)
        agent = settings.http.user_agent or (
            f"notifier/{__version__} (responsible disclosure; contact {settings.sender.address})"
        )
        http = make_http_client(settings.http, resolver, user_agent=agent)
        self._stack.push_async_callback(http.aclose)
        self._ctx = LookupContext(
            settings=settings,
            resolver=resolver,
            http=http,
            limiter=RateLimiter(settings.rdap.rate_per_second),
            clock=self._clock,
            trace=self._trace,
            contacts=ContactRegistry.load(settings.contacts.file or None),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def ctx(self) -> LookupContext:
        if self._ctx is None:
            raise RuntimeError("use Notifier as 'async with Notifier(...) as n'")
        return self._ctx

    @property
    def audit(self) -> AuditLog:
        """The audit log, opened on first use (resolving alone writes nothing)."""
        if self._audit is None:
            signer = (
                load_signing_key(self.settings.audit.signing_key)
                if self.settings.audit.signing_key
                else None
            )
            self._audit = AuditLog(
                self.settings.state_dir / "audit.jsonl", clock=self._clock, signer=signer
            )
            self._delivered = self._audit.delivered_keys()
            self._in_doubt = {
                (key, rec["recipient"])
                for rec in self._audit.in_doubt()
                for key in rec.get("finding_keys", [])
            }
        return self._audit

    async def _get_mailer(self) -> Mailer:
        if self._mailer is None:
            self._mailer = await self._stack.enter_async_context(Mailer(self.settings))
        return self._mailer

    # -- resolving --------------------------------------------------------------------------

    def target(self, text: str) -> IPAddress:
        """Parse and check a target address (``TargetRefused`` says why not)."""
        return parse_target(text, self.settings)

    async def resolve(self, ip: IPAddress | str, hostnames: Sequence[str] = ()) -> Resolution:
        """The contacts ``send`` would use for ``ip``, with provenance. Sends nothing."""
        address = self.target(ip) if isinstance(ip, str) else self.target(str(ip))
        return await resolve(Target(address, tuple(hostnames)), self.ctx)

    def record_resolution(self, resolution: Resolution) -> None:
        self.audit.append(
            "resolution",
            ip=str(resolution.target.ip),
            hostnames=list(resolution.hostnames),
            network=asdict(resolution.network) if resolution.network else None,
            recipients=[contact_record(c) for c in resolution.recipients],
            fallbacks=[contact_record(c) for c in resolution.fallbacks],
            errors=[{"source": s, "error": e} for s, e in resolution.errors],
            evidence=[
                {"source": e.source, "locator": e.locator, "sha256": e.sha256}
                for e in resolution.evidence
            ],
        )

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        findings: Sequence[Finding],
        *,
        template: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        test_recipient: str | None = None,
    ) -> SendResult:
        """Resolve the owner of the findings' address and deliver one message per contact.

        All findings must be about one address. The national CERT (and registrar) are tried only
        when there is no other contact or every other contact failed permanently.
        """
        if not findings:
            raise ConfigError("nothing to send: no findings")
        ips = {f.ip for f in findings}
        if len(ips) != 1:
            raise ConfigError("send takes findings about one address; use batch for many")
        hostnames = [f.hostname for f in findings if f.hostname]
        resolution = await self.resolve(str(findings[0].ip), hostnames)
        if not dry_run:
            self.record_resolution(resolution)
        result = SendResult(resolution)
        await self.deliver_ladder(
            resolution.recipients,
            resolution.fallbacks,
            list(findings),
            resolution.network,
            result,
            template=template,
            dry_run=dry_run,
            force=force,
            test_recipient=test_recipient,
        )
        return result

    async def deliver_ladder(
        self,
        recipients: Sequence[Contact],
        fallbacks: Sequence[Contact],
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        **options: Any,
    ) -> None:
        """Deliver to every recipient; climb the fallback ladder while nobody was reached."""
        reached = False
        for contact in recipients:
            delivery = await self.deliver(contact, findings, network, result, **options)
            reached = reached or delivery.status != DeliveryStatus.FAILED
        if reached and recipients:
            return
        for contact in fallbacks:
            if not options.get("dry_run"):
                self.audit.append(
                    "fallback",
                    ip=str(findings[0].ip),
                    to=contact.address,
                    role=str(contact.role),
                    reason="no contact found" if not recipients else "every contact failed",
                )
            delivery = await self.deliver(contact, findings, network, result, **options)
            if delivery.status != DeliveryStatus.FAILED:
                return

    async def deliver(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        *,
        template: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        test_recipient: str | None = None,
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
    ) -> Delivery:
        """One message to one contact about ``findings``, written ahead to the audit log."""
        address = contact.address
        if test_recipient:
            tester = clean_address(test_recipient)
            if tester is None:
                raise ConfigError(f"--test-recipient is not an e-mail address: {test_recipient!r}")
            contact = replace(contact, address=tester)
        now = self._clock()
        case_ref = case_reference(findings)
        # a rehearsal (--test-recipient) always sends: it shows what owners would get
        if not dry_run and not force and not test_recipient:
            audit = self.audit
            new = [f for f in findings if (f.key, contact.address) not in self._delivered]
            if not new:
                delivery = Delivery(address, "", DeliveryStatus.ALREADY_SENT, role=contact.role)
                result.deliveries.append(delivery)
                return delivery
            doubtful = [f for f in new if (f.key, contact.address) in self._in_doubt]
            if doubtful:
                audit.append(
                    "refusal",
                    ip=str(findings[0].ip),
                    recipient=contact.address,
                    reason="in doubt: an earlier run may have sent this (use --force to resend)",
                )
                delivery = Delivery(address, "", DeliveryStatus.IN_DOUBT, role=contact.role)
                result.deliveries.append(delivery)
                return delivery
            findings = new
        log_head = None if dry_run else format_head(*head(self.audit.path))
        composed = compose(
            findings,
            contact,
            settings=self.settings,
            template=template,
            case_ref=case_ref,
            now=now,
            log_head=log_head,
            in_reply_to=in_reply_to,
            references=references,
            network=network,
        )
        result.messages.append(composed)
        if dry_run:
            delivery = Delivery(
                contact.address,
                composed.message_id,
                DeliveryStatus.DRY_RUN,
                digest=composed.digest,
                role=contact.role,
            )
            result.deliveries.append(delivery)
            return delivery
        return await self._transmit(composed, contact, findings, result, test_recipient, address)

    async def _transmit(
        self,
        composed: ComposedMessage,
        contact: Contact,
        findings: list[Finding],
        result: SendResult,
        test_recipient: str | None,
        intended: str,
    ) -> Delivery:
        audit = self.audit
        attempt_id = uuid.uuid4().hex[:16]
        audit.store_message(composed.raw)
        keys = [f.key for f in findings]
        audit.append(
            "intent",
            attempt_id=attempt_id,
            ip=str(findings[0].ip),
            recipient=contact.address,
            intended_recipient=intended if test_recipient else None,
            role=str(contact.role),
            message_id=composed.message_id,
            digest=composed.digest,
            case=composed.case_ref,
            finding_keys=keys,
            finding_texts=[f"{f.ip}:{f.port or ''} {f.text}" for f in findings],
        )
        self._in_doubt.update((k, contact.address) for k in keys)

        def on_attempt(number: int, error: DeliveryError | None, reply: str) -> None:
            if error is not None:
                audit.append(
                    "attempt",
                    attempt_id=attempt_id,
                    recipient=contact.address,
                    number=number,
                    smtp_code=error.smtp_code,
                    error=str(error),
                    transient=isinstance(error, TransientDeliveryError),
                )

        mailer = await self._get_mailer()
        delivery = await mailer.send(composed, on_attempt=on_attempt)
        delivery = replace(delivery, role=contact.role)
        audit.append(
            "outcome",
            attempt_id=attempt_id,
            ip=str(findings[0].ip),
            recipient=contact.address,
            message_id=composed.message_id,
            digest=composed.digest,
            status=str(delivery.status),
            smtp_code=delivery.smtp_code,
            smtp_reply=delivery.smtp_reply,
            attempts=delivery.attempts,
            finding_keys=keys,
            test=bool(test_recipient),
        )
        self._in_doubt.difference_update((k, contact.address) for k in keys)
        if delivery.status == DeliveryStatus.DELIVERED:
            if not test_recipient:
                self._delivered.update((k, contact.address) for k in keys)
            self.sent_this_run += 1
        result.deliveries.append(delivery)
        self._trace(
            "delivery",
            {"to": contact.address, "status": str(delivery.status), "code": delivery.smtp_code},
        )
        return delivery
