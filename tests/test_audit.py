"""The audit log: chain, tamper detection, torn lines, concurrency, message store, queries."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import stat
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.errors import AuditError, AuditIntegrityError, ConfigError
from notifier.ledger import (
    GENESIS,
    AuditLog,
    VerifyReport,
    format_head,
    head,
    parse_head,
    record_hash,
    verify,
)
from notifier.models import DeliveryStatus

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class StepClock:
    """A frozen clock that moves one second per reading."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "state" / "audit.jsonl", clock=StepClock())


def fill(log: AuditLog, count: int) -> list[dict[str, object]]:
    return [log.append("intent", attempt_id=f"a{i}", ip="192.0.2.9") for i in range(count)]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rehash(record: dict[str, object], prev: str) -> bytes:
    """What an attacker who knows the format writes: a self-consistent line."""
    record = {k: v for k, v in record.items() if k != "hash"}
    record["prev"] = prev
    record["hash"] = record_hash(record)
    return (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()


def rewrite(path: Path, lines: list[bytes]) -> VerifyReport:
    path.write_bytes(b"".join(lines))
    return verify(path)


class TestAppend:
    def test_first_record_links_to_genesis(self, log: AuditLog) -> None:
        """The first record has seq 1, prev of 64 zeros and a hash over its canonical JSON."""
        record = log.append("resolution", ip="192.0.2.9", contacts=["abuse@example.net"])
        assert record["seq"] == 1
        assert record["prev"] == GENESIS
        assert record["hash"] == record_hash(record)
        assert record["time"] == "2024-05-01T12:00:01Z"

    def test_each_record_links_to_the_one_before(self, log: AuditLog) -> None:
        """Every record's prev is the previous record's hash and seq counts lines."""
        records = fill(log, 5)
        for before, after in zip(records, records[1:], strict=False):
            assert after["prev"] == before["hash"]
            assert after["seq"] == before["seq"] + 1  # type: ignore[operator]
        report = verify(log.path)
        assert report.ok and report.lines == 5 and report.verified == 5
        assert head(log.path) == (5, records[-1]["hash"])

    def test_returned_record_is_exactly_the_stored_line(self, log: AuditLog) -> None:
        """append returns what is on disk: one canonical JSON line ending in a newline."""
        record = log.append("outcome", recipient="abuse@example.net", smtp_reply="250 ok ✓")
        raw = log.path.read_bytes()
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        assert json.loads(raw) == record
        expected = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert raw.decode() == expected + "\n"

    def test_time_is_utc_from_the_injected_clock(self, tmp_path: Path) -> None:
        """A clock in another zone is written as UTC with a Z."""
        plus_two = timezone(timedelta(hours=2))
        log = AuditLog(
            tmp_path / "audit.jsonl", clock=lambda: datetime(2024, 5, 1, 14, 0, tzinfo=plus_two)
        )
        assert log.append("ack")["time"] == "2024-05-01T12:00:00Z"

    def test_naive_clock_is_refused(self, tmp_path: Path) -> None:
        """A clock without a timezone would make times ambiguous: refused."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=lambda: datetime(2024, 5, 1))  # noqa: DTZ001
        with pytest.raises(ValueError, match="timezone"):
            log.append("ack")

    @pytest.mark.parametrize("name", ["seq", "time", "event", "prev", "hash", "sig", "key_id"])
    def test_reserved_fields_are_refused(self, log: AuditLog, name: str) -> None:
        """Fields the log sets itself cannot be passed in."""
        with pytest.raises(ValueError, match="set by the audit log"):
            log.append("ack", **{name: "x"})

    @pytest.mark.parametrize("event", ["", "Outcome", "out come", "a" * 41, "x\n"])
    def test_bad_event_names_are_refused(self, log: AuditLog, event: str) -> None:
        """Event names are short lower-case words with dashes."""
        with pytest.raises(ValueError, match="event"):
            log.append(event)

    @pytest.mark.parametrize(
        "fields",
        [
            {"password": "x"},
            {"smtp_password": "x"},
            {"apiKey": "x"},
            {"private_key": "x"},
            {"signing-key": "x"},
            {"auth_token": "x"},
            {"smtp": {"username": "u", "secret": "x"}},
            {"attempts": [{"credentials": "x"}]},
            {"note": "-----BEGIN PRIVATE KEY-----\nMC4CAQ...\n-----END PRIVATE KEY-----"},
        ],
    )
    def test_secret_looking_fields_are_refused(
        self, log: AuditLog, fields: dict[str, object]
    ) -> None:
        """Passwords, secrets and key material never reach the log, however nested."""
        with pytest.raises(ValueError, match="refusing"):
            log.append("attempt", **fields)
        assert not log.path.exists() or log.path.read_bytes() == b""

    def test_ordinary_key_names_are_allowed(self, log: AuditLog) -> None:
        """finding_key, keys and similar innocent names pass the secret filter."""
        record = log.append("outcome", finding_key="k1", keys=["a"], monkey=1, token_file="x.tsr")
        assert record["finding_key"] == "k1"

    @pytest.mark.parametrize("value", [b"raw", object(), float("nan")])
    def test_values_json_cannot_hold_are_refused(self, log: AuditLog, value: object) -> None:
        """Bytes, arbitrary objects and NaN are refused instead of written lossily."""
        with pytest.raises(ValueError):
            log.append("attempt", value=value)

    def test_pipeline_types_are_written_as_plain_json(self, log: AuditLog) -> None:
        """Datetimes, addresses, enums, paths and sets become plain JSON values."""
        record = log.append(
            "outcome",
            when=datetime(2024, 1, 2, tzinfo=UTC),
            ip=ip_address("2001:db8::1"),
            status=DeliveryStatus.DELIVERED,
            file=Path("a/b.eml"),
            tags={"b", "a"},
        )
        assert record["when"] == "2024-01-02T00:00:00Z"
        assert record["ip"] == "2001:db8::1"
        assert record["status"] == "delivered"
        assert record["file"] == "a/b.eml"
        assert record["tags"] == ["a", "b"]
        assert verify(log.path).ok

    def test_appends_reread_the_tail_from_disk(self, tmp_path: Path) -> None:
        """Two AuditLog objects on one file never fork the chain (no in-memory head)."""
        path = tmp_path / "audit.jsonl"
        first = AuditLog(path, clock=StepClock())
        second = AuditLog(path, clock=StepClock())
        for _ in range(3):
            first.append("ack")
            second.append("ack")
        assert verify(path).ok and head(path)[0] == 6


class TestPermissions:
    def test_files_and_directories_are_private(self, tmp_path: Path) -> None:
        """The log, its lock and stored messages are 0600; the directories 0700."""
        state = tmp_path / "state"
        log = AuditLog(state / "audit.jsonl", clock=StepClock())
        log.append("ack")
        digest = log.store_message(b"Subject: hi\r\n\r\nbody\r\n")
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
        assert mode(state) == 0o700
        assert mode(state / "messages") == 0o700
        assert mode(state / "audit.jsonl") == 0o600
        assert mode(state / "audit.jsonl.lock") == 0o600
        assert mode(state / "messages" / f"{digest}.eml") == 0o600

    def test_reading_creates_nothing(self, tmp_path: Path) -> None:
        """Opening and querying a log that does not exist yet leaves the disk untouched."""
        state = tmp_path / "state"
        log = AuditLog(state / "audit.jsonl", clock=StepClock())
        assert list(log.records()) == [] and log.in_doubt() == [] and log.head() == (0, GENESIS)
        assert not state.exists()

    def test_permissive_umask_does_not_widen_modes(self, tmp_path: Path) -> None:
        """Even with a permissive umask the log stays owner-only."""
        old = os.umask(0)
        try:
            log = AuditLog(tmp_path / "s" / "audit.jsonl", clock=StepClock())
            log.append("ack")
        finally:
            os.umask(old)
        assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(log.state_dir.stat().st_mode) == 0o700


class TestTamper:
    def test_intact_log_verifies(self, log: AuditLog) -> None:
        """An untouched log verifies and reports its head."""
        records = fill(log, 4)
        report = verify(log.path)
        assert report.ok and report.first_bad is None
        assert report.head == (4, records[-1]["hash"])
        assert report.summary().startswith("intact: 4 lines")

    def test_missing_log_is_an_empty_chain(self, tmp_path: Path) -> None:
        """No file yet means nothing logged: intact, zero lines."""
        report = verify(tmp_path / "none.jsonl")
        assert report.ok and report.lines == 0 and report.head == (0, GENESIS)

    def test_edited_field_is_caught_at_its_line(self, log: AuditLog) -> None:
        """Changing a field without fixing the hash breaks that very line."""
        fill(log, 5)
        lines = lines_of(log.path)
        lines[2] = lines[2].replace(b"192.0.2.9", b"192.0.2.8")
        report = rewrite(log.path, lines)
        assert report.first_bad == 3
        assert report.problems[0].kind == "edited"
        assert "line 3" in report.summary()

    def test_edited_and_rehashed_line_is_caught(self, log: AuditLog) -> None:
        """Re-hashing an edited line does not help: the next line still links to the old one."""
        records = fill(log, 5)
        lines = lines_of(log.path)
        changed = dict(records[1], ip="192.0.2.8")
        lines[1] = rehash(changed, str(records[0]["hash"]))
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (2, "edited")

    def test_deleted_line_is_caught(self, log: AuditLog) -> None:
        """Removing a line shows as a jump in seq at its place."""
        fill(log, 5)
        lines = lines_of(log.path)
        del lines[2]
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (3, "deleted")

    def test_inserted_copy_is_caught(self, log: AuditLog) -> None:
        """A duplicated line is named as a copy."""
        fill(log, 5)
        lines = lines_of(log.path)
        lines.insert(4, lines[1])
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (5, "inserted")
        assert "copy of line 2" in report.problems[0].detail

    def test_inserted_fabricated_line_is_caught(self, log: AuditLog) -> None:
        """A forged but self-consistent line is caught where it was slipped in."""
        records = fill(log, 5)
        lines = lines_of(log.path)
        forged = dict(records[2], ip="198.51.100.1", attempt_id="forged")
        lines.insert(2, rehash(forged, str(records[1]["hash"])))
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (3, "inserted")

    def test_reordered_lines_are_caught(self, log: AuditLog) -> None:
        """Swapping two lines is told apart from a deletion."""
        fill(log, 6)
        lines = lines_of(log.path)
        lines[2], lines[3] = lines[3], lines[2]
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (3, "reordered")

    def test_truncation_is_caught_with_a_committed_head(self, log: AuditLog) -> None:
        """Cutting lines off the end passes alone, but not against a head committed earlier."""
        fill(log, 6)
        committed = head(log.path)
        log.path.write_bytes(b"".join(lines_of(log.path)[:4]))
        assert verify(log.path).ok
        report = verify(log.path, head=committed)
        assert (report.first_bad, report.problems[0].kind) == (5, "truncated")

    def test_rewritten_chain_is_caught_with_a_committed_head(self, log: AuditLog) -> None:
        """A fully re-hashed rewrite verifies alone but contradicts the committed head."""
        records = fill(log, 4)
        committed = head(log.path)
        prev = GENESIS
        lines = []
        for record in records:
            line = rehash(dict(record, ip="198.51.100.1"), prev)
            prev = json.loads(line)["hash"]
            lines.append(line)
        assert rewrite(log.path, lines).ok
        report = verify(log.path, head=committed)
        assert (report.first_bad, report.problems[0].kind) == (4, "head-mismatch")

    def test_head_of_a_longer_log_still_matches(self, log: AuditLog) -> None:
        """A head committed earlier stays valid as the log grows."""
        fill(log, 3)
        committed = head(log.path)
        fill(log, 3)
        assert verify(log.path, head=committed).ok

    def test_first_line_must_start_the_chain(self, log: AuditLog) -> None:
        """A first line whose prev is not the genesis value is caught even when re-hashed."""
        records = fill(log, 2)
        lines = lines_of(log.path)
        lines[0] = rehash(records[0], "1" * 64)
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (1, "edited")

    @pytest.mark.parametrize(
        ("junk", "kind"),
        [
            (b"not json\n", "not-json"),
            (b"[1,2]\n", "not-json"),
            (b"\n", "not-json"),
            (b'{"seq":3}\n', "malformed"),
            (b"\xff\xfe\n", "not-json"),
        ],
    )
    def test_lines_that_are_not_records(self, log: AuditLog, junk: bytes, kind: str) -> None:
        """Garbage in the middle is named by line and kind."""
        fill(log, 4)
        lines = lines_of(log.path)
        lines[2] = junk
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (3, kind)
        assert report.lines == 4

    def test_reformatted_line_counts_as_edited(self, log: AuditLog) -> None:
        """The same content re-serialised (spaces, key order) is a rewrite, not the original."""
        fill(log, 3)
        lines = lines_of(log.path)
        lines[1] = (json.dumps(json.loads(lines[1]), indent=None) + "\n").encode()
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (2, "edited")

    def test_over_long_line_is_reported_without_reading_it_whole(self, log: AuditLog) -> None:
        """A line past the size cap is malformed, and nothing is appended after it."""
        fill(log, 2)
        with log.path.open("ab") as handle:
            handle.write(b"x" * (5 * 1024 * 1024) + b"\n")
        report = verify(log.path)
        assert (report.first_bad, report.problems[0].kind, report.lines) == (3, "malformed", 3)
        with pytest.raises(AuditIntegrityError):
            log.append("ack")

    def test_duplicate_keys_cannot_hide_a_change(self, log: AuditLog) -> None:
        """A second copy of a key (which JSON readers resolve differently) is caught."""
        fill(log, 2)
        lines = lines_of(log.path)
        lines[0] = lines[0].replace(b'{"attempt_id"', b'{"attempt_id":"zz","attempt_id"', 1)
        report = rewrite(log.path, lines)
        assert (report.first_bad, report.problems[0].kind) == (1, "edited")


class TestTornTail:
    def crash_mid_write(self, log: AuditLog, count: int = 3) -> bytes:
        fill(log, count)
        torn = b'{"attempt_id":"a9","event":"int'
        with log.path.open("ab") as handle:
            handle.write(torn)
        return torn

    def test_verify_reports_the_torn_line_before_recovery(self, log: AuditLog) -> None:
        """verify names the torn line explicitly and does not touch the file."""
        torn = self.crash_mid_write(log)
        before = log.path.read_bytes()
        report = verify(log.path)
        assert (report.first_bad, report.problems[0].kind) == (4, "torn")
        assert f"{len(torn)} bytes" in report.problems[0].detail
        assert report.lines == 3 and report.verified == 3
        assert log.path.read_bytes() == before

    def test_open_detects_and_next_append_recovers(self, log: AuditLog) -> None:
        """The bytes move to a side file, a torn-tail record says so, and the chain verifies."""
        torn = self.crash_mid_write(log)
        reopened = AuditLog(log.path, clock=StepClock())
        assert reopened.torn_tail is not None and reopened.torn_tail.length == len(torn)
        record = reopened.append("outcome", attempt_id="a0", status="delivered")
        aside = log.path.with_name("audit.jsonl.torn-1")
        assert aside.read_bytes() == torn
        assert stat.S_IMODE(aside.stat().st_mode) == 0o600
        records = list(reopened.records())
        assert [r["event"] for r in records[-2:]] == ["torn-tail", "outcome"]
        marker = records[-2]
        assert marker["length"] == len(torn)
        assert marker["sha256"] == hashlib.sha256(torn).hexdigest()
        assert marker["file"] == aside.name
        assert record["seq"] == 5
        assert verify(log.path).ok
        assert reopened.torn_tail is None

    def test_each_crash_keeps_its_own_side_file(self, log: AuditLog) -> None:
        """A second torn line goes to torn-2; nothing is overwritten."""
        self.crash_mid_write(log)
        assert log.recover() is not None
        with log.path.open("ab") as handle:
            handle.write(b"{")
        record = log.recover()
        assert record is not None and record["file"] == "audit.jsonl.torn-2"
        assert log.path.with_name("audit.jsonl.torn-1").exists()
        assert log.recover() is None
        assert verify(log.path).ok

    def test_readers_skip_the_torn_line(self, log: AuditLog) -> None:
        """records() and head() see only complete lines."""
        self.crash_mid_write(log)
        assert len(list(log.records())) == 3
        assert head(log.path)[0] == 3

    def test_torn_only_file_recovers(self, tmp_path: Path) -> None:
        """A crash during the very first write still leaves a verifiable log."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(b'{"seq":1,')
        log = AuditLog(path, clock=StepClock())
        log.append("ack")
        assert [r["event"] for r in log.records()] == ["torn-tail", "ack"]
        assert verify(path).ok

    def test_huge_torn_tail_is_moved_in_pieces(self, log: AuditLog) -> None:
        """Megabytes of garbage after the last newline are kept aside byte for byte."""
        fill(log, 2)
        junk = bytes(range(256)).replace(b"\n", b"") * 20_000
        with log.path.open("ab") as handle:
            handle.write(junk)
        record = log.recover()
        assert record is not None and record["length"] == len(junk)
        assert log.path.with_name("audit.jsonl.torn-1").read_bytes() == junk
        assert verify(log.path).ok

    def test_damaged_last_line_blocks_appending(self, log: AuditLog) -> None:
        """A complete but broken last line is not built on: nothing is appended."""
        fill(log, 3)
        lines = lines_of(log.path)
        lines[-1] = lines[-1].replace(b"a2", b"b2")
        log.path.write_bytes(b"".join(lines))
        before = log.path.read_bytes()
        with pytest.raises(AuditIntegrityError) as caught:
            log.append("ack")
        assert caught.value.line == 3
        assert log.path.read_bytes() == before


def _append_many(path: str, writer: str, count: int, start: object) -> None:
    log = AuditLog(Path(path), clock=lambda: datetime.now(UTC))
    start.wait(30)  # type: ignore[attr-defined]
    for i in range(count):
        log.append("note", writer=writer, n=i, pad="x" * (i % 50))


class TestConcurrency:
    def test_two_processes_never_interleave_or_fork(self, tmp_path: Path) -> None:
        """Two processes appending 200 lines each leave 400 whole lines in one valid chain."""
        path = tmp_path / "audit.jsonl"
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(2)
        workers = [
            context.Process(target=_append_many, args=(str(path), name, 200, start))
            for name in "AB"
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        report = verify(path)
        assert report.ok and report.lines == 400
        records = list(AuditLog(path, clock=StepClock()).records())
        for name in "AB":
            assert [r["n"] for r in records if r["writer"] == name] == list(range(200))


class TestMessageStore:
    RAW = b"From: a@research.example\r\nSubject: exposed service\r\n\r\nHello\r\n"

    def test_store_and_load_round_trip(self, log: AuditLog) -> None:
        """A message is stored under its SHA-256 and read back byte for byte."""
        digest = log.store_message(self.RAW)
        assert digest == hashlib.sha256(self.RAW).hexdigest()
        assert (log.messages_dir / f"{digest}.eml").read_bytes() == self.RAW
        assert log.load_message(digest) == self.RAW
        assert log.store_message(self.RAW) == digest
        assert [p.name for p in log.messages_dir.iterdir()] == [f"{digest}.eml"]

    def test_altered_message_is_refused_and_reported(self, log: AuditLog) -> None:
        """Editing a stored message shows in load_message and in verify at the outcome line."""
        digest = log.store_message(self.RAW)
        log.append("intent", attempt_id="a1")
        log.append("outcome", attempt_id="a1", digest=digest, status="delivered")
        (log.messages_dir / f"{digest}.eml").write_bytes(self.RAW.replace(b"Hello", b"Hullo"))
        with pytest.raises(AuditError, match="altered"):
            log.load_message(digest)
        report = verify(log.path, messages_dir=log.messages_dir)
        assert (report.first_bad, report.problems[0].kind) == (2, "message")
        assert verify(log.path).ok  # without the store the chain alone is intact

    def test_missing_message_is_reported(self, log: AuditLog) -> None:
        """A recorded digest with no stored file is a problem."""
        digest = log.store_message(self.RAW)
        log.append("outcome", attempt_id="a1", digest=digest)
        (log.messages_dir / f"{digest}.eml").unlink()
        report = log.verify()
        assert report.problems[0].kind == "message" and "missing" in report.problems[0].detail
        with pytest.raises(AuditError, match="missing"):
            log.load_message(digest)

    def test_intact_messages_are_counted(self, log: AuditLog) -> None:
        """Each intact stored message is checked once."""
        digest = log.store_message(self.RAW)
        log.append("intent", attempt_id="a1", digest=digest)
        log.append("outcome", attempt_id="a1", digest=digest)
        report = log.verify()
        assert report.ok and report.messages == 1

    @pytest.mark.parametrize("digest", ["../../etc/passwd", "ABC", "0" * 63])
    def test_bad_digests_never_become_paths(self, log: AuditLog, digest: str) -> None:
        """Only a 64-digit lower-case hex digest names a file."""
        with pytest.raises(AuditError, match="not a message digest"):
            log.load_message(digest)

    def test_recorded_digest_that_is_not_hex_is_reported(self, log: AuditLog) -> None:
        """A hostile digest in the log is reported, not used as a path."""
        log.append("outcome", digest="../../secret")
        report = log.verify()
        assert report.problems[0].kind == "message"


class TestQueries:
    @pytest.fixture
    def history(self, log: AuditLog) -> AuditLog:
        log.append("resolution", ip="192.0.2.9", contacts=["abuse@example.net"])
        log.append(
            "intent",
            attempt_id="a1",
            ip="192.0.2.9",
            recipient="Abuse@Example.net",
            message_id="<m1@research.example>",
            finding_key="f1",
        )
        log.append(
            "outcome",
            attempt_id="a1",
            ip="192.0.2.9",
            recipient="Abuse@Example.net",
            message_id="<m1@research.example>",
            finding_key="f1",
            status="delivered",
            smtp_code=250,
            smtp_reply='=HYPERLINK("x")',
        )
        log.append(
            "intent",
            attempt_id="a2",
            ip="198.51.100.7",
            recipient="noc@example.org",
            message_id="<m2@research.example>",
            finding_key="f2",
        )
        log.append(
            "outcome",
            attempt_id="a2",
            ip="198.51.100.7",
            recipient="noc@example.org",
            message_id="<m2@research.example>",
            finding_key="f2",
            status="failed",
            smtp_code=550,
        )
        log.append(
            "intent",
            attempt_id="a3",
            ips=["192.0.2.9", "192.0.2.10"],
            recipient="soc@example.com",
            message_id="<m3@research.example>",
            finding_keys=["f1", "f3"],
        )
        log.append(
            "outcome",
            attempt_id="a3",
            ips=["192.0.2.9", "192.0.2.10"],
            recipient="soc@example.com",
            message_id="<m3@research.example>",
            finding_keys=["f1", "f3"],
            status="delivered",
        )
        log.append("intent", attempt_id="a4", ip="192.0.2.11", recipient="x@example.com")
        return log

    def test_delivered_keys(self, history: AuditLog) -> None:
        """Only delivered outcomes count, batch outcomes per finding, recipients lower-cased."""
        assert history.delivered_keys() == {
            ("f1", "abuse@example.net"),
            ("f1", "soc@example.com"),
            ("f3", "soc@example.com"),
        }

    def test_in_doubt(self, history: AuditLog) -> None:
        """An intent without a matching outcome is in doubt."""
        assert [r["attempt_id"] for r in history.in_doubt()] == ["a4"]

    def test_find_by_message_id(self, history: AuditLog) -> None:
        """find matches with or without angle brackets."""
        assert [r["event"] for r in history.find("m1@research.example")] == ["intent", "outcome"]
        assert len(history.find("<m2@research.example>")) == 2
        assert history.find("nope@x") == []

    def test_select_filters(self, history: AuditLog) -> None:
        """Each filter narrows the selection; ip matches batch lists too."""
        by_ip = list(history.select(ip="192.0.2.9"))
        assert [r["seq"] for r in by_ip] == [1, 2, 3, 6, 7]
        assert [r["seq"] for r in history.select(recipient="abuse@EXAMPLE.net")] == [2, 3]
        assert [r["seq"] for r in history.select(status="failed")] == [5]
        assert [r["seq"] for r in history.select(event="outcome", ip="192.0.2.10")] == [7]
        since = START + timedelta(seconds=6)
        assert [r["seq"] for r in history.select(since=since)] == [6, 7, 8]
        naive = since.replace(tzinfo=None)
        assert [r["seq"] for r in history.select(since=naive)] == [6, 7, 8]

    def test_export_json(self, history: AuditLog) -> None:
        """JSON export is an array of the selected records exactly as stored."""
        out = io.StringIO()
        assert history.export("json", out, event="outcome") == 3
        assert json.loads(out.getvalue()) == list(history.select(event="outcome"))
        empty = io.StringIO()
        assert history.export("json", empty, status="nope") == 0
        assert json.loads(empty.getvalue()) == []

    def test_export_csv_defuses_formulas(self, history: AuditLog) -> None:
        """CSV has fixed columns plus details; a cell starting with = is quoted."""
        out = io.StringIO()
        assert history.export("csv", out, ip="192.0.2.9", event="outcome") == 2
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert rows[0]["recipient"] == "Abuse@Example.net"
        assert rows[0]["smtp_code"] == "250"
        assert rows[0]["smtp_reply"] == '\'=HYPERLINK("x")'
        assert json.loads(rows[1]["details"])["ips"] == ["192.0.2.9", "192.0.2.10"]
        assert rows[1]["hash"] == list(history.records())[6]["hash"]

    def test_unknown_export_format(self, history: AuditLog) -> None:
        """Only csv and json are offered."""
        with pytest.raises(ValueError):
            history.export("xml", io.StringIO())  # type: ignore[arg-type]

    def test_records_refuses_a_line_that_is_not_a_record(self, log: AuditLog) -> None:
        """Readers stop with the line number instead of guessing."""
        fill(log, 2)
        with log.path.open("ab") as handle:
            handle.write(b"garbage\n")
        with pytest.raises(AuditIntegrityError) as caught:
            list(log.records())
        assert caught.value.line == 3


class TestHead:
    def test_format_and_parse_round_trip(self) -> None:
        """N:HASH is printed and read back."""
        text = format_head(12, "ab" * 32)
        assert text == "12:" + "ab" * 32
        assert parse_head(text) == (12, "ab" * 32)
        assert parse_head(" 12:" + "AB" * 32 + "\n") == (12, "ab" * 32)

    @pytest.mark.parametrize("text", ["", "12", "x:" + "a" * 64, "3:" + "a" * 63, "-1:" + "a" * 64])
    def test_bad_heads_are_bad_input(self, text: str) -> None:
        """A malformed head is a ConfigError (bad input, exit 2)."""
        with pytest.raises(ConfigError):
            parse_head(text)

    def test_head_of_an_empty_log(self, tmp_path: Path) -> None:
        """Missing and empty logs both have the genesis head."""
        assert head(tmp_path / "none") == (0, GENESIS)
        (tmp_path / "empty").write_bytes(b"")
        assert head(tmp_path / "empty") == (0, GENESIS)

    def test_head_refuses_a_last_line_that_is_not_a_record(self, tmp_path: Path) -> None:
        """head() cannot name a hash it cannot read."""
        (tmp_path / "bad").write_bytes(b"junk\n")
        with pytest.raises(AuditIntegrityError):
            head(tmp_path / "bad")


def _valid_log_bytes(count: int) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        log = AuditLog(Path(directory) / "audit.jsonl", clock=StepClock())
        for i in range(count):
            log.append("note", n=i, text="é" * (i % 3))
        return log.path.read_bytes()


VALID = _valid_log_bytes(6)


class TestProperties:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.one_of(
            st.binary(max_size=600),
            st.lists(
                st.one_of(
                    st.sampled_from(VALID.splitlines(keepends=True)),
                    st.binary(max_size=60),
                    st.just(b"[" * 5000 + b"\n"),
                    st.just(b'{"seq":1e999,"time":"t","event":"e","prev":"' + b"0" * 64 + b'"}\n'),
                    st.text(max_size=60).map(lambda t: (t + "\n").encode("utf-8", "surrogatepass")),
                ),
                max_size=8,
            ).map(b"".join),
        )
    )
    def test_verify_only_raises_audit_errors(self, content: bytes) -> None:
        """Whatever the file holds, verify returns a report (or an AuditError), never crashes."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "audit.jsonl"
            path.write_bytes(content)
            try:
                report = verify(path, head=(3, "a" * 64), messages_dir=Path(directory))
            except AuditError:
                return
            assert isinstance(report, VerifyReport)
            assert report.ok or report.first_bad is not None

    @settings(max_examples=150, deadline=None)
    @given(
        st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=255)
    )
    def test_any_changed_byte_is_caught_at_its_line(self, offset: int, flip: int) -> None:
        """Changing any single byte makes verify fail at exactly the line holding it."""
        data = bytearray(VALID)
        data[offset] ^= flip
        line = VALID[:offset].count(b"\n") + 1
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "audit.jsonl"
            path.write_bytes(bytes(data))
            report = verify(path)
        assert not report.ok
        assert report.first_bad == line
