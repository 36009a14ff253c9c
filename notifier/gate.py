"""What may be sent now: the log's history and the run's limits, asked before every message.

The ledger's read model (``Ledger.view()``) says what every run on this store did: what was
delivered to whom, which intents are still in doubt, who asked not to be written to, and how many
messages each recipient got in the last day. The gate adds what this run has in hand (claims not
yet on disk, messages in flight) and answers three questions:

- ``prior``: did an earlier run deliver this finding to this recipient, or may it have?
- ``refusal``: does the suppression list (for good) or a cap (for now) stop a message?
- ``claim``: run under the log's lock right before an intent is written, is the message still
  ours to send? It re-reads what other processes appended, so two runs on one store never send
  the same finding to the same recipient, and re-checks the caps with what they sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from .config import LimitSettings
from .ledger import Ledger, LiveView, ReadModel
from .models import DeliveryStatus

__all__ = ["Gate", "Refusal", "IN_FLIGHT_REASON"]

Refusal = tuple[DeliveryStatus, str]
"""Why a message is not sent: SUPPRESSED (for good) or HELD_BACK (a later run sends it)."""

_DAY = timedelta(days=1)


IN_FLIGHT_REASON = "being sent by another process right now; it records the outcome"


class Gate:
    """The history of a store and the limits of one run, in one place."""

    def __init__(
        self,
        ledger: Ledger,
        limits: LimitSettings,
        *,
        clock: Callable[[], datetime],
        max_messages: int,
    ) -> None:
        self._view: LiveView = ledger.view(lean=True)
        self._limits = limits
        self._clock = clock
        self.max_messages = max_messages
        self.sent = 0  # messages this run handed over (or tried to)
        self.in_flight = 0  # past the run-cap check, not yet settled
        # claims this run made whose intents may not be in the model yet, per recipient
        self._claimed: set[tuple[str, str]] = set()
        self._pending: dict[str, int] = {}
        # the model is folded under this lock: the claim runs in the log's writing thread
        self._lock = threading.Lock()
        with self._lock:
            self._view.refresh()

    @property
    def model(self) -> ReadModel:
        return self._view.model

    def refresh(self) -> ReadModel:
        with self._lock:
            return self._view.refresh()

    def priors(self, finding_keys: Sequence[str], recipient: str) -> list[str | None]:
        """What the log says of each finding for this recipient: delivered, in-doubt,
        in-flight (a live process is delivering it now) or None."""
        said = self._view.priors(finding_keys, recipient)
        if self._claimed:
            lowered = recipient.lower()
            for n, (key, known) in enumerate(zip(finding_keys, said, strict=True)):
                if known is None and (key, lowered) in self._claimed:
                    said[n] = "in-doubt"
        return said

    def refusal(self, address: str, *, rehearsal: bool = False) -> Refusal | None:
        """Why a message to ``address`` must not be sent now, if it must not.

        A rehearsal (--test-recipient) goes to the operator's own address: the daily cap, which
        protects recipients, does not apply to it; the run cap does.
        """
        if self.model.is_suppressed(address):
            return DeliveryStatus.SUPPRESSED, "suppressed: the recipient asked not to be written to"
        if self.sent + self.in_flight >= self.max_messages:
            return DeliveryStatus.HELD_BACK, (
                f"held back: run cap of {self.max_messages} messages reached"
                " (raise with --max-messages or limits.max_messages_per_run)"
            )
        cap = self._limits.per_recipient_per_day
        recipient = address.lower()
        today = self.model.sent_since(recipient, self._clock() - _DAY)
        if not rehearsal and today + self._pending.get(recipient, 0) >= cap:
            return DeliveryStatus.HELD_BACK, (
                f"held back: daily cap of {cap} reached (limits.per_recipient_per_day)"
            )
        return None

    def claim(
        self, keys: Sequence[str], recipient: str, *, exclusive: bool, rehearsal: bool = False
    ) -> Refusal | None:
        """Under the log's lock, right before the intent: None when the message is ours to send.

        Learns what every process appended since, then refuses if another run delivered (or
        may have delivered) these findings to ``recipient`` (only when ``exclusive``: not for
        --force or a rehearsal), or if the daily cap is now reached. On success the findings
        are marked in doubt for this run at once, so a second claim in the same group fails.
        """
        recipient = recipient.lower()
        pairs = [(k, recipient) for k in keys]
        with self._lock:
            model = self._view.refresh()
            if exclusive and any(
                model.prior(k, r) is not None or (k, r) in self._claimed for k, r in pairs
            ):
                return DeliveryStatus.IN_FLIGHT, IN_FLIGHT_REASON
            cap = self._limits.per_recipient_per_day
            today = model.sent_since(recipient, self._clock() - _DAY)
            if not rehearsal and today + self._pending.get(recipient, 0) >= cap:
                return DeliveryStatus.HELD_BACK, (
                    f"held back: daily cap of {cap} reached (limits.per_recipient_per_day)"
                )
            self._claimed.update(pairs)
            self._pending[recipient] = self._pending.get(recipient, 0) + 1
            return None

    def settled(self, keys: Sequence[str], recipient: str) -> None:
        """The outcome of a claimed message is on disk: the model takes over from here."""
        recipient = recipient.lower()
        with self._lock:
            self._view.refresh()
            self._claimed.difference_update((k, recipient) for k in keys)
            left = self._pending.get(recipient, 0) - 1
            if left > 0:
                self._pending[recipient] = left
            else:
                self._pending.pop(recipient, None)
