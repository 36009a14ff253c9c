"""``notify resolve``: who would be written to, and why; also the resolution's text and JSON
forms that ``send`` prints too."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ..models import ChannelKind, Resolution
from ..pipeline import Notifier, channel_record, contact_record
from .shell import ConfigOption, JsonOption, out, run, settings_from

__all__ = ["print_resolution", "register", "resolution_json"]


def _contact_lines(resolution: Resolution) -> list[str]:
    lines = []
    for use, contacts in (("notify", resolution.recipients), ("fallback", resolution.fallbacks)):
        for c in contacts:
            guessed = ", guessed: no source published it" if "guessed" in c.provenance else ""
            lines.append(f"{use:<9}{c.address}  [{c.role}, confidence {c.confidence:.2f}{guessed}]")
            lines += [f"{'':<11}{why}" for why in c.provenance or c.sources if why != "guessed"]
    return lines


def _channel_lines(resolution: Resolution) -> list[str]:
    """Non-mail channels, as the manual steps they are."""
    asks = {
        ChannelKind.WEB: "asks for reports at",
        ChannelKind.PHONE: "gives a phone number:",
        ChannelKind.OTHER: "gives another contact:",
    }
    lines = []
    for ch in resolution.channels:
        party = "the operator's override" if ch.role == "override" else f"the {ch.role}"
        lines.append(f"manual   {party} {asks[ch.kind]} {ch.uri}  (not sent by notify)")
        lines += [f"{'':<11}{why}" for why in ch.provenance]
    return lines


def _hint_lines(resolution: Resolution) -> list[str]:
    lines = []
    for h in resolution.hints:
        state = "confirmed" if h.confirmed else "unconfirmed, low confidence, not used"
        lines.append(f"hint     {h.name}  [{h.source}; {state}]  {h.reason}".rstrip())
    return lines


def resolution_json(resolution: Resolution) -> dict[str, Any]:
    network = resolution.network
    return {
        "ip": str(resolution.target.ip),
        "contacts": [
            {**contact_record(c), "use": use, "guessed": "guessed" in c.provenance}
            for use, group in (
                ("notify", resolution.recipients),
                ("fallback", resolution.fallbacks),
            )
            for c in group
        ],
        "network": None
        if network is None
        else {
            "registry": network.registry,
            "handle": network.handle,
            "name": network.name,
            "cidrs": list(network.cidrs),
            "country": network.country,
            "org": network.org,
            "asn": network.asn,
        },
        "hostnames": list(resolution.hostnames),
        "notes": list(resolution.notes),
        "errors": [{"source": s, "error": e} for s, e in resolution.errors],
        "channels": [channel_record(c) for c in resolution.channels],
        "hints": [
            {
                "name": h.name,
                "source": h.source,
                "confirmed": h.confirmed,
                "confidence": "high" if h.confirmed else "low",
                "reason": h.reason,
            }
            for h in resolution.hints
        ],
    }


def print_resolution(resolution: Resolution) -> None:
    network = resolution.network
    if network:
        out.print(
            f"network  {', '.join(network.cidrs) or network.handle}  {network.name}  "
            f"{network.org}  country {network.country or '?'}  ({network.registry})",
            markup=False,
        )
    if resolution.hostnames:
        out.print(f"names    {', '.join(resolution.hostnames)}", markup=False)
    for line in _hint_lines(resolution):
        out.print(line, markup=False)
    if resolution.contacts:
        for line in _contact_lines(resolution):
            out.print(line, markup=False)
    else:
        out.print("no contact found", markup=False)
    for line in _channel_lines(resolution):
        out.print(line, markup=False)
    for note in resolution.notes:
        out.print(f"  note: {note}", markup=False)
    for source, error in resolution.errors:
        out.print(f"  {source} failed: {error}", markup=False)


def resolve(
    ip: Annotated[str, typer.Argument(help="The exposed address (IPv4 or IPv6).")],
    hostname: Annotated[
        list[str] | None, typer.Option(help="A host name seen on the service.")
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print the contacts `send` would use, with where each came from. Sends nothing."""
    settings = settings_from(config)

    async def go() -> Resolution:
        async with Notifier(settings) as notifier:
            return await notifier.resolve(ip, hostname or [])

    resolution = run(go())
    if json_output:
        print(json.dumps(resolution_json(resolution), indent=2))
    else:
        print_resolution(resolution)


def register(app: typer.Typer) -> None:
    app.command()(resolve)
