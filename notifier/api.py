"""One-shot helpers and a synchronous face over ``Notifier``, for scripts and scanner loops.

Asynchronous::

    resolution = await notifier.resolve("8.8.8.8")
    result = await notifier.notify("8.8.8.8", "Open resolver on 53/udp", port=53)

Synchronous, for a scanner written without asyncio::

    with notifier.SyncNotifier(notifier.load_settings("notify.toml")) as n:
        for hit in scan():
            n.submit(notifier.Finding(ip_address(hit.ip), hit.text, port=hit.port))
        outcomes = n.flush()
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .batch import Batch, FindingOutcome
from .config import Settings
from .models import Finding, HostHint, Resolution
from .pipeline import Notifier, SendResult

__all__ = ["resolve", "notify", "SyncNotifier"]


async def resolve(
    ip: str,
    *,
    settings: Settings | None = None,
    hostnames: Sequence[str] = (),
    hints: Sequence[HostHint] = (),
) -> Resolution:
    """The contacts ``notify`` would use for ``ip``, with provenance. Sends nothing.

    ``hostnames`` and ``hints`` are used once they are forward-confirmed (resolve to ``ip``)."""
    async with Notifier(settings) as notifier:
        return await notifier.resolve(ip, hostnames, hints)


async def notify(
    ip: str,
    finding: str,
    *,
    port: int | None = None,
    hostname: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> SendResult:
    """Disclose one finding about ``ip``: exactly ``notify send`` (options: dry_run, force...)."""
    async with Notifier(settings) as notifier:
        item = Finding(
            notifier.target(ip),
            finding,
            port=port,
            hostname=hostname,
            observed_at=datetime.now(UTC),
        )
        return await notifier.send([item], **options)


class SyncNotifier:
    """``Notifier`` for code without an event loop: the same methods, blocking."""

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._notifier = Notifier(settings, **options)
        self._batch: Batch | None = None
        self._outcomes: list[FindingOutcome] = []

    def __enter__(self) -> SyncNotifier:
        self._runner.run(self._notifier.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._runner.run(self._notifier.__aexit__(None, None, None))
        finally:
            self._runner.close()

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    def resolve(
        self, ip: str, hostnames: Sequence[str] = (), hints: Sequence[HostHint] = ()
    ) -> Resolution:
        return self._runner.run(self._notifier.resolve(ip, hostnames, hints))

    def send(self, findings: Sequence[Finding], **options: Any) -> SendResult:
        return self._runner.run(self._notifier.send(findings, **options))

    def submit(self, finding: Finding, **options: Any) -> None:
        """Queue a finding of a stream; ``flush`` sends one message per recipient (as ``batch``).

        ``options`` (template, dry_run, force, test_recipient) apply from the first submit on.
        """
        if self._batch is None:
            self._batch = Batch(self._notifier, on_outcome=self._outcomes.append, **options)
        self._runner.run(self._batch.submit(finding))

    def flush(self) -> list[FindingOutcome]:
        """Deliver everything submitted since the last flush; one outcome per finding."""
        batch, self._batch = self._batch, None
        if batch is None:
            return []
        try:
            self._runner.run(batch.flush())
            return list(self._outcomes)
        finally:
            self._outcomes.clear()
