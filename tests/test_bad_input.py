"""Bad input found by trying the tool as a new user would: one plain line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app

runner = CliRunner()


def notify(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as a shell would run it (usage errors included)."""
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("args", "says"),
        [
            (["send", "74.125.225.229", "--port", "99999"], "--port"),
            (["send", "74.125.225.229", "--port", "x"], "--port"),
            (["sned", "74.125.225.229"], "No such command"),
            (["batch", "--max-messages", "0"], "--max-messages"),
        ],
    )
    def test_one_plain_line_not_a_box(self, tmp_path: Path, args: list[str], says: str) -> None:
        """A bad option value or command is one line naming it, exit 2, no box, no traceback."""
        result = notify(*args, cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("notify: ") and says in lines[0]
        assert "╭" not in result.stderr and "Traceback" not in result.stderr

    def test_help_still_exits_0(self, tmp_path: Path) -> None:
        """--help is not an error."""
        result = notify("send", "--help", cwd=tmp_path)
        assert result.returncode == 0 and "--finding" in result.stdout


class TestNamedLimits:
    def test_bad_template_name_is_bad_input_before_any_lookup(self, tmp_path: Path) -> None:
        """A --template naming no frame exits 2 and lists the frames, before anything is asked."""
        result = runner.invoke(
            app, ["send", "74.125.225.229", "--finding", "x", "--template", "nope", "--dry-run"]
        )
        assert result.exit_code == 2
        assert "no template 'nope'" in result.stderr and "owner" in result.stderr

    def test_batch_bad_template_name(self, tmp_path: Path) -> None:
        """batch refuses an unknown --template the same way."""
        data = tmp_path / "in.txt"
        data.write_text("74.125.225.229\n")
        result = runner.invoke(app, ["batch", str(data), "--template", "nope", "--dry-run"])
        assert result.exit_code == 2
        assert "no template 'nope'" in result.stderr

    def test_demo_keep_onto_a_file(self, tmp_path: Path) -> None:
        """demo --keep onto an existing file is one line, exit 2."""
        target = tmp_path / "existing"
        target.write_text("x")
        result = runner.invoke(app, ["demo", "--keep", str(target)])
        assert result.exit_code == 2
        assert "exists and is not a folder" in result.stderr
        assert "internal error" not in result.stderr


class TestEmptyBatch:
    @pytest.mark.parametrize(
        ("content", "says"),
        [
            ("", "empty or holds only comments"),
            ("# a comment\n\n", "empty or holds only comments"),
            ("not-an-address\nalso-not\n", "all 2 lines were malformed"),
        ],
    )
    def test_no_finding_at_all_is_bad_input(self, tmp_path: Path, content: str, says: str) -> None:
        """A batch whose input yields no finding exits 2 with the reason: a pipeline can tell
        bad input from nothing new."""
        data = tmp_path / "in.txt"
        data.write_text(content)
        config = tmp_path / "c.toml"
        config.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n')
        result = runner.invoke(app, ["batch", str(data), "--dry-run", "--config", str(config)])
        assert result.exit_code == 2
        assert says in result.stderr


class TestPlainAuth:
    def _config(self, tmp_path: Path, extra: str) -> Path:
        path = tmp_path / "c.toml"
        path.write_text(f'[smtp]\nusername = "me"\n{extra}\n')
        return path

    def test_clear_password_to_another_host_is_refused(self, tmp_path: Path) -> None:
        """SMTP AUTH without TLS to a host that is not loopback is refused at load, exit 2."""
        config = self._config(tmp_path, 'host = "mail.example.net"')
        result = runner.invoke(app, ["resolve", "74.125.225.229", "--config", str(config)])
        assert result.exit_code == 2
        assert "refusing SMTP AUTH without TLS to mail.example.net" in result.stderr

    @pytest.mark.parametrize(
        "extra",
        [
            'host = "127.0.0.1"',
            'host = "localhost"',
            'host = "mail.example.net"\nsecurity = "starttls"',
            'host = "mail.example.net"\nallow_plain_auth = true',
        ],
    )
    def test_allowed_cases(self, tmp_path: Path, extra: str) -> None:
        """Loopback, TLS, or an explicit allow_plain_auth load without complaint."""
        from notifier.config import load_settings

        settings = load_settings(self._config(tmp_path, extra))
        assert settings.smtp.username == "me"
