"""The Notifier: the conductor of resolve → compose → deliver → record.

Everything the CLI does is a call into this class, so pipelines embedding notifier get exactly
the CLI's behaviour. It composes the stages and owns only their lifetimes:

- resolve (``notifier.resolve``): who owns the address, with provenance;
- the ladder (``notifier.ladder``): who is told, and when the next rung is;
- the gate (``notifier.gate``): what the log's history and the run's limits allow;
- one message (``notifier.sending``): the gate's say, then compose (``notifier.compose``)
  and the message guard (``notifier.trust``) for the exact bytes;
- deliver (``notifier.dispatch``): the SMTP pool, with the intent written right before DATA
  and the outcome after, in the ledger (``notifier.ledger``), the only record of what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime

from . import __version__
from .addresses import clean_address
from .compose import check_template, library_for
from .compose.pool import Composer
from .config import Settings
from .contacts import ContactRegistry
from .dispatch import MAX_SMTP_CONNECTIONS
from .errors import ConfigError, NotifierError
from .gate import Gate
from .ladder import DEFAULT_OPTIONS, SendOptions, walk
from .ledger import GroupCommit, Ledger, Record, open_ledger
from .models import (
    Contact,
    Delivery,
    Finding,
    HostHint,
    IPAddress,
    Network,
    Resolution,
    Target,
    case_reference,
)
from .net import Pacer, RateLimiter, make_http_client, make_resolver
from .outcome import SendResult, channel_record, contact_record, resolution_record
from .outreach.manual import prepare as prepare_manual
from .resolve import resolve
from .sending import Sender
from .sources import Cache, LookupContext, Tracer, utcnow
from .sources.hints import finding_hints
from .targets import parse_target
from .trust import MessageGuard

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
        self._tracing = trace is not None
        self._stack = AsyncExitStack()
        self._ctx: LookupContext | None = None
        self._guard: MessageGuard | None = None
        self._ledger: Ledger | None = None
        self._gate: Gate | None = None
        self._journal: GroupCommit | None = None
        self._sender: Sender | None = None
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
        http = make_http_client(
            settings.http,
            resolver,
            user_agent=agent,
            # host names of connections through a batch's c-ares channel while it has one
            bulk_dns=lambda: self._ctx.bulk_dns if self._ctx is not None else None,
        )
        self._stack.push_async_callback(http.aclose)
        self._guard = MessageGuard(settings)
        self._stack.callback(self._guard.close)
        self._stack.callback(self._composer.close)
        self._ctx = LookupContext(
            settings=settings,
            resolver=resolver,
            http=http,
            limiter=RateLimiter(
                settings.rdap.rate_per_second,
                # with a shared cache, the processes sharing it keep to the rate together
                shared=self._cache if isinstance(self._cache, Pacer) else None,
            ),
            clock=self._clock,
            trace=self._trace,
            tracing=self._tracing,
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
            self._journal = GroupCommit(self.audit, prepare=self.gate.refresh)
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

    def clock(self) -> datetime:
        return self._clock()

    @property
    def tracing(self) -> bool:  # whether anyone listens to this run's events
        return self._tracing

    def trace(self, event: str, fields: Mapping[str, object]) -> None:
        self._trace(event, dict(fields))

    async def log(self, event: str, /, **fields: object) -> Record:
        """Append to the audit log; returns once the record is on disk."""
        self.wrote()
        return await self.journal.append(event, **fields)

    def priors(self, findings: Sequence[Finding], recipient: str) -> list[str | None]:
        """What the log says of each finding for ``recipient`` (``Gate.priors``)."""
        return self.gate.priors([f.key for f in findings], recipient)

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

    def expect_messages(self, count: int, *, relay: bool = False) -> None:
        """This run will send about ``count`` messages: the composer gets ready, and with
        ``relay`` (real messages) a relay if it pays (not on a caller's clock: it has its own)."""
        self._composer.expect(count)
        if relay and self._clock is utcnow:
            self.sending.relay(count)

    def prefetch_keys(self, contacts: Sequence[Contact], *, first: bool = False) -> bool:
        """Look up the recipients' OpenPGP keys ahead of their messages, a few at a time, in
        the order given (before those asked for earlier when ``first``): a batch's messages
        then find their keys waiting. False when this run looks up no keys."""
        if self._guard is None:
            return False
        return self._guard.ahead(contacts, self.ctx, first=first)

    def stop_prefetch(self) -> None:
        """No more key lookups ahead (those under way finish)."""
        if self._guard is not None:
            self._guard.stop_ahead()

    # -- one message: gate → compose → deliver → record -------------------------------------

    async def deliver(
        self,
        contact: Contact,
        findings: list[Finding],
        network: Network | None,
        result: SendResult,
        options: SendOptions = DEFAULT_OPTIONS,
        priors: Sequence[str | None] | None = None,
    ) -> Delivery:
        """One message to one contact about ``findings`` (``notifier.sending``)."""
        return await self.sending.deliver(contact, findings, network, result, options, priors)

    @property
    def composed_ahead(self) -> int:
        """Messages this run sent as composed ahead."""
        return self._composer.ahead_used

    def drop_ahead(self, keys: Sequence[Hashable] | None = None) -> None:
        """Forget messages composed ahead (all of them when ``keys`` is None)."""
        self._composer.drop(keys)

    @property
    def sending(self) -> Sender:
        """The one-message path (``notifier.sending``): ``deliver``, and ``ahead`` for a
        message composed before it is sent."""
        if self._sender is None:
            if self._guard is None:
                raise RuntimeError("use Notifier as 'async with Notifier(...) as n'")
            self._sender = Sender(self, self._composer, self._guard, self._stack)
        return self._sender

    def wrote(self) -> None:
        """Note that this run wrote to the log (the TSA anchors such runs)."""
        self._wrote = True
