"""The log proves it is complete: cut lines, removed or edited messages and forgeries are found."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from notifier.cli import app
from notifier.ledger import AuditLog, format_head, record_hash


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _send(log: AuditLog, n: int) -> str:
    """What the pipeline does for one message: head quoted, intent, stored bytes, outcome."""
    quoted = format_head(*log.head())
    raw = (
        f"From: a@research.example\r\nTo: abuse{n}@example.net\r\n"
        f"Message-ID: <m{n}@research.example>\r\nX-Notifier-Log-Head: {quoted}\r\n\r\n"
        f"finding {n}\r\n"
    ).encode()
    digest = hashlib.sha256(raw).hexdigest()
    log.append("intent", attempt_id=f"a{n}", recipient=f"abuse{n}@example.net", digest=digest)
    log.store_message(raw)
    log.append(
        "outcome", attempt_id=f"a{n}", recipient=f"abuse{n}@example.net", digest=digest,
        status="delivered",
    )  # fmt: skip
    return digest


def _log(tmp_path: Path, messages: int = 3) -> tuple[AuditLog, list[str]]:
    log = AuditLog(tmp_path / "audit.jsonl", clock=Clock())
    digests = [_send(log, n) for n in range(messages)]
    assert log.verify().ok
    return log, digests


def _cut(log: AuditLog, lines: int) -> None:
    kept = log.path.read_bytes().splitlines(keepends=True)[:-lines]
    log.path.write_bytes(b"".join(kept))


def test_last_line_removed(tmp_path: Path) -> None:
    log, _ = _log(tmp_path)
    _cut(log, 1)
    report = log.verify()
    assert not report.ok
    problem = report.first_problem
    assert problem is not None and problem.kind == "truncated"
    assert "line 6" in report.summary() or "lines 6-6" in problem.detail
    assert "cut off the end" in problem.detail


def test_last_lines_removed_even_with_the_head_mark_gone(tmp_path: Path) -> None:
    log, _ = _log(tmp_path)
    _cut(log, 4)  # the last message's intent and outcome, and the outcome before
    log.head_path.unlink()  # the forger also removes the store's own head record
    report = log.verify()
    kinds = {p.kind for p in report.problems}
    # the last stored message has no intent line any more, and quoted a head the log lacks
    assert "unaccounted" in kinds
    assert "truncated" in kinds or "message" in kinds
    assert any("has no intent line" in p.detail for p in report.problems)


def test_a_stored_message_removed_or_edited(tmp_path: Path) -> None:
    log, digests = _log(tmp_path)
    (log.messages_dir / f"{digests[1]}.eml").unlink()
    report = log.verify()
    assert [p.kind for p in report.problems] == ["message"]
    assert "is missing" in report.problems[0].detail
    _send(log, 7)
    edited = log.messages_dir / f"{digests[0]}.eml"
    edited.write_bytes(edited.read_bytes().replace(b"finding 0", b"finding O"))
    details = [p.detail for p in log.verify().problems]
    assert any("was altered" in d for d in details)


def test_a_rechained_forgery_is_caught_by_the_heads_it_published(tmp_path: Path) -> None:
    log, digests = _log(tmp_path)
    records = list(log.records())
    # the forger drops the first message entirely (its lines and its stored copy) and
    # re-computes every hash after it, and removes the head mark too
    forged: list[str] = []
    prev = "0" * 64
    for record in records[2:]:
        body = {k: v for k, v in record.items() if k not in ("hash", "sig", "key_id")}
        body["seq"] = len(forged) + 1
        body["prev"] = prev
        body["hash"] = record_hash(body)
        prev = body["hash"]
        forged.append(json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n")
    log.path.write_text("".join(forged))
    (log.messages_dir / f"{digests[0]}.eml").unlink()
    log.head_path.unlink()
    report = log.verify()
    assert not report.ok
    mismatches = [p for p in report.problems if p.kind in ("head-mismatch", "truncated")]
    assert mismatches, report.problems
    assert any("X-Notifier-Log-Head" in p.detail for p in mismatches)


def test_intent_without_outcome_and_no_stored_message_is_not_a_problem(tmp_path: Path) -> None:
    """A run killed between its intent and storing the message never sent it."""
    log, _ = _log(tmp_path, 1)
    log.append("intent", attempt_id="x", recipient="a@example.net", digest="1" * 64)
    assert log.verify().ok


def test_cli_log_verify_names_what_is_missing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log, _ = _log(state)
    config = tmp_path / "notify.toml"
    config.write_text(f'[state]\ndir = "{state}"\n')
    runner = CliRunner()
    result = runner.invoke(app, ["log", "verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    _cut(log, 2)
    result = runner.invoke(app, ["log", "verify", "--config", str(config)])
    assert result.exit_code == 1
    assert "truncated" in result.stderr and "cut off the end" in result.stderr
