"""``notify``: the command line, a thin shell over the library.

Parse, call ``notifier``, render. Each command lives in a module of ``notifier/commands/`` and is
registered here. A ``NotifierError`` becomes one plain line on standard error and an exit status:
2 for bad input or configuration, 1 for a failed delivery or a broken log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from .commands import (
    batch,
    cases,
    contacts,
    db,
    followups,
    log,
    outreach,
    resolve,
    send,
    templates,
)
from .commands.shell import err, fail, out, run
from .errors import EXIT_BAD_INPUT, EXIT_OK, NotifierError, exit_code

__all__ = ["app", "main"]

app = typer.Typer(
    help="notifier: find who owns an exposed address and tell them, with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the order here is the order of `notify --help`
for module in (resolve, send, batch, log, db, contacts):
    module.register(app)


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the demo's state in this folder.")] = None,
) -> None:
    """Run a complete disclosure offline against notifier's own loopback internet."""
    from .demo import run_demo

    if keep is not None and keep.exists() and not keep.is_dir():
        fail(f"--keep {keep}: exists and is not a folder")
    raise typer.Exit(run(run_demo(out, keep)))


for module in (cases, followups, outreach, templates):
    module.register(app)


def main() -> None:
    """Console entry point: one line for our errors; a traceback only with NOTIFY_DEBUG=1."""
    try:
        status = app(standalone_mode=False)
    except TyperException as exc:
        # a usage error (bad option value, unknown command) is one plain line, not a box;
        # bare `notify` prints the help
        message = exc.format_message()
        if message:
            err.print(message if "\n" in message else f"notify: {message}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except typer.Abort:
        err.print("notify: interrupted; everything sent so far is in the audit log", markup=False)
        sys.exit(130)
    except NotifierError as exc:
        err.print(f"notify: {exc}", markup=False)
        sys.exit(exit_code(exc))
    except Exception as exc:  # noqa: BLE001 - a bug must still not dump a traceback on a user
        if os.environ.get("NOTIFY_DEBUG"):
            raise
        err.print(
            f"notify: internal error: {type(exc).__name__}: {exc} "
            "(NOTIFY_DEBUG=1 shows the traceback)",
            markup=False,
        )
        sys.exit(exit_code(exc))
    sys.exit(status if isinstance(status, int) else EXIT_OK)
