"""``notify batch``: a scanner's output in, one message per contact out, with a live count."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, BinaryIO

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from ..batch import BatchCounts
from ..errors import EXIT_FAILED, EXIT_HELD_BACK, EXIT_OK, ConfigError
from ..intake import FORMATS
from ..pipeline import Notifier
from .send import held_summary
from .shell import ConfigOption, err, fail, out, run, settings_from

__all__ = ["register"]


def _summary_table(counts: BatchCounts, outcomes: dict[str, int]) -> Table:
    table = Table(title="notify batch", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    rows = [
        ("findings read", counts.read),
        ("bad input lines", counts.problems),
        ("refused targets", counts.refused),
        ("duplicates", counts.duplicates),
        ("distinct addresses", counts.addresses),
        ("recipients", counts.recipients),
        ("messages sent", counts.sent),
        ("messages failed", counts.failed),
        ("messages skipped", counts.skipped),
        ("messages held back", counts.held_back),
    ]
    rows += [(f"findings {status}", n) for status, n in sorted(outcomes.items())]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def batch(
    file: Annotated[str, typer.Argument(help="Scanner output, or - for standard input.")] = "-",
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"Force a format: {', '.join(FORMATS)}.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Template name in templates/.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render; send nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send even if already sent or in doubt.")
    ] = False,
    test_recipient: Annotated[
        str | None, typer.Option(help="Send every message here instead.")
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Raise the per-run message cap.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON line per finding outcome.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Many findings at once: one message per contact listing all of that contact's findings."""
    from ..batch import Batch, FindingOutcome
    from ..cache import LookupCache
    from ..intake import InputProblem, read_findings

    settings = settings_from(config)
    try:
        read_findings(io.BytesIO(b""), fmt=fmt)  # an unknown --format fails before any input
    except ConfigError as exc:
        fail(str(exc))
    if file == "-":
        stream: BinaryIO = sys.stdin.buffer
    else:
        try:
            stream = open(file, "rb")  # noqa: SIM115 - closed below, after the run
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
    outcomes: dict[str, int] = {}
    live = sys.stderr.isatty() and not json_output

    def on_outcome(outcome: FindingOutcome) -> None:
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
        if json_output:
            print(json.dumps(outcome.as_dict(), ensure_ascii=False), flush=True)
        elif outcome.status in ("bad-input", "refused"):
            err.print(f"notify: {outcome.reason}", markup=False)

    async def go() -> BatchCounts:
        cache = LookupCache.from_settings(settings)
        try:
            async with Notifier(settings, cache=cache) as notifier:
                if max_messages:
                    notifier.max_messages = max_messages
                with _progress(live) as update:
                    runner = Batch(
                        notifier,
                        template=template,
                        dry_run=dry_run,
                        force=force,
                        test_recipient=test_recipient,
                        on_progress=update,
                        on_outcome=on_outcome,
                    )
                    for item in read_findings(stream, fmt=fmt):
                        if isinstance(item, InputProblem):
                            runner.problem(item.line, item.message)
                        else:
                            await runner.submit(item)
                    await runner.flush()
                manual.extend(runner.result.manual)
                return runner.counts
        finally:
            cache.close()

    manual: list[tuple[str, str]] = []
    try:
        counts = run(go())
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    (err if json_output else out).print(_summary_table(counts, outcomes))
    if counts.read == 0:
        # a pipeline must tell bad input from "nothing new": no finding at all is bad input
        why = (
            f"all {counts.problems} lines were malformed"
            if counts.problems
            else "the input is empty or holds only comments"
        )
        fail(f"no finding in {'standard input' if file == '-' else file}: {why}")
    if manual:
        (err if json_output else out).print(
            f"{len(manual)} reports prepared for web forms and phone lines: notify manual list",
            markup=False,
        )
    if counts.held_back:
        reasons = [r for r, n in counts.held_reasons.items() for _ in range(n)]
        err.print(f"notify: {held_summary(reasons)}", markup=False)
    if outcomes.get("failed"):
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_HELD_BACK if counts.held_back else EXIT_OK)


@contextmanager
def _progress(live: bool) -> Iterator[Callable[[BatchCounts], None]]:
    """A progress bar with counts on a terminal; nothing in a pipe."""
    if not live:
        yield lambda counts: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("resolving", total=None, counts="")

        def update(c: BatchCounts) -> None:
            sending = c.queued > 0
            progress.update(
                task,
                description="sending" if sending else "resolving",
                total=max(c.queued, c.recipients, 1) if sending else max(c.addresses, 1),
                completed=c.sent + c.failed + c.skipped + c.held_back if sending else c.resolved,
                counts=f"read {c.read}  resolved {c.resolved}/{c.addresses}  queued {c.queued}"
                f"  sent {c.sent}  failed {c.failed}",
            )

        yield update


def register(app: typer.Typer) -> None:
    app.command()(batch)
