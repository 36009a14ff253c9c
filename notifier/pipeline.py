"""The Notifier: target → contacts → messages → deliveries → audit log.

Everything the CLI does is a call into this class, so pipelines embedding notifier get exactly
the CLI's behaviour. It owns the network clients' lifetimes and is the only writer of the audit
log: an intent record is on disk before each SMTP transaction, its outcome after.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from . import __version__
from .addresses import clean_address
from .compose import ComposedMessage, compose
from .config import Settings
from .contacts import ContactRegistry
from .deliver import Mailer
from .errors import (
    EXIT_FAILED,
    EXIT_HELD_BACK,
    EXIT_OK,
    ConfigError,
    DeliveryError,
    NotifierError,
    TransientDeliveryError,
)
from .ladder import DEFAULT_OPTIONS, SendOptions, held_back, settles, walk
from .ledger import AuditLog, GroupCommit, Record, format_head, load_signing_key
from .models import (
    Channel,
    Contact,
    Delivery,
    DeliveryStatus,
    Finding,
    HostHint,
    IPAddress,
    Network,
    Resolution,
    Role,
    Target,
    case_reference,
)
from .net import RateLimiter, make_http_client, make_resolver
from .outreach.manual import prepare as prepare_manual
from .resolve import resolve
from .sources import Cache, LookupContext, Tracer, utcnow
from .sources.hints import finding_hints
from .targets import parse_target
from .trust import EncryptionRequired, MessageGuard

__all__ = ["Notifier", "SendResult", "contact_record", "channel_record", "resolution_record"]

# SMTP connections a run keeps open at most: deliveries to different recipients go in parallel
# (a batch has hundreds), few enough that no mail server takes the run for a flood
MAX_SMTP_CONNECTIONS = 8


class _Pairs:
    """A set of (finding key, recipient) pairs, each kept as a 128-bit digest.

    A run remembers every finding it delivered, to each recipient: as pairs of strings that is
    some 230 bytes a finding, a quarter of a gigabyte for a million-line scan; as digests, a
    third of that. Two pairs would share a digest with odds of one in 2**128 over a lifetime.
    """

    __slots__ = ("_digests",)

    def __init__(self) -> None:
        self._digests: set[int] = set()

    @staticmethod
    def _digest(pair: tuple[str, str]) -> int:
        data = f"{pair[0]}\x00{pair[1]}".encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")

    def __contains__(self, pair: tuple[str, str]) -> bool:
        return self._digest(pair) in self._digests

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, pair: tuple[str, str]) -> None:
        self._digests.add(self._digest(pair))

    def update(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._digests.update(self._digest(p) for p in pairs)

    def difference_update(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._digests.difference_update(self._digest(p) for p in pairs)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


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


def channel_record(channel: Channel) -> dict[str, Any]:
    """A non-mail channel as the audit log and ``resolve --json`` show it."""
    return {
        "kind": str(channel.kind),
        "uri": channel.uri,
        "role": str(channel.role),
        "source": channel.source,
        "provenance": list(channel.provenance),
        "languages": list(channel.languages),
    }


def resolution_record(resolution: Resolution) -> dict[str, Any]:
    """The fields of the audit log's ``resolution`` record for ``resolution``."""
    return {
        "ip": str(resolution.target.ip),
        "hostnames": list(resolution.hostnames),
        "network": asdict(resolution.network) if resolution.network else None,
        "recipients": [contact_record(c) for c in resolution.recipients],
        "fallbacks": [contact_record(c) for c in resolution.fallbacks],
        "errors": [{"source": s, "error": e} for s, e in resolution.errors],
        "channels": [channel_record(c) for c in resolution.channels],
        "hints": [asdict(h) for h in resolution.hints],
        "evidence": [
            {"source": e.source, "locator": e.locator, "sha256": e.sha256}
            for e in resolution.evidence
        ],
    }


