"""The Notifier: the conductor of resolve → compose → deliver → record.

Everything the CLI does is a call into this class, so pipelines embedding notifier get exactly
the CLI's behaviour. It composes the stages and owns only their lifetimes:

- resolve (``notifier.resolve``): who owns the address, with provenance;
- the ladder (``notifier.ladder``): who is told, and when the next rung is;
- the gate (``notifier.gate``): what the log's history and the run's limits allow;
- compose (``notifier.compose``) and the message guard (``notifier.trust``): the exact bytes;
- deliver (``notifier.dispatch``): the SMTP pool, with the intent written right before DATA
  and the outcome after, in the ledger (``notifier.ledger``), the only record of what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import datetime

from . import __version__
from .addresses import clean_address
from .compose import check_template, library_for
from .compose.pool import Composer, Job
from .config import Settings
from .contacts import ContactRegistry
from .dispatch import MAX_SMTP_CONNECTIONS, Dispatcher, Handover
from .errors import ConfigError, NotifierError
from .gate import IN_FLIGHT_REASON, Gate, Refusal
from .ladder import DEFAULT_OPTIONS, SendOptions, walk
from .ledger import GroupCommit, Ledger, Record, format_head, open_ledger
from .models import (
    Contact,
    Delivery,
    DeliveryStatus,
    Finding,
    HostHint,
    IPAddress,
    Network,
    Resolution,
    Target,
    case_reference,
)
from .net import RateLimiter, make_http_client, make_resolver
from .outcome import SendResult, channel_record, contact_record, resolution_record
from .outreach.manual import prepare as prepare_manual
from .resolve import resolve
from .sources import Cache, LookupContext, Tracer, utcnow
from .sources.hints import finding_hints
from .targets import parse_target
from .trust import EncryptionRequired, MessageGuard

__all__ = [
    "MAX_SMTP_CONNECTIONS",
    "Notifier",
    "SendResult",
    "channel_record",
    "contact_record",
    "resolution_record",
]


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
        cache: Cache | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._cache = cache
        self._clock = clock
        self._trace: Tracer = trace or (lambda event, fields: None)
        self._stack = AsyncExitStack()
        self._ctx: LookupContext | None = None
        self._guard: MessageGuard | None = None
        self._ledger: Ledger | None = None
        self._gate: Gate | None = None
        self._journal: GroupCommit | None = None
        self._dispatcher: Dispatcher | None = None
        self._wrote = False
        self._max_messages = self.settings.limits.max_messages_per_run
        self._composer = Composer(self.settings, self.settings.limits.compose_workers)

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Notifier:
        settings = self.settings
        # a broken template folder fails here, with its file and line, before any lookup
        library_for(settings)
        resolver = make_resolver(settings.dns)
        agent = settings.http.user_agent or (
            f"notifier/{__version__} (responsible disclosure; contact {settings.sender.address})"
        )
        http = make_http_client(settings.http, resolver, user_agent=agent)
        self._stack.push_async_callback(http.aclose)
        self._guard = MessageGuard(settings)
        self._stack.callback(self._guard.close)
        self._stack.callback(self._composer.close)
        self._ctx = LookupContext(
            settings=settings,
            resolver=resolver,
            http=http,
            limiter=RateLimiter(settings.rdap.rate_per_second),
            clock=self._clock,
            trace=self._trace,
            contacts=ContactRegistry.load(settings.contacts.file or None),
            cache=self._cache,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._anchor()
        finally:
            await self._stack.aclose()

    async def _anchor(self) -> None:
        """Have the configured TSA timestamp the chain head after a run that wrote to the log.

        A chain kept only by the researcher proves nothing against the researcher; a trusted
        timestamp over its head, like the head in every message, commits it outside.
        """
        url = self.settings.audit.tsa_url
        if not url or self._ledger is None or self._ctx is None or not self._wrote:
            return
        try:
            path, _ = await self._ledger.timestamp(
                url, self._ctx.http, timeout=self.settings.audit.tsa_timeout
            )
        except NotifierError as exc:
            self._ledger.append("anchor-failed", tsa=url, error=str(exc))
        else:
            self._trace("anchor", {"tsa": url, "token": str(path)})

    @property
    def ctx(self) -> LookupContext:
        if self._ctx is None:
            raise RuntimeError("use Notifier as 'async with Notifier(...) as n'")
        return self._ctx

    @property
    def audit(self) -> Ledger:
        """The ledger, opened on first use (resolving alone writes nothing)."""
        if self._ledger is None:
            self._ledger = open_ledger(self.settings, clock=self._clock)
        return self._ledger

    @property
    def gate(self) -> Gate:
        """The log's history and this run's limits (loaded with the ledger)."""
        if self._gate is None:
            self._gate = Gate(
                self.audit,
                self.settings.limits,
                clock=self._clock,
                max_messages=self._max_messages,
            )
        return self._gate

    @property
    def journal(self) -> GroupCommit:
        """Appends from concurrent tasks, sharing one write and one sync."""
        if self._journal is None:
            self._journal = GroupCommit(self.audit)
        return self._journal

    @property
    def max_messages(self) -> int:
        """The run cap (``limits.max_messages_per_run``, or ``--max-messages``)."""
        return self._max_messages

    @max_messages.setter
    def max_messages(self, value: int) -> None:
        self._max_messages = value
        if self._gate is not None:
            self._gate.max_messages = value

    @property
    def sent_this_run(self) -> int:
        return self._gate.sent if self._gate is not None else 0

    async def log(self, event: str, /, **fields: object) -> Record:
        """Append to the audit log; returns once the record is on disk."""
        self._wrote = True
        return await self.journal.append(event, **fields)

    def prior(self, finding: Finding, recipient: str) -> str | None:
        """What earlier runs did with ``finding`` for ``recipient``: delivered, in-doubt or None."""
        return self.gate.prior(finding.key, recipient)

    def suppress(self, address: str, reason: str = "") -> None:
        """Never write to ``address`` again (recorded in the audit log, honoured everywhere)."""
        domain = address.strip().lower()
        if domain.startswith("@") and clean_address("x" + domain):
            cleaned: str | None = domain
        else:
            cleaned = clean_address(address)
        if cleaned is None:
            raise ConfigError(f"not an e-mail address or @domain: {address!r}")
        self.audit.append("suppress", recipient=cleaned, reason=reason)
        self.gate.refresh()

    # -- resolve ----------------------------------------------------------------------------

    def target(self, text: str) -> IPAddress:
        """Parse and check a target address (``TargetRefused`` says why not)."""
        return parse_target(text, self.settings)

    async def resolve(
        self,
        ip: IPAddress | str,
        hostnames: Sequence[str] = (),
        hints: Sequence[HostHint] = (),
    ) -> Resolution:
        """The contacts ``send`` would use for ``ip``, with provenance. Sends nothing.

        ``hostnames`` and ``hints`` are claims: used once they resolve to ``ip``."""
        address = self.target(ip) if isinstance(ip, str) else self.target(str(ip))
        return await resolve(Target(address, tuple(hostnames), tuple(hints)), self.ctx)

    def record_resolution(self, resolution: Resolution) -> None:
        self._wrote = True
        self.audit.append("resolution", **resolution_record(resolution))

    # -- the ladder -------------------------------------------------------------------------

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

        All findings must be about one address. The registrar and the national CERT are tried
        only as ``notifier.ladder`` says: nobody else found, or every other contact failed.
        """
        if not findings:
            raise ConfigError("nothing to send: no findings")
        check_template(self.settings, template)
        ips = {f.ip for f in findings}
        if len(ips) != 1:
            raise ConfigError("send takes findings about one address; use batch for many")
        hints = [h for f in findings for h in finding_hints(f)]
        resolution = await self.resolve(str(findings[0].ip), hints=hints)
        if not dry_run:
            self.record_resolution(resolution)
        result = SendResult(resolution)
        options = SendOptions(
            template=template, dry_run=dry_run, force=force, test_recipient=test_recipient
        )
        await self.deliver_ladder(
            resolution.recipients,
            resolution.fallbacks,
            list(findings),
            resolution.network,
            result,
            options,
        )
        if not dry_run:
            result.manual += await self.prepare_manual(resolution, list(findings))
        return result

    async def prepare_manual(
        self, resolution: Resolution, findings: list[Finding]
    ) -> list[tuple[str, str]]:
        """A ready-to-submit report for each web form or phone line of ``resolution``."""
        if not resolution.channels:
            return []
        paths = await asyncio.to_thread(
            prepare_manual,
            self.audit,
            resolution.channels,
            findings,
            settings=self.settings,
            now=self._clock(),
            network=resolution.network,
        )
        return [(channel, str(path)) for channel, path in paths]

    async def deliver_ladder(
        self,
        recipients: Sequence[Contact],
        fallbacks: Sequence[Contact],
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        options: SendOptions = DEFAULT_OPTIONS,
    ) -> None:
        """Deliver to every recipient; climb the fallback ladder as ``notifier.ladder`` says."""

        async def deliver(contact: Contact) -> Delivery:
            return await self.deliver(contact, findings, network, result, options)

        async def on_climb(contact: Contact, reason: str) -> None:
            if not options.dry_run:
                await self.log(
                    "fallback",
                    ip=str(findings[0].ip),
                    case=options.case_ref or case_reference(findings),
                    to=contact.address,
                    role=str(contact.role),
                    reason=reason,
                )

        await walk(recipients, fallbacks, deliver, on_climb)

    # -- one message: gate → compose → deliver → record -------------------------------------

    def _refuse(
        self, findings: list[Finding], address: str, status: DeliveryStatus, reason: str
    ) -> None:
        self.audit.append(
            "refusal",
            ip=str(findings[0].ip),
            recipient=address,
            status=str(status),
            reason=reason,
            finding_keys=[f.key for f in findings],
        )
        self._trace("refusal", {"to": address, "reason": reason})

    async def deliver(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        options: SendOptions = DEFAULT_OPTIONS,
    ) -> Delivery:
        """One message to one contact about ``findings``, written ahead to the audit log.

        Findings already delivered to this contact are left out (unless ``force``); findings
        an interrupted run may have sent are left out and reported in doubt. Suppressed
        addresses (SUPPRESSED) and the daily and per-run caps (HELD_BACK) are refused and logged.
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
            new = [f for f in findings if self.prior(f, contact.address) is None]
            doubtful = [f for f in findings if self.prior(f, contact.address) == "in-doubt"]
            busy = [f for f in findings if self.prior(f, contact.address) == "in-flight"]
            if not new and busy and not doubtful:
                return skipped(DeliveryStatus.IN_FLIGHT, IN_FLIGHT_REASON)
            if doubtful:
                self._refuse(doubtful, contact.address, DeliveryStatus.IN_DOUBT, doubt)
            if not new:
                if doubtful:
                    return skipped(DeliveryStatus.IN_DOUBT, doubt)
                return skipped(DeliveryStatus.ALREADY_SENT, "delivered in an earlier run")
            findings = new
        gate = None if dry_run else self.gate
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
        now = self._clock()
        case_ref = options.case_ref or case_reference(findings)
        log_head = None if options.dry_run else format_head(*self.audit.head())
        if self._guard is not None:
            self._guard.prefetch(contact, self.ctx)  # the key's lookup runs while composing
        composed = await self._composer.compose(
            Job(
                findings,
                contact,
                template=options.template,
                case_ref=case_ref,
                now=now,
                log_head=log_head,
                in_reply_to=options.in_reply_to,
                references=options.references,
                network=network,
            )
        )
        protection = None
        if self._guard is not None:
            try:
                composed, protection = await self._guard.protect(composed, contact, self.ctx)
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
        self._wrote = True
        sent = await self._dispatch().hand_over(handover)
        if not isinstance(sent, Delivery):
            result.messages.remove(composed)
        return sent

    def _dispatch(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(
                self.settings, self.audit, self.journal, self.gate, self._stack, self._trace
            )
        return self._dispatcher
