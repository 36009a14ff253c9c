"""``notify db init|migrate``: the PostgreSQL store's schema."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import NotifierError, exit_code
from .shell import ConfigOption, fail, out, settings_from

__all__ = ["register"]

db_app = typer.Typer(help="Create and upgrade the PostgreSQL schema.", no_args_is_help=True)


@db_app.command("init")
def db_init(config: ConfigOption = None) -> None:
    """Create the schema in the database named by ``[state] url``."""
    _db(config, initial=True)


@db_app.command("migrate")
def db_migrate(config: ConfigOption = None) -> None:
    """Upgrade the database's schema to this version of notify."""
    _db(config, initial=False)


def _db(config: Path | None, *, initial: bool) -> None:
    from ..ledger.pg import setup

    settings = settings_from(config)
    if not settings.state.url:
        fail('no database configured: set [state] url = "postgresql://..."')
    try:
        out.print(setup(settings.state.url, initial=initial), markup=False)
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
