"""The fallback ladder: who is told next when the chosen contacts could not be.

One rule, used by ``send``, ``batch``, ``bounces`` and ``followup``:

- The chosen contacts (override, owner, network abuse desk) are all written to.
- The ladder climbs to the fallbacks (registrar, then national CERT) only when nobody was chosen
  at all, or when every chosen contact that is not on the suppression list *failed* (a permanent
  refusal, or retries exhausted).
- A contact held back by a sending limit (the daily per-recipient cap, the run cap) has not
  failed: the finding waits for a later run, and nobody above it is told in its place.
- A contact on the suppression list has not failed either: it asked not to be written to, which is
  no reason to tell its registrar or its country's CERT. It is off the ladder: it neither counts
  as reached nor makes the ladder climb.
- Fallbacks are tried one at a time, in order, until one settles the case: delivered, held back
  (it goes out later), already sent or in doubt. A suppressed fallback is skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from .models import Contact, Delivery, DeliveryStatus

__all__ = ["SendOptions", "DEFAULT_OPTIONS", "climbs", "settles", "walk", "held_back"]


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How a message is sent, the same for every contact of a run (and every rung)."""

    template: str | None = None
    dry_run: bool = False
    force: bool = False
    test_recipient: str | None = None  # a rehearsal: every message goes here instead
    in_reply_to: str | None = None  # a follow-up is threaded to the case's first message
    references: tuple[str, ...] = ()
    case_ref: str | None = None  # a follow-up keeps its case's reference, whatever it carries

    @property
    def checks_history(self) -> bool:
        """Whether earlier runs' deliveries and in-doubt intents are honoured (not for --force,
        a dry run or a rehearsal)."""
        return not (self.force or self.dry_run or self.test_recipient)


DEFAULT_OPTIONS = SendOptions()


def climbs(statuses: Iterable[DeliveryStatus]) -> bool:
    """Whether the fallbacks are tried after the chosen contacts ended with ``statuses``."""
    seen = list(statuses)
    if not seen:
        return True  # nobody was chosen: the fallbacks are all there is
    considered = [s for s in seen if s != DeliveryStatus.SUPPRESSED]
    return bool(considered) and all(s == DeliveryStatus.FAILED for s in considered)


def settles(status: DeliveryStatus) -> bool:
    """Whether a fallback that ended with ``status`` ends the climb."""
    return status not in (DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED)


def held_back(deliveries: Iterable[Delivery]) -> list[Delivery]:
    """The deliveries a sending limit held back (they go out on a later run)."""
    return [d for d in deliveries if d.status == DeliveryStatus.HELD_BACK]


async def walk(
    recipients: Sequence[Contact],
    fallbacks: Sequence[Contact],
    deliver: Callable[[Contact], Awaitable[Delivery]],
    on_climb: Callable[[Contact, str], Awaitable[None]],
) -> list[Delivery]:
    """Deliver to every recipient, then climb the fallbacks as the rule says.

    ``on_climb(contact, reason)`` runs before each fallback is tried (to record why).
    """
    deliveries = [await deliver(contact) for contact in recipients]
    if not climbs(d.status for d in deliveries):
        return deliveries
    reason = "no contact found" if not recipients else "every contact failed"
    for contact in fallbacks:
        await on_climb(contact, reason)
        delivery = await deliver(contact)
        deliveries.append(delivery)
        if settles(delivery.status):
            break
    return deliveries
