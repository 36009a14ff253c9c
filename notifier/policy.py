"""Who is told, given what the sources found: the policy over their reports, no I/O.

``merge_contacts`` joins one mailbox found twice; ``apply_overrides`` drops what an operator
override replaces; ``guess_allowed`` says whether the last-resort role mailbox may be guessed;
``choose`` splits the rest into recipients and the fallback ladder. ``notifier.resolve`` runs the
sources and calls these in that order.
"""

from __future__ import annotations

from collections.abc import Iterable

from .models import Channel, Contact, Role, SourceReport
from .sources import LookupContext

__all__ = ["merge_contacts", "apply_overrides", "guess_allowed", "choose"]


def merge_contacts(contacts: Iterable[Contact]) -> list[Contact]:
    """One entry per mailbox, provenance joined, ordered by role then confidence."""
    merged: dict[str, Contact] = {}
    for contact in contacts:
        key = contact.address.lower()
        merged[key] = merged[key].merged(contact) if key in merged else contact
    order = list(Role)
    return sorted(merged.values(), key=lambda c: (order.index(c.role), -c.confidence, c.address))


def apply_overrides(
    contacts: list[Contact], channels: list[Channel], reports: Iterable[SourceReport]
) -> tuple[list[Contact], list[Channel], list[str]]:
    """Drop what an operator override replaces: the automatic contacts and channels of the roles
    its report lists (network for a CIDR or AS number, owner for a domain). Notes say what went."""
    replaced = {role for r in reports for role in r.replaces}
    if not replaced:
        return contacts, channels, []
    notes = [
        f"{c.address} ({c.role}) replaced by an operator override"
        for c in contacts
        if c.role in replaced
    ]
    notes += [
        f"{ch.uri} ({ch.role}) replaced by an operator override"
        for ch in channels
        if ch.role in replaced
    ]
    kept = [c for c in contacts if c.role not in replaced]
    return kept, [ch for ch in channels if ch.role not in replaced], notes


def guess_allowed(
    contacts: Iterable[Contact], reports: Iterable[SourceReport], ctx: LookupContext
) -> str | None:
    """None when a role mailbox may be guessed, else why not.

    Guessing is the last resort: only when guessing is on, no real source gave an owner-level
    contact, and nobody spoke for the host's names: no security.txt answered for them (an
    unusable file is still the owner's word) and no operator override applies to the address.
    The MX rule is the role-mailbox source's own.
    """
    if not ctx.settings.resolve.guess_role_mailbox:
        return "guessing is off ([resolve] guess_role_mailbox = false)"
    if any(c.role is Role.OVERRIDE for c in contacts):
        # the operator named who is told here (for the network or the domain): their word stands
        return "an operator override applies to this address"
    if any(c.role is Role.OWNER for c in contacts):
        return "an owner-level contact was found"
    spoken = [name for r in reports for name in r.answered]
    if spoken:
        shown = ", ".join(dict.fromkeys(spoken[:3]))
        return f"the owner published a security.txt for {shown}: nothing guessed in its place"
    return None


def choose(contacts: list[Contact]) -> tuple[tuple[Contact, ...], tuple[Contact, ...]]:
    """Split merged contacts into recipients and the fallback ladder.

    Operator overrides, the owner level (security.txt, non-redacted registrants, the rare guess)
    and the network level (the abuse desk) are notified together; what an override replaces was
    removed before (``apply_overrides``). Within a role only the best-evidenced tier is kept, so
    one weak contact does not ride along with a well-evidenced one. Registrar and national CERT
    are fallbacks, in order.
    """

    def best_tier(role_contacts: list[Contact]) -> list[Contact]:
        if not role_contacts:
            return []
        top = max(c.confidence for c in role_contacts)
        return [c for c in role_contacts if c.confidence >= top - 0.15]

    by_role = {role: [c for c in contacts if c.role == role] for role in Role}
    recipients = (
        by_role[Role.OVERRIDE] + best_tier(by_role[Role.OWNER]) + best_tier(by_role[Role.NETWORK])
    )
    fallbacks = best_tier(by_role[Role.REGISTRAR]) + by_role[Role.NATIONAL_CERT][:1]
    return tuple(recipients), tuple(fallbacks)
