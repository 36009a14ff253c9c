"""``notify cases`` and ``notify case REF``: review what happened to every disclosure."""

# no ``from __future__ import annotations``: typer reads the options from the annotations at
# run time

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..cases import CaseFilter, chosen, summaries, summary, timeline
from ..cases.page import case_page
from ..cases.review import STATES
from ..errors import NotifierError, exit_code
from ..ledger import open_ledger
from ..sources import utcnow
from .shell import ConfigOption, JsonOption, fail, out, settings_from

__all__ = ["register"]


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment else ""


def register(app: typer.Typer) -> None:

    @app.command("cases")
    def cases(
        state: Annotated[
            str | None, typer.Option(help=f"Only cases in this state: {', '.join(STATES)}.")
        ] = None,
        ip: Annotated[str | None, typer.Option(help="Only cases about this address.")] = None,
        recipient: Annotated[
            str | None, typer.Option(help="Only cases written to this address.")
        ] = None,
        since: Annotated[
            str | None, typer.Option(help="Only cases with activity at or after (ISO date).")
        ] = None,
        json_output: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """List cases with their state, recipients and next follow-up (JSON lines with --json)."""
        settings = settings_from(config)
        if state is not None and state not in STATES:
            fail(f"--state must be one of {', '.join(STATES)}, not {state!r}")
        when = None
        if since:
            try:
                when = datetime.fromisoformat(since)
            except ValueError:
                fail(f"--since is not an ISO date: {since!r}")
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        where = CaseFilter(state=state, ip=ip, recipient=recipient, since=when)
        try:
            model = open_ledger(settings, clock=utcnow).view().refresh()
        except NotifierError as exc:
            fail(str(exc), exit_code(exc))
        found = summaries(model, after_days=settings.followup.after_days, where=where)
        if json_output:
            for item in found:
                print(json.dumps(item.as_dict(), ensure_ascii=False))
            return
        if not found:
            out.print("no cases", markup=False)
            return
        table = Table()
        for column in ("case", "state", "addresses", "recipients", "last notice", "follow-up"):
            table.add_column(column)
        for s in found:
            table.add_row(
                s.ref,
                s.state,
                ", ".join(s.ips[:3]) + (f" +{len(s.ips) - 3}" if len(s.ips) > 3 else ""),
                "\n".join(f"{r} ({role}): {status}" for r, role, status in s.messages),
                _when(s.last_notice),
                "acknowledged" if s.acked_at else _when(s.next_followup),
            )
        out.print(table)

    @app.command("case")
    def case(
        ref: Annotated[str, typer.Argument(help="The case reference, e.g. NTF-3KQ7ZD2M4A.")],
        html: Annotated[
            Path | None,
            typer.Option("--html", help="Write a self-contained HTML page of the case here."),
        ] = None,
        json_output: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """One case's timeline, recipients and proof; --html writes a page to hand on."""
        settings = settings_from(config)
        try:
            ledger = open_ledger(settings, clock=utcnow)
            model = ledger.view().refresh()
        except NotifierError as exc:
            fail(str(exc), exit_code(exc))
        found = model.case(ref)
        if found is None:
            fail(f"no case {ref!r} in the audit log (see notify cases)")
        after = settings.followup.after_days
        if html is not None:
            page = case_page(
                ledger,
                model,
                found,
                after_days=after,
                sender=settings.sender.address,
                now=utcnow(),
            )
            try:
                html.write_text(page, encoding="utf-8")
            except OSError as exc:
                fail(f"cannot write {html}: {exc.strerror}")
            out.print(f"wrote {html}", markup=False)
            return
        lines = timeline(found)
        if json_output:
            print(
                json.dumps(
                    {
                        **summary(found, after_days=after).as_dict(),
                        "chosen": [c.as_dict() for c in chosen(model, found)],
                        "timeline": [t.as_dict() for t in lines],
                    },
                    ensure_ascii=False,
                )
            )
            return
        s = summary(found, after_days=after)
        out.print(f"case {s.ref}: {s.state}; addresses {', '.join(s.ips)}", markup=False)
        if s.next_followup:
            out.print(f"next follow-up due {_when(s.next_followup)}", markup=False)
        for c in chosen(model, found):
            why = "; ".join(c.provenance) or ", ".join(c.sources) or "no resolution recorded"
            out.print(f"  {c.address} ({c.role}): {why}", markup=False)
        table = Table()
        for column in ("line", "time", "event", "what happened"):
            table.add_column(column)
        for t in lines:
            table.add_row(str(t.seq or ""), t.time, t.event, t.text)
        out.print(table)
