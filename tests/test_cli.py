"""The `notify` command line: interfaces.md's commands, exit statuses and one-line errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.testing import Sandbox

runner = CliRunner()


def notify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a real process, as a user or a pipeline runs it."""
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def invoke(*args: str) -> tuple[int, str, str]:
    """The CLI in-process, off the event loop the sandbox's servers run on."""
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config(sandbox: Sandbox) -> str:
    return str(sandbox.write_config())


class TestBadInput:
    @pytest.mark.parametrize(
        ("target", "says"),
        [
            ("10.1.2.3", "private"),
            ("127.0.0.1", "loopback"),
            ("192.0.2.7", "documentation"),
            ("2001:db8::1", "documentation"),
            ("224.0.0.1", "multicast"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("240.0.0.1", "reserved"),
            ("999.1.1.1", "not an IP address"),
            ("example.org", "not an IP address"),
            ("", "not an IP address"),
        ],
    )
    def test_refused_targets_exit_2_with_one_line(self, target: str, says: str) -> None:
        """Anything but a globally routable address is refused: one line, exit 2, no traceback."""
        result = runner.invoke(app, ["send", target, "--finding", "x"])
        assert result.exit_code == 2
        assert says in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr

    def test_unknown_config_key_names_the_key(self, tmp_path: Path) -> None:
        """An unknown key is refused with its dotted name."""
        path = tmp_path / "c.toml"
        path.write_text("[smtp]\nhots = 'x'\n")
        result = runner.invoke(app, ["resolve", "8.8.8.8", "--config", str(path)])
        assert result.exit_code == 2
        assert "unknown key smtp.hots" in result.stderr

    def test_wrong_type_names_the_key(self, tmp_path: Path) -> None:
        """A wrong type is refused with the key and why."""
        path = tmp_path / "c.toml"
        path.write_text("[smtp]\nport = 'twenty-five'\n")
        result = runner.invoke(app, ["resolve", "8.8.8.8", "--config", str(path)])
        assert result.exit_code == 2
        assert "smtp.port" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_bad_enum_and_bad_toml(self, tmp_path: Path) -> None:
        """security must be none/starttls/tls; broken TOML is one line too."""
        path = tmp_path / "c.toml"
        path.write_text("[smtp]\nsecurity = 'ssl'\n")
        assert (
            "smtp.security"
            in runner.invoke(app, ["resolve", "8.8.8.8", "--config", str(path)]).stderr
        )
        path.write_text("[smtp\n")
        result = runner.invoke(app, ["resolve", "8.8.8.8", "--config", str(path)])
        assert result.exit_code == 2 and "not valid TOML" in result.stderr

    def test_missing_config_file(self, tmp_path: Path) -> None:
        """A config path that does not exist is an error, not the defaults."""
        result = runner.invoke(app, ["resolve", "8.8.8.8", "--config", str(tmp_path / "no.toml")])
        assert result.exit_code == 2 and "not found" in result.stderr

    def test_notify_config_variable_is_used(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --config, $NOTIFY_CONFIG names the file."""
        path = tmp_path / "c.toml"
        path.write_text("[bogus]\n")
        monkeypatch.setenv("NOTIFY_CONFIG", str(path))
        result = runner.invoke(app, ["resolve", "8.8.8.8"])
        assert result.exit_code == 2 and "unknown key bogus" in result.stderr

    def test_real_process_prints_no_traceback(self) -> None:
        """The installed command turns bad input into one line and exit 2."""
        result = notify("send", "10.0.0.1", "--finding", "open database")
        assert result.returncode == 2
        assert result.stderr.startswith("notify: refusing 10.0.0.1")
        assert "Traceback" not in result.stderr


class TestResolve:
    async def test_json_shape_of_interfaces_md(self, sandbox: Sandbox, config: str) -> None:
        """resolve --json prints {"ip", "contacts": [{"address", "sources"}...]}."""
        code, stdout, _ = await invoke("resolve", "127.1.0.10", "--json", "--config", config)
        assert code == 0
        data = json.loads(stdout)
        assert data["ip"] == "127.1.0.10"
        addresses = {c["address"]: c for c in data["contacts"]}
        assert addresses["security@health-dept.test"]["sources"] == ["security.txt"]
        assert addresses["abuse@telecom-in.test"]["sources"] == ["rdap"]
        assert addresses["incident@cert-in.org.in"]["use"] == "fallback"
        assert sandbox.smtp.messages == []

    async def test_table_shows_provenance(self, config: str) -> None:
        """The human view names each contact's role and why it was chosen."""
        code, stdout, _ = await invoke("resolve", "127.1.0.10", "--config", config)
        assert code == 0
        assert "abuse contact of 127.1.0.0/16, APNIC RDAP" in stdout
        assert "national CERT for IN" in stdout

    async def test_corpus_answers_replayed_through_the_sandbox(
        self, sandbox: Sandbox, config: str, corpus_dir: Path
    ) -> None:
        """A real captured RIPE answer, served on loopback, gives RIPE's abuse address."""
        answer = json.loads((corpus_dir / "rdap/ip/ripencc-62.239.237.1.json").read_text())
        sandbox.add_rdap("ripe", "62.239.0.0/16", answer)
        code, stdout, _ = await invoke("resolve", "62.239.237.1", "--json", "--config", config)
        assert code == 0
        contacts = json.loads(stdout)["contacts"]
        network = [c for c in contacts if c["role"] == "network"]
        assert network and all("rdap" in c["sources"] for c in network), stdout


class TestSend:
    async def test_send_delivers_and_logs(self, sandbox: Sandbox, config: str) -> None:
        """send exits 0 when every contact was reached; log verify then passes."""
        code, stdout, _ = await invoke(
            "send",
            "127.1.0.10",
            "--port",
            "9200",
            "--finding",
            "Elasticsearch on 9200 without authentication",
            "--config",
            config,
        )
        assert code == 0, stdout
        assert "delivered  security@health-dept.test" in stdout
        assert len(sandbox.smtp.messages) == 2
        code, stdout, _ = await invoke("log", "verify", "--config", config)
        assert code == 0 and "intact" in stdout

    async def test_second_send_says_already_sent(self, sandbox: Sandbox, config: str) -> None:
        """Idempotence: exit 0 and says so, no new message."""
        args = ("send", "127.2.0.20", "--finding", "open Redis", "--config", config)
        await invoke(*args)
        code, stdout, _ = await invoke(*args)
        assert code == 0 and "already-sent" in stdout
        assert len(sandbox.smtp.messages) == 1

    async def test_json_output(self, config: str) -> None:
        """send --json prints the contacts and each delivery's status."""
        code, stdout, _ = await invoke(
            "send", "127.4.0.40", "--finding", "open MongoDB", "--json", "--config", config
        )
        data = json.loads(stdout)
        assert [d["status"] for d in data["deliveries"]] == ["failed", "delivered"]
        assert data["deliveries"][0]["smtp_code"] == 550
        assert code == 0 and data["exit"] == 0

    async def test_dry_run_prints_the_message(self, sandbox: Sandbox, config: str) -> None:
        """--dry-run renders the message and sends nothing."""
        code, stdout, _ = await invoke(
            "send", "127.1.0.10", "--finding", "open Elasticsearch", "--dry-run", "--config", config
        )
        assert code == 0
        assert "Subject: [NTF-" in stdout and "dry run: not sent" in stdout
        assert sandbox.smtp.messages == []


class TestLog:
    async def _sent(self, config: str) -> Path:
        await invoke("send", "127.2.0.20", "--finding", "open Redis", "--config", config)
        text = Path(config).read_text()
        state = text.split('dir = "', 1)[1].split('"', 1)[0]
        return Path(state) / "audit.jsonl"

    async def test_show_table_and_json(self, config: str) -> None:
        """log show lists every record; --json prints one JSON object a line."""
        await self._sent(config)
        code, stdout, _ = await invoke("log", "show", "--config", config)
        assert code == 0 and "intent" in stdout and "outcome" in stdout
        code, stdout, _ = await invoke("log", "show", "--json", "--config", config)
        events = [json.loads(line)["event"] for line in stdout.splitlines()]
        assert events[:3] == ["resolution", "intent", "outcome"]

    async def test_verify_names_the_first_bad_line(self, config: str) -> None:
        """An edited line makes verify fail with that line's number."""
        log = await self._sent(config)
        lines = log.read_text().splitlines(keepends=True)
        lines[1] = lines[1].replace("abuse@cloud-eu.test", "abuse@elsewhere.test")
        log.write_text("".join(lines))
        code, _, stderr = await invoke("log", "verify", "--config", config)
        assert code == 1
        assert "line 2" in stderr

    async def test_show_message_prints_the_exact_bytes(self, sandbox: Sandbox, config: str) -> None:
        """log show --message ID prints the bytes the server received."""
        log = await self._sent(config)
        intent = next(json.loads(x) for x in log.read_text().splitlines() if '"intent"' in x)
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            ["log", "show", "--message", intent["message_id"], "--config", config],
        )
        assert result.stdout_bytes == sandbox.smtp.messages[0].raw


class TestDemo:
    def test_demo_runs_offline_and_succeeds(self, tmp_path: Path) -> None:
        """notify demo runs a complete disclosure on loopback and verifies the log."""
        result = notify("demo", "--keep", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert "delivered" in result.stdout and "intact" in result.stdout
        assert (tmp_path / "state" / "audit.jsonl").exists()


class TestContactsCheck:
    def test_shipped_file_is_valid(self) -> None:
        """The shipped contacts.yaml passes its own check."""
        path = Path(__file__).resolve().parents[1] / "contacts.yaml"
        result = runner.invoke(app, ["contacts", "check", str(path)])
        assert result.exit_code == 0

    def test_bad_file_reports_line_numbers(self, tmp_path: Path) -> None:
        """Problems are reported as FILE:LINE:COL with exit 2."""
        path = tmp_path / "c.yaml"
        path.write_text("certs:\n  IN: {name: X, email: not-an-address}\n")
        result = runner.invoke(app, ["contacts", "check", str(path)])
        assert result.exit_code == 2
        assert f"{path}:2:" in result.stderr


class TestSuppress:
    async def test_suppress_is_honoured_by_send(self, sandbox: Sandbox, config: str) -> None:
        """notify suppress @domain stops every message to that domain; nobody is told instead."""
        code, _, _ = await invoke(
            "suppress", "@cloud-eu.test", "--reason", "opt-out", "--config", config
        )
        assert code == 0
        code, stdout, _ = await invoke(
            "send", "127.2.0.20", "--finding", "open Redis", "--config", config
        )
        assert "suppressed" in stdout
        rcpts = [r for m in sandbox.smtp.messages for r in m.rcpt_tos]
        assert not any(r.endswith("@cloud-eu.test") for r in rcpts)
        assert rcpts == []  # an opted-out desk is no reason to write to its registrar
        assert code == 0

    def test_bad_address_is_exit_2(self) -> None:
        """A non-address is refused with one line."""
        result = runner.invoke(app, ["suppress", "nobody"])
        assert result.exit_code == 2 and "not an e-mail address" in result.stderr


class TestEscalationCommands:
    async def test_followup_climbs_to_the_national_cert(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """After the waiting period with no ack, the next rung gets a threaded follow-up."""
        config = str(sandbox.write_config(followup={"after_days": 1e-9}))
        await invoke("send", "127.1.0.10", "--finding", "open Elasticsearch", "--config", config)
        first = {m.message_id for m in sandbox.smtp.messages}
        code, stdout, _ = await invoke("followup", "--config", config)
        assert code == 0, stdout
        new = [m for m in sandbox.smtp.messages if m.message_id not in first]
        assert [m.rcpt_tos for m in new] == [("incident@cert-in.org.in",)]
        assert b"In-Reply-To:" in new[0].raw

    async def test_ack_stops_followups(self, sandbox: Sandbox) -> None:
        """notify ack REF records the answer; followup then has nothing due."""
        config = str(sandbox.write_config(followup={"after_days": 1e-9}))
        _, stdout, _ = await invoke(
            "send", "127.2.0.20", "--finding", "open Redis", "--json", "--config", config
        )
        case = sandbox.smtp.messages[0].raw.split(b"X-Notifier-Case: ")[1].split(b"\r\n")[0]
        code, stdout, _ = await invoke("ack", case.decode(), "--note", "fixed", "--config", config)
        assert code == 0 and "acknowledged" in stdout
        code, stdout, _ = await invoke("followup", "--config", config)
        assert code == 0 and "nothing due" in stdout

    async def test_ack_of_unknown_case_is_exit_2(self, config: str) -> None:
        """An unknown reference is one line and exit 2."""
        code, _, stderr = await invoke("ack", "NTF-NOSUCHCASE", "--config", config)
        assert code == 2 and len(stderr.strip().splitlines()) == 1

    async def test_bounces_of_a_missing_path_is_exit_2(self, config: str, tmp_path: Path) -> None:
        """A path that is neither Maildir nor mbox is bad input."""
        code, _, stderr = await invoke("bounces", str(tmp_path / "nothing"), "--config", config)
        assert code == 2 and "notify:" in stderr
