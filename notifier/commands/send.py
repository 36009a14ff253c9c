"""``notify send``: one finding, resolved, rendered, delivered and logged."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

import typer

from ..models import DeliveryStatus, Finding
from ..pipeline import Notifier, SendResult
from ..sources.rdns import clean_hostname
from .resolve import print_resolution, resolution_json
from .shell import ConfigOption, JsonOption, err, fail, out, run, settings_from

__all__ = ["held_summary", "register"]


def print_send(result: SendResult, dry_run: bool) -> None:
    if result.resolution is not None:
        print_resolution(result.resolution)
    if dry_run:
        for message in result.messages:
            out.rule(f"message to {message.recipient} (dry run: not sent)")
            out.print(message.raw.decode("utf-8", "replace").replace("\r\n", "\n"), markup=False)
    for d in result.deliveries:
        detail = f" ({d.smtp_code} {d.smtp_reply})" if d.smtp_code else ""
        tries = f", {d.attempts} attempts" if d.attempts > 1 else ""
        why = f" - {d.reason}" if d.reason and d.status in _EXPLAINED else ""
        out.print(f"{d.status:>13}  {d.recipient}{detail}{tries}{why}", markup=False)
    for channel, path in result.manual:
        out.print(f"{'manual step':>13}  {channel}: report ready at {path}", markup=False)
    if not result.deliveries:
        err.print(
            "notify: no contact found for this address, not even a national CERT", markup=False
        )


# statuses whose line says why nothing was sent
_EXPLAINED = (
    DeliveryStatus.HELD_BACK,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.IN_DOUBT,
    DeliveryStatus.IN_FLIGHT,
)


def held_summary(reasons: list[str]) -> str:
    """One line: how many messages a limit held back, and which limits."""
    counts: dict[str, int] = {}
    for reason in reasons:
        limit = reason.removeprefix("held back: ").split(" (")[0]
        counts[limit] = counts.get(limit, 0) + 1
    why = "; ".join(f"{limit}: {n}" for limit, n in counts.items())
    total = len(reasons)
    noun = "message" if total == 1 else "messages"
    return f"{total} {noun} held back ({why}); nothing failed: run again later to send the rest"


def send_json(result: SendResult) -> dict[str, Any]:
    return {
        **(resolution_json(result.resolution) if result.resolution else {}),
        "deliveries": [
            {
                "recipient": d.recipient,
                "status": str(d.status),
                "role": str(d.role or ""),
                "smtp_code": d.smtp_code,
                "smtp_reply": d.smtp_reply,
                "attempts": d.attempts,
                "message_id": d.message_id,
                "digest": d.digest,
                "reason": d.reason,
            }
            for d in result.deliveries
        ],
        "held_back": len(result.held_back),
        "manual_steps": [{"channel": c, "report": p} for c, p in result.manual],
        "exit": result.exit_code,
    }


def send(
    ip: Annotated[str, typer.Argument(help="The exposed address (IPv4 or IPv6).")],
    finding: Annotated[
        str, typer.Option(help="What was seen: the exposure, never its contents.")
    ] = "A service reachable from the internet without access control",
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port of the service.")] = None,
    hostname: Annotated[str | None, typer.Option(help="Host name seen on the service.")] = None,
    service: Annotated[
        str | None, typer.Option(help="The exposed product (redis, mongodb...): picks the guide.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Template name in templates/.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and print; send nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send even if already sent or in doubt.")
    ] = False,
    test_recipient: Annotated[
        str | None, typer.Option(help="Send to this address instead.")
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Resolve the owner of IP, render the disclosure, deliver it, and log every step."""
    settings = settings_from(config)

    async def go() -> SendResult:
        async with Notifier(settings) as notifier:
            address = notifier.target(ip)
            item = Finding(
                address,
                finding,
                port=port,
                hostname=hostname,
                observed_at=datetime.now().astimezone(),
                service=service.strip().lower() if service else None,
            )
            return await notifier.send(
                [item],
                template=template,
                dry_run=dry_run,
                force=force,
                test_recipient=test_recipient,
            )

    if not finding.strip():
        fail("--finding must describe the exposure")
    if service is not None and not re.fullmatch(
        r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", service.strip()
    ):
        fail(f"--service is not a service name (e.g. redis): {service!r}")
    if hostname is not None and clean_hostname(hostname) is None:
        # it is looked up and printed back: only a real host name goes on
        fail(f"--hostname is not a host name: {hostname!r}")
    result = run(go())
    if json_output:
        print(json.dumps(send_json(result), indent=2))
    else:
        print_send(result, dry_run)
    if result.held_back:
        err.print(f"notify: {held_summary([d.reason for d in result.held_back])}", markup=False)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(send)
