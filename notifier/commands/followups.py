"""``notify ack``, ``followup``, ``bounces``, ``suppress``: what happens after the first message."""

# no ``from __future__ import annotations``: typer reads the options from the annotations at
# run time

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import EXIT_FAILED, EXIT_HELD_BACK, EXIT_OK, NotifierError, exit_code
from ..pipeline import Notifier
from ..sources import utcnow
from .shell import ConfigOption, JsonOption, err, fail, out, run, settings_from

__all__ = ["register"]


def _status(actions: list[Any]) -> int:
    """1 when a case has nobody left, 3 when a sending limit deferred one, else 0."""
    if any(a.failed for a in actions):
        return EXIT_FAILED
    if any(str(getattr(a, "status", getattr(a, "outcome", ""))) == "deferred" for a in actions):
        return EXIT_HELD_BACK
    return EXIT_OK


def _followup_json(action: Any) -> dict[str, Any]:
    return {
        "case": action.case,
        "ips": list(action.ips),
        "status": str(action.status),
        "level": action.level,
        "recipients": list(action.recipients),
        "reason": action.reason,
        "last_notice": action.last_notice.isoformat(),
        "deliveries": [
            {
                "recipient": d.recipient,
                "status": str(d.status),
                "message_id": d.message_id,
                "smtp_code": d.smtp_code,
            }
            for d in action.deliveries
        ],
    }


def register(app: typer.Typer) -> None:

    # -- escalation over time ---------------------------------------------------------------------

    @app.command()
    def ack(
        ref: Annotated[str, typer.Argument(help="The case reference, e.g. NTF-LVHKVXFEU7.")],
        note: Annotated[str, typer.Option(help="What the owner said or did.")] = "",
        config: ConfigOption = None,
    ) -> None:
        """Record that the owner answered or fixed it: no further follow-ups for REF."""
        from ..cases.followup import ack as record_ack

        settings = settings_from(config)
        try:
            record = record_ack(settings, ref, note=note)
        except NotifierError as exc:
            fail(str(exc), exit_code(exc))
        out.print(f"{record.get('case', ref)} acknowledged; no further follow-ups", markup=False)

    @app.command()
    def followup(
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show what is due; send nothing.")
        ] = False,
        json_output: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Escalate unacknowledged cases older than [followup] after_days a rung up (cron)."""
        from ..cases.followup import FollowupAction
        from ..cases.followup import followup as run_followup

        settings = settings_from(config)

        async def go() -> list[FollowupAction]:
            async with Notifier(settings) as notifier:
                return await run_followup(notifier, now=utcnow(), dry_run=dry_run)

        actions = run(go())
        if json_output:
            print(json.dumps([_followup_json(a) for a in actions], indent=2))
        elif not actions:
            out.print("nothing due", markup=False)
        for a in [] if json_output else actions:
            to = ", ".join(a.recipients) or "-"
            out.print(f"{a.case}  {a.status:<9} {a.level or '-':<8} {to}  {a.reason}", markup=False)
        raise typer.Exit(_status(actions))

    @app.command()
    def bounces(
        path: Annotated[Path, typer.Argument(help="A Maildir folder or an mbox file of bounces.")],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Match and report; record nothing.")
        ] = False,
        json_output: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Read delivery status notifications, log each bounce, and fall back as a 5xx would."""
        from ..cases.bounces import BounceAction, process_bounces

        settings = settings_from(config)

        async def go() -> list[BounceAction]:
            async with Notifier(settings) as notifier:
                return await process_bounces(notifier, path, dry_run=dry_run)

        actions = run(go())
        counts: dict[str, int] = {}
        for a in actions:
            counts[str(a.outcome)] = counts.get(str(a.outcome), 0) + 1
            if json_output:
                print(
                    json.dumps(
                        {
                            "outcome": str(a.outcome),
                            "recipient": a.recipient,
                            "status": a.status,
                            "case": a.case,
                            "message_id": a.message_id,
                            "matched_by": a.matched_by,
                            "reason": a.reason,
                        }
                    )
                )
            else:
                out.print(
                    f"{a.outcome:<15} {a.recipient}  {a.status}  {a.case}  {a.reason}", markup=False
                )
        summary = (
            ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no reports"
        )
        (err if json_output else out).print(summary, markup=False)
        raise typer.Exit(_status(actions))

    # -- suppression ------------------------------------------------------------------------------

    @app.command()
    def suppress(
        address: Annotated[
            str, typer.Argument(help="Address (or @domain) never to write to again.")
        ],
        reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
        config: ConfigOption = None,
    ) -> None:
        """Never write to ADDRESS again: recorded in the audit log, honoured by every command."""
        settings = settings_from(config)

        async def go() -> None:
            async with Notifier(settings) as notifier:
                notifier.suppress(address, reason)

        run(go())
        out.print(f"suppressed {address}", markup=False)