@dataclass(slots=True)
class SendResult:
    """What happened to one target's findings."""

    resolution: Resolution | None = None  # None for a batch, which has one per address
    deliveries: list[Delivery] = field(default_factory=list)
    messages: list[ComposedMessage] = field(default_factory=list)
    # reports prepared for channels that are not e-mail (web forms, phone): (channel, path)
    manual: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Nobody could be told: no contact at all, or a delivery failed and nothing later on the
        ladder took the report in its place (reached it, or holds it for a later run)."""
        statuses = [d.status for d in self.deliveries]
        if not statuses and self.resolution is not None:
            return True  # nobody at all could be found to tell
        if DeliveryStatus.FAILED not in statuses:
            return False
        last_failure = max(i for i, s in enumerate(statuses) if s == DeliveryStatus.FAILED)
        return not any(
            d.role in (Role.REGISTRAR, Role.NATIONAL_CERT) and settles(d.status)
            for d in self.deliveries[last_failure + 1 :]
        )

    @property
    def held_back(self) -> list[Delivery]:
        """Messages a sending limit held back: a later run sends them."""
        return held_back(self.deliveries)

    @property
    def exit_code(self) -> int:
        """1 a delivery failed for good, 3 a limit held a message back, else 0."""
        if self.failed:
            return EXIT_FAILED
        return EXIT_HELD_BACK if self.held_back else EXIT_OK


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
        self._audit: AuditLog | None = None
        self._journal: GroupCommit | None = None
        self._mailers: list[Mailer] = []  # idle connections, reused
        self._mail_slots = asyncio.Semaphore(
            max(1, min(self.settings.limits.concurrency, MAX_SMTP_CONNECTIONS))
        )
        self._in_flight = 0  # messages past the run-cap check and not yet settled
        self._delivered = _Pairs()
        self._in_doubt = _Pairs()
        # how far this run has read the log (bytes, lines), and the intents it saw still open
        self._seen_to = 0
        self._seen_lines = 0
        self._open_intents: dict[str, list[tuple[str, str]]] = {}
        self._suppressed: set[str] = set()
        self._sent_today: dict[str, int] = {}
        self.sent_this_run = 0
        self._wrote = False
        self.max_messages = self.settings.limits.max_messages_per_run
        self._domain_limiter = RateLimiter(self.settings.limits.per_domain_per_minute / 60)

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Notifier:
        settings = self.settings
        resolver = make_resolver(settings.dns)
        agent = settings.http.user_agent or (
            f"notifier/{__version__} (responsible disclosure; contact {settings.sender.address})"
        )
        http = make_http_client(settings.http, resolver, user_agent=agent)
        self._stack.push_async_callback(http.aclose)
        self._guard = MessageGuard(settings)
        self._stack.callback(self._guard.close)
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
        if not url or self._audit is None or self._ctx is None or not self._wrote:
            return
        try:
            path, _ = await self._audit.timestamp(
                url, self._ctx.http, timeout=self.settings.audit.tsa_timeout
            )
        except NotifierError as exc:
            self._audit.append("anchor-failed", tsa=url, error=str(exc))
        else:
            self._trace("anchor", {"tsa": url, "token": str(path)})

    @property
    def ctx(self) -> LookupContext:
        if self._ctx is None:
            raise RuntimeError("use Notifier as 'async with Notifier(...) as n'")
        return self._ctx

    @property
    def audit(self) -> AuditLog:
        """The audit log, opened on first use (resolving alone writes nothing)."""
        return self._open_audit()

    def _open_audit(self) -> AuditLog:
        if self._audit is None:
            signer = (
                load_signing_key(self.settings.audit.signing_key)
                if self.settings.audit.signing_key
                else None
            )
            audit = AuditLog(
                self.settings.state_dir / "audit.jsonl", clock=self._clock, signer=signer
            )
            self._catch_up(audit, since=self._clock() - timedelta(days=1))
            self._audit = audit
        return self._audit

    def _catch_up(self, audit: AuditLog, since: datetime | None = None) -> None:
        """Take in what the log gained since this run last read it, from any process.

        The first read (``since`` given: the start of the daily caps' window) learns what
        earlier runs delivered, left in doubt and were told to suppress. Later reads, made
        under the log's lock before an intent is written, learn what runs going on at the same
        time claimed, so that two runs on one state directory never send the same finding to
        the same recipient.
        """
        for record, end in audit.records_from(self._seen_to, self._seen_lines):
            self._seen_to = end
            self._seen_lines += 1
            event = record.get("event")
            recipient = str(record.get("recipient", "")).lower()
            attempt = record.get("attempt_id")
            keys = [(k, recipient) for k in _strings(record.get("finding_key"))]
            keys += [(k, recipient) for k in _strings(record.get("finding_keys"))]
            if event == "suppress":
                self._suppressed.add(recipient)
            elif event == "intent" and isinstance(attempt, str):
                if attempt not in self._open_intents:
                    self._open_intents[attempt] = keys
                    self._in_doubt.update(keys)
            elif event == "outcome":
                if isinstance(attempt, str):
                    self._in_doubt.difference_update(self._open_intents.pop(attempt, []))
                if record.get("status") != "delivered":
                    continue
                self._delivered.update(keys)
                if since is None:
                    continue  # this run counts its own deliveries as it makes them
                try:
                    when = datetime.fromisoformat(str(record.get("time")))
                except ValueError:
                    continue
                if when >= since:
                    self._sent_today[recipient] = self._sent_today.get(recipient, 0) + 1

    def _unclaimed(self, keys: Sequence[str], recipient: str) -> bool:
        """Under the log's lock: whether no run has sent (or may have sent) these findings to
        ``recipient`` since we looked; if none has, they are ours (marked in doubt at once)."""
        assert self._audit is not None
        self._catch_up(self._audit)
        pairs = [(k, recipient.lower()) for k in keys]
        if any(p in self._delivered or p in self._in_doubt for p in pairs):
            return False
        self._in_doubt.update(pairs)
        return True

    @asynccontextmanager
    async def _mailer(self) -> AsyncIterator[Mailer]:
        """An SMTP connection of the run's small pool, for one message."""
        async with self._mail_slots:
            if self._mailers:
                mailer = self._mailers.pop()
            else:
                mailer = await self._stack.enter_async_context(Mailer(self.settings))
            try:
                yield mailer
            finally:
                self._mailers.append(mailer)

    async def log(self, event: str, /, **fields: object) -> Record:
        """Append to the audit log; concurrent callers share one write and one fsync.

        Returns once the record is on disk, like ``AuditLog.append``.
        """
        self._wrote = True
        if self._journal is None:
            self._journal = GroupCommit(self.audit)
        return await self._journal.append(event, **fields)

    async def _log_if(self, guard: Callable[[], bool], event: str, /, **fields: object) -> bool:
        """``log``, if ``guard()`` (run under the log's lock) agrees; whether it was written."""
        self._wrote = True
        if self._journal is None:
            self._journal = GroupCommit(self.audit)
        return await self._journal.append_if(guard, event, **fields) is not None

    def prior(self, finding: Finding, recipient: str) -> str | None:
        """What earlier runs did with ``finding`` for ``recipient``: delivered, in-doubt or None."""
        key = (finding.key, recipient.lower())
        self._open_audit()  # what earlier runs recorded is loaded with the log
        if key in self._delivered:
            return "delivered"
        if key in self._in_doubt:
            return "in-doubt"
        return None

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
        self._suppressed.add(cleaned)

    def _refusal(self, address: str) -> tuple[DeliveryStatus, str] | None:
        """Why a message to ``address`` must not be sent now, if it must not.

        The suppression list is for good (SUPPRESSED); a cap only for now (HELD_BACK).
        """
        self._open_audit()
        limits = self.settings.limits
        domain = address.rpartition("@")[2]
        if address in self._suppressed or f"@{domain}" in self._suppressed:
            return DeliveryStatus.SUPPRESSED, "suppressed: the recipient asked not to be written to"
        if self.sent_this_run + self._in_flight >= self.max_messages:
            return DeliveryStatus.HELD_BACK, (
                f"held back: run cap of {self.max_messages} messages reached"
                " (raise with --max-messages or limits.max_messages_per_run)"
            )
        if self._sent_today.get(address, 0) >= limits.per_recipient_per_day:
            return DeliveryStatus.HELD_BACK, (
                f"held back: daily cap of {limits.per_recipient_per_day} reached"
                " (limits.per_recipient_per_day)"
            )
        return None

    # -- resolving --------------------------------------------------------------------------

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
        dry_run, force, test_recipient = options.dry_run, options.force, options.test_recipient
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
            if doubtful:
                self.audit.append(
                    "refusal",
                    ip=str(findings[0].ip),
                    recipient=contact.address,
                    status=str(DeliveryStatus.IN_DOUBT),
                    finding_keys=[f.key for f in doubtful],
                    reason=doubt,
                )
            if not new:
                if doubtful:
                    return skipped(DeliveryStatus.IN_DOUBT, doubt)
                return skipped(DeliveryStatus.ALREADY_SENT, "delivered in an earlier run")
            findings = new
        refusal = None if dry_run else self._refusal(contact.address)
        if refusal is not None:
            status, reason = refusal
            self.audit.append(
                "refusal",
                ip=str(findings[0].ip),
                recipient=contact.address,
                status=str(status),
                reason=reason,
                finding_keys=[f.key for f in findings],
            )
            self._trace("refusal", {"to": contact.address, "reason": reason})
            return skipped(status, reason)
        now = self._clock()
        case_ref = options.case_ref or case_reference(findings)
        log_head = None if dry_run else format_head(*self.audit.head())
        composed = compose(
            findings,
            contact,
            settings=self.settings,
            template=options.template,
            case_ref=case_ref,
            now=now,
            log_head=log_head,
            in_reply_to=options.in_reply_to,
            references=options.references,
            network=network,
        )
        # counted against the run cap from here on, before anything awaits: concurrent
        # deliveries cannot overshoot it
        if not dry_run:
            self._in_flight += 1
        try:
            protection = None
            if self._guard is not None:
                try:
                    composed, protection = await self._guard.protect(composed, contact, self.ctx)
                except EncryptionRequired as exc:
                    self.audit.append(
                        "refusal",
                        ip=str(findings[0].ip),
                        recipient=contact.address,
                        reason=str(exc),
                        finding_keys=[f.key for f in findings],
                    )
                    return skipped(DeliveryStatus.FAILED, str(exc))
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
            sent = await self._transmit(
                composed,
                contact,
                findings,
                result,
                test_recipient,
                address,
                claim=not force,
                protection=protection.record() if protection else None,
            )
        finally:
            if not dry_run:
                self._in_flight -= 1
        if sent is not None:
            return sent
        # another run on this state directory claimed some of these findings for this contact
        # since we looked: decide again with what it wrote, and send what is left, if anything
        result.messages.remove(composed)
        return await self.deliver(contact, asked, network, result, options)

    async def _transmit(
        self,
        composed: ComposedMessage,
        contact: Contact,
        findings: list[Finding],
        result: SendResult,
        test_recipient: str | None,
        intended: str,
        *,
        claim: bool = True,
        protection: dict[str, Any] | None = None,
    ) -> Delivery | None:
        """Write the intent, hand the message over, write the outcome.

        With ``claim`` (not for ``--force`` or a rehearsal), the intent is written only if no
        other run claimed these findings for this contact meanwhile; None when one did.
        """
        self._wrote = True
        attempt_id = uuid.uuid4().hex[:16]
        # in a worker thread: deliveries in parallel then sync their files to disk together
        await asyncio.to_thread(self.audit.store_message, composed.raw)
        keys = [f.key for f in findings]
        recipient = contact.address

        def unclaimed() -> bool:
            return not claim or bool(test_recipient) or self._unclaimed(keys, recipient)

        written = await self._log_if(
            unclaimed,
            "intent",
            attempt_id=attempt_id,
            ip=str(findings[0].ip),
            recipient=contact.address,
            intended_recipient=intended if test_recipient else None,
            role=str(contact.role),
            message_id=composed.message_id,
            digest=composed.digest,
            case=composed.case_ref,
            protection=protection,
            finding_keys=keys,
            finding_texts=[f"{f.ip}:{f.port or ''} {f.text}" for f in findings],
            # structured, so that a follow-up or a bounce fallback can rebuild the findings
            findings=[
                {
                    "ip": f.ip,
                    "port": f.port,
                    "text": f.text,
                    "hostname": f.hostname,
                    "observed_at": f.observed_at,
                    "extra": [list(pair) for pair in f.extra],
                }
                for f in findings
            ],
        )
        if not written:
            return None
        self._in_doubt.update((k, recipient.lower()) for k in keys)

        async def on_attempt(number: int, error: DeliveryError | None, reply: str) -> None:
            if error is not None:
                await self.log(
                    "attempt",
                    attempt_id=attempt_id,
                    recipient=contact.address,
                    number=number,
                    smtp_code=error.smtp_code,
                    error=str(error),
                    transient=isinstance(error, TransientDeliveryError),
                )

        await self._domain_limiter.wait(contact.address.rpartition("@")[2])
        async with self._mailer() as mailer:
            delivery = await mailer.send(composed, on_attempt=on_attempt)
        delivery = replace(delivery, role=contact.role)
        await self.log(
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
        self._in_doubt.difference_update((k, recipient.lower()) for k in keys)
        if delivery.status == DeliveryStatus.DELIVERED:
            if not test_recipient:
                self._delivered.update((k, recipient.lower()) for k in keys)
            self._sent_today[contact.address] = self._sent_today.get(contact.address, 0) + 1
        if delivery.status != DeliveryStatus.FAILED or delivery.attempts:
            self.sent_this_run += 1
        result.deliveries.append(delivery)
        self._trace(
            "delivery",
            {"to": contact.address, "status": str(delivery.status), "code": delivery.smtp_code},
        )
        return delivery
