"""The ledger's typed records and read model, over logs in the shapes earlier versions wrote;
and a process reading its own appends back exactly as another reads them from the file."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifier.ledger import AuditLog, GroupCommit, Intent, Outcome, ReadModel, verify
from notifier.ledger.base import LiveView
from notifier.ledger.records import EVENTS, parse

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _old_format_log(path: Path) -> AuditLog:
    """Records exactly as the previous version's pipeline, escalation and bounces wrote them."""
    log = AuditLog(path, clock=Clock())
    log.append(
        "resolution",
        ip="8.8.8.8",
        hostnames=["dns.example"],
        network=None,
        recipients=[{"address": "abuse@example.net", "role": "network"}],
        fallbacks=[{"address": "cert@cert.example", "role": "national-cert"}],
        errors=[],
        evidence=[],
    )
    for n, (recipient, status) in enumerate(
        [("abuse@example.net", "delivered"), ("sec@example.org", "failed")]
    ):
        log.append(
            "intent",
            attempt_id=f"a{n}",
            ip="8.8.8.8",
            recipient=recipient,
            intended_recipient=None,
            role="network",
            message_id=f"<m{n}@example>",
            digest="0" * 64,
            case="NTF-ONE",
            finding_keys=["k1", "k2"],
            finding_texts=["8.8.8.8:9200 open"],
            findings=[{"ip": "8.8.8.8", "port": 9200, "text": "open"}],
        )
        log.append(
            "outcome",
            attempt_id=f"a{n}",
            ip="8.8.8.8",
            recipient=recipient,
            message_id=f"<m{n}@example>",
            digest="0" * 64,
            status=status,
            smtp_code=250,
            smtp_reply="250 ok",
            attempts=1,
            finding_keys=["k1", "k2"],
            test=False,
        )
    # an intent a crash left without outcome
    log.append(
        "intent",
        attempt_id="a9",
        ip="8.8.4.4",
        recipient="noc@example.com",
        message_id="<m9@example>",
        case="NTF-TWO",
        finding_keys=["k9"],
    )
    log.append("suppress", recipient="@quiet.example", reason="asked")
    log.append(
        "followup",
        case="NTF-ONE",
        ips=["8.8.8.8"],
        level="cert",
        to=["cert@cert.example"],
        reason="no answer",
        in_reply_to="<m0@example>",
    )
    log.append("fallback", ip="8.8.8.8", to="cert@cert.example", role="national-cert", reason="x")
    log.append("fallback", to="cert@cert.example", role="national-cert", findings=3, reason="y")
    log.append(
        "bounce",
        dsn_id="d1",
        message_id="<m0@example>",
        attempt_id="a0",
        ip="8.8.8.8",
        case="NTF-ONE",
        recipient="abuse@example.net",
        kind="permanent",
        contact_gone=True,
    )
    log.append("ack", case="ntf-one", note="fixed")
    return log


def test_old_logs_load_verify_and_answer(tmp_path: Path) -> None:
    log = _old_format_log(tmp_path / "audit.jsonl")
    assert verify(log.path).ok
    model = log.view().refresh()
    assert model.prior("k1", "ABUSE@example.net") == "delivered"
    assert model.prior("k1", "sec@example.org") is None
    assert model.prior("k9", "noc@example.com") == "in-doubt"
    assert [i.attempt_id for i in model.in_doubt()] == ["a9"]
    assert model.is_suppressed("anyone@quiet.example")
    assert not model.is_suppressed("abuse@example.net")
    assert model.sent_since("abuse@example.net", T0) == 1
    assert model.resolutions["8.8.8.8"].recipients[0]["address"] == "abuse@example.net"
    case = model.case("ntf-one")
    assert case is not None
    assert case.acked and case.ack_note == "fixed"
    assert case.state == "acknowledged"
    assert [m.status for m in case.messages] == ["delivered", "failed"]
    assert case.messages[0].bounced
    assert [level for _, level in case.followups] == ["cert"]
    assert model.dsn_ids == {"d1"}
    assert "k1" in case.findings
    two = model.case("NTF-TWO")
    assert two is not None and two.state == "in-doubt"
    # the same answers whether folded at once or kept current record by record
    assert ReadModel.of(log.records()).delivered == model.delivered
    assert log.delivered_keys() == model.delivered
    assert [r["attempt_id"] for r in log.in_doubt()] == ["a9"]


