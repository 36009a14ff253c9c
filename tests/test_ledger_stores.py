"""The ledger's contract, run against both stores: files under state.dir, and PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.config import Settings
from notifier.errors import ConfigError
from notifier.ledger import AuditLog, Ledger, format_head, open_ledger, verify


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _settings(tmp_path: Path, url: str = "") -> Settings:
    return Settings.from_mapping({"state": {"dir": str(tmp_path / "state"), "url": url}})


def _init(url: str) -> None:
    from notifier.ledger.pg import setup

    setup(url, initial=True)


@pytest.fixture(params=["files", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Settings, Ledger]]:
    if request.param == "files":
        settings = _settings(tmp_path)
    else:
        url = request.getfixturevalue("pg_url")
        _init(url)
        settings = _settings(tmp_path, url)
    ledger = open_ledger(settings, clock=Clock())
    yield settings, ledger
    close = getattr(ledger, "close", None)
    if close is not None:
        close()


def _tamper(settings: Settings, ledger: Ledger, sql: str, edit_file: object) -> None:
    if settings.state.url:
        import psycopg

        with psycopg.connect(settings.state.url, autocommit=True) as conn:
            conn.execute(sql.encode())
    else:
        assert isinstance(ledger, AuditLog)
        edit_file(ledger)  # type: ignore[operator]


def _send(ledger: Ledger, n: int) -> str:
    raw = f"X-Notifier-Log-Head: {format_head(*ledger.head())}\r\n\r\nmessage {n}\r\n".encode()
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()
    ledger.append("intent", attempt_id=f"a{n}", recipient="x@example.net", digest=digest,
                  finding_keys=[f"k{n}"])  # fmt: skip
    ledger.store_message(raw)
    ledger.append("outcome", attempt_id=f"a{n}", recipient="x@example.net", digest=digest,
                  status="delivered", finding_keys=[f"k{n}"])  # fmt: skip
    return digest


def test_append_read_view_and_export_verify_offline(
    store: tuple[Settings, Ledger], tmp_path: Path
) -> None:
    _, ledger = store
    digests = [_send(ledger, n) for n in range(3)]
    written = ledger.append_many([("note", {"text": "a"}), ("note", {"text": "b"})])
    assert [r["seq"] for r in written] == [7, 8]
    assert ledger.head() == (8, written[-1]["hash"])
    assert [r["seq"] for r in ledger.records()] == list(range(1, 9))
    assert ledger.load_message(digests[0]).endswith(b"message 0\r\n")
    model = ledger.view().refresh()
    assert model.prior("k1", "x@example.net") == "delivered"
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.messages == 3
    out = io.StringIO()
    assert ledger.export("jsonl", out) == 8
    exported = tmp_path / "export.jsonl"
    exported.write_text(out.getvalue())
    assert verify(exported).ok
    if isinstance(ledger, AuditLog):
        assert exported.read_bytes() == ledger.path.read_bytes()


def test_guards_see_the_chain_under_the_lock(store: tuple[Settings, Ledger]) -> None:
    _, ledger = store
    seen: list[int] = []

    def guard() -> bool:
        seen.append(ledger.head()[0])
        return len(seen) == 1

    written = ledger._append_guarded([("note", {}), ("note", {})], [guard, guard])
    assert written[0] is not None and written[1] is None
    assert ledger.head()[0] == 1


def test_an_edited_or_shortened_chain_is_found(store: tuple[Settings, Ledger]) -> None:
    settings, ledger = store
    for n in range(3):
        _send(ledger, n)

    def edit(log: AuditLog) -> None:
        log.path.write_bytes(log.path.read_bytes().replace(b'"a1"', b'"a7"', 1))

    _tamper(settings, ledger, "UPDATE ledger SET line = replace(line, '\"a1\"', '\"a7\"')", edit)
    report = ledger.verify()
    assert report.first_problem is not None and report.first_problem.kind == "edited"


def test_last_line_removed_is_found(store: tuple[Settings, Ledger]) -> None:
    settings, ledger = store
    for n in range(2):
        _send(ledger, n)

    def cut(log: AuditLog) -> None:
        log.path.write_bytes(b"".join(log.path.read_bytes().splitlines(keepends=True)[:-1]))

    _tamper(settings, ledger, "DELETE FROM ledger WHERE seq = 4", cut)
    report = ledger.verify()
    assert report.first_problem is not None
    assert report.first_problem.kind == "truncated"


def test_a_removed_message_is_found(store: tuple[Settings, Ledger]) -> None:
    settings, ledger = store
    digest = _send(ledger, 0)

    def remove(log: AuditLog) -> None:
        (log.messages_dir / f"{digest}.eml").unlink()

    _tamper(settings, ledger, f"DELETE FROM messages WHERE digest = '{digest}'", remove)
    assert [p.kind for p in ledger.verify().problems] == ["message"]


_WRITER = """
import sys, time
from datetime import UTC, datetime
from notifier.config import Settings
from notifier.ledger import open_ledger
settings = Settings.from_mapping({"state": {"dir": sys.argv[1], "url": sys.argv[2]}})
ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
ledger.append("intent", attempt_id="live", recipient="x@example.net", finding_keys=["k"])
print("written", flush=True)
time.sleep(60)
"""


def test_a_live_writer_is_in_flight_a_dead_one_in_doubt(
    store: tuple[Settings, Ledger],
) -> None:
    settings, ledger = store
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(settings.state_dir), settings.state.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "written"
        view = ledger.view()
        view.refresh()
        assert view.priors(["k"], "X@example.net")[0] == "in-flight"
    finally:
        writer.kill()
        writer.wait()
    deadline = time.monotonic() + 10
    while view.priors(["k"], "x@example.net")[0] == "in-flight" and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the closed connection a moment later
    assert view.priors(["k"], "x@example.net")[0] == "in-doubt"


# ---------------------------------------------------------------- the database's own errors


def test_unreachable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "notify.toml"
    config.write_text('[state]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n')
    result = CliRunner().invoke(app, ["log", "verify", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "cannot connect to the database postgresql://nobody@127.0.0.1:1/none" in result.stderr


def test_a_bad_url_is_refused_by_the_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        _settings(tmp_path, "mysql://x@y/z")


def test_schema_versions_name_the_command_that_fixes_them(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    from notifier.ledger.schema import SCHEMA_VERSION

    settings = _settings(tmp_path, pg_url)
    with pytest.raises(ConfigError, match="run `notify db init`"):
        open_ledger(settings, clock=Clock())
    config = tmp_path / "notify.toml"
    config.write_text(f'[state]\nurl = "{pg_url}"\n')
    runner = CliRunner()
    result = runner.invoke(app, ["db", "migrate", "--config", str(config)])
    assert result.exit_code == 2 and "notify db init" in result.stderr
    result = runner.invoke(app, ["db", "init", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"schema version 0 -> {SCHEMA_VERSION}" in result.stdout
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = %s", (SCHEMA_VERSION,))
    with pytest.raises(ConfigError, match="run `notify db migrate`"):
        open_ledger(settings, clock=Clock())
    result = runner.invoke(app, ["db", "init", "--config", str(config)])
    assert result.exit_code == 2 and "notify db migrate" in result.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE cache_entries, cache_values, cache_ranges, cache_in_flight, cache_pace"
        )
    result = runner.invoke(app, ["db", "migrate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="upgrade notify"):
        open_ledger(settings, clock=Clock())


def test_cli_export_jsonl_verifies_offline(store: tuple[Settings, Ledger], tmp_path: Path) -> None:
    settings, ledger = store
    for n in range(2):
        _send(ledger, n)
    config = tmp_path / "notify.toml"
    config.write_text(f'[state]\ndir = "{settings.state_dir}"\nurl = "{settings.state.url}"\n')
    runner = CliRunner()
    result = runner.invoke(app, ["log", "export", "--format", "jsonl", "--config", str(config)])
    assert result.exit_code == 0, result.output
    exported = tmp_path / "chain.jsonl"
    exported.write_text(result.stdout)
    assert len(result.stdout.splitlines()) == 4
    result = runner.invoke(app, ["log", "verify", "--file", str(exported), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "intact: 4 lines" in result.stdout
    result = runner.invoke(app, ["log", "verify", "--config", str(config)])
    assert result.exit_code == 0 and "intact: 4 lines" in result.stdout
    forged = tmp_path / "forged.jsonl"
    forged.write_text(exported.read_text().replace('"a0"', '"a9"', 1))
    result = runner.invoke(app, ["log", "verify", "--file", str(forged), "--config", str(config)])
    assert result.exit_code == 1 and "edited" in result.stderr
