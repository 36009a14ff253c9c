"""The README and --help stay in step with the commands; the public API is what it says."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import notifier
from notifier.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
runner = CliRunner()


def commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    found: list[list[str]] = []
    for name, command in getattr(group, "commands", {}).items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found += [[name, sub] for sub in subcommands]
        else:
            found.append([name])
    return found


class TestDocs:
    @pytest.mark.parametrize("words", commands(), ids=lambda w: " ".join(w))
    def test_every_command_is_in_the_readme_and_has_help(self, words: list[str]) -> None:
        """A command missing from the README, or without help text, fails here."""
        assert f"notify {' '.join(words)}" in README
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0
        assert len(result.stdout.strip()) > 40

    def test_first_screen_has_the_two_setup_commands(self) -> None:
        """The README opens with the install-and-demo command and the test command."""
        first_screen = "\n".join(README.splitlines()[:15])
        assert "pip install . && .venv/bin/notify demo" in first_screen
        assert ".venv/bin/pytest" in first_screen


class TestPublicAPI:
    def test_all_matches_exports(self) -> None:
        """Everything in notifier.__all__ exists, and every public module declares __all__."""
        for name in notifier.__all__:
            assert hasattr(notifier, name), name
        for info in pkgutil.walk_packages(notifier.__path__, "notifier."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            exported = getattr(module, "__all__", None)
            assert exported is not None, f"{info.name} has no __all__"
            for name in exported:
                assert hasattr(module, name), f"{info.name}.{name}"
