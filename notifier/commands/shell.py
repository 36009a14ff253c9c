"""What every ``notify`` command shares: the consoles, the common options, and how a library
error becomes one plain line on standard error and an exit status."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ..config import Settings, load_settings
from ..errors import ConfigError, NotifierError, exit_code

__all__ = ["ConfigOption", "JsonOption", "err", "fail", "out", "run", "settings_from"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML configuration (default: $NOTIFY_CONFIG, else built-ins)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"notify: {message}", markup=False)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the library call; turn our errors into one line and an exit status."""
    try:
        return asyncio.run(coro)
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))
    except KeyboardInterrupt as exc:
        fail("interrupted; everything sent so far is in the audit log", exit_code(exc))


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(str(exc), 2)
