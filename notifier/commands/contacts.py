"""``notify contacts check``: validate a contacts.yaml before it is used."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .shell import err, out

__all__ = ["register"]

contacts_app = typer.Typer(help="Check a contacts.yaml file.", no_args_is_help=True)


@contacts_app.command("check")
def contacts_check(
    file: Annotated[Path, typer.Argument(help="A contacts.yaml to validate.")],
) -> None:
    """Validate a contacts file: schema, addresses, CIDR/ASN/domain keys, with line numbers."""
    from ..contacts import check_file

    problems = check_file(file)
    for p in problems:
        err.print(f"{file}:{p.line}:{p.column}: {p.message}", markup=False)
    if problems:
        raise typer.Exit(2)
    out.print(f"{file}: ok", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(contacts_app, name="contacts")