def test_view_refresh_sees_other_writers(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", clock=Clock())
    view = log.view()
    assert view.refresh().records == 0
    other = AuditLog(tmp_path / "audit.jsonl", clock=Clock())
    other.write(Intent(attempt_id="x", recipient="a@example.net", finding_keys=["k"]))
    assert view.refresh().prior("k", "a@example.net") == "in-doubt"
    other.write(Outcome(attempt_id="x", recipient="a@example.net", status="delivered"))
    model = view.refresh()
    assert model.prior("k", "a@example.net") is None  # the outcome names no keys
    assert model.in_doubt() == []
    assert model.records == 2


def test_every_written_kind_has_a_class_and_wrong_types_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", clock=Clock())
    with pytest.raises(ValueError, match="unknown audit event kind"):
        log.append("made-up", x=1)
    with pytest.raises(ValueError, match="bad outcome record: attempts"):
        log.append("outcome", attempts="many")
    with pytest.raises(ValueError, match="bad intent record: finding_keys"):
        log.append("intent", finding_keys="k1")
    assert log.head()[0] == 0
    for event, cls in EVENTS.items():
        record = log.append(event)
        entry = parse(record)
        assert isinstance(entry, cls)
        assert entry.seq == record["seq"]


# -- reading one's own appends back


def _intent(n: int) -> dict[str, object]:
    return {
        "attempt_id": f"a{n}",
        "ip": "8.8.8.8",
        "recipient": f"abuse{n}@example.net",
        "intended_recipient": None,
        "role": "network",
        "message_id": f"<m{n}@example>",
        "digest": f"{n:064x}",
        "case": "NTF-ONE",
        "language": "de",
        "guides": ["exposed-service"],
        "finding_keys": [f"k{n}.{i}" for i in range(5)],
        "finding_texts": [f"8.8.8.{i}:9200 Elasticsearch — offen\u2028" for i in range(5)],
        "findings": [
            {"ip": f"8.8.8.{i}", "port": 9200, "text": "open", "extra": [["score", 7.5]]}
            for i in range(5)
        ],
    }


def _from_file(path: Path) -> list[tuple[dict[str, object], int]]:
    return list(AuditLog(path, clock=Clock()).follow(0))


def test_own_records_read_back_as_the_file_has_them(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    one, two = AuditLog(path, clock=Clock()), AuditLog(path, clock=Clock())  # two processes
    views = [LiveView(one), LiveView(two)]
    for n in range(6):
        writer = one if n % 2 else two
        writer.append("intent", **_intent(n))
        writer.append_many(
            [
                ("attempt", {"attempt_id": f"a{n}", "number": 1, "error": "451 try later"}),
                ("outcome", {"attempt_id": f"a{n}", "ip": "8.8.8.8", "status": "delivered"}),
            ]
        )
        if n % 3 == 0:
            for view in views:
                view.refresh()
    expected = _from_file(path)
    assert len(expected) == 18
    for ledger in (one, two):
        assert list(ledger.follow(0)) == expected
        # taken once: a second reader of the same handle reads the file, to the same end
        assert list(ledger.follow(0)) == expected
    for view in views:
        view.refresh()
        assert view._cursor == expected[-1][1]


def test_group_commit_appends_are_taken_back_too(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, clock=Clock())
    view = LiveView(log)

    async def write() -> None:
        group = GroupCommit(log, prepare=view.refresh)
        await asyncio.gather(
            *(group.append_if(lambda: True, "intent", **_intent(n)) for n in range(8)),
            *(group.append_if(lambda: False, "intent", **_intent(n)) for n in range(8, 10)),
        )

    asyncio.run(write())
    view.refresh()
    expected = _from_file(path)
    assert len(expected) == 8
    assert view._cursor == expected[-1][1]
    assert list(log.follow(0)) == expected


def test_more_runs_than_kept_and_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, clock=Clock())
    for n in range(100):  # more runs than are kept: the oldest are read from the file
        log.append("intent", **_intent(n))
    expected = _from_file(path)
    assert list(log.follow(0)) == expected
    record = log.append("intent", **_intent(100))
    [(taken, end)] = list(log.follow(expected[-1][1]))
    assert taken is record  # from memory, not parsed again
    later = log.append("intent", **_intent(101))
    # the same bytes under a new inode: what was kept for the old file is not used
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(path, copy)
    copy.replace(path)
    [(read, _)] = list(log.follow(end))
    assert read == later and read is not later
    assert list(log.follow(0)) == _from_file(path)
