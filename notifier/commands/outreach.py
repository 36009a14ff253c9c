"""``notify manual list|done`` and ``notify letter``: channels beyond e-mail."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..errors import NotifierError, exit_code
from ..ledger import normalise_case, open_ledger
from ..sources import utcnow
from .shell import ConfigOption, fail, out, settings_from

__all__ = ["manual_app", "letter", "register"]

manual_app = typer.Typer(
    help="Reports waiting to be submitted by hand (web forms, phone lines).", no_args_is_help=True
)


@manual_app.command("list")
def manual_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show the manual steps still pending: the channel, and the report to submit there."""
    from ..outreach.manual import pending

    settings = settings_from(config)
    steps = pending(open_ledger(settings, clock=utcnow))
    if as_json:
        print(json.dumps([asdict(step) for step in steps], indent=2))
        return
    if not steps:
        out.print("no manual steps pending", markup=False)
        return
    numbers: dict[str, int] = {}
    for step in steps:
        numbers[step.case] = numbers.get(step.case, 0) + 1
        out.print(
            f"{step.case} #{numbers[step.case]}  {step.kind:<5}  {step.channel}\n"
            f"    report: {step.report}  (since {step.since[:16]})",
            markup=False,
        )


@manual_app.command("done")
def manual_done(
    ref: Annotated[str, typer.Argument(help="The case reference, e.g. NTF-LVHKVXFEU7.")],
    channel: Annotated[str, typer.Argument(help="The channel's URI, or its # from 'list'.")],
    note: Annotated[str, typer.Option(help="What was submitted, a ticket number...")] = "",
    config: ConfigOption = None,
) -> None:
    """Record that the report for CHANNEL of case REF was submitted by hand."""
    from ..outreach.manual import mark_done

    settings = settings_from(config)
    case = normalise_case(ref)
    step = mark_done(open_ledger(settings, clock=utcnow), case, channel.strip(), note)
    if step is None:
        fail(f"no pending manual step for case {case} and channel {channel!r} (see: manual list)")
    out.print(f"{step.case}: submission through {step.channel} recorded", markup=False)


def letter(
    ref: Annotated[str, typer.Argument(help="The case reference, e.g. NTF-LVHKVXFEU7.")],
    to: Annotated[
        list[str] | None,
        typer.Option("--to", help="An address line (repeat per line); default: the registry's."),
    ] = None,
    name: Annotated[str, typer.Option(help="The addressee (default: the registry's).")] = "",
    out_path: Annotated[
        Path | None, typer.Option("--out", help="PDF file (default: <state>/letters/REF.pdf).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Render a printable PDF letter about case REF to a postal address, and log it."""
    from ..outreach.letter import write_letter

    settings = settings_from(config)
    try:
        path, digest, content = write_letter(
            settings, normalise_case(ref), to=to or (), name=name, out=out_path, clock=utcnow
        )
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))
    except OSError as exc:
        fail(f"cannot write the letter: {exc.strerror or exc}")
    out.print(f"letter for {content.case_ref} written to {path} (sha256 {digest})", markup=False)
    for line in (content.recipient_name, *content.address):
        out.print(f"    {line}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(manual_app, name="manual")
    app.command()(letter)
