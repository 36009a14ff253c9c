"""Escalation over time on the loopback internet: follow-ups, the ladder, acknowledgements."""

from __future__ import annotations

import email
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from notifier.batch import Batch
from notifier.cases.followup import FollowupStatus, ack, followup
from notifier.errors import ConfigError
from notifier.ledger import ReadModel
from notifier.ledger.rebuild import findings_of
from notifier.models import Finding, Role
from notifier.pipeline import Notifier, SendResult
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FINDING = "Elasticsearch on 9200 without authentication"
OWNER = "security@health-dept.test"
NETWORK = "abuse@telecom-in.test"
CERT = "incident@cert-in.org.in"


class Clock:
    """A clock the test moves by hand; the notifier and the sandbox read it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, days: float) -> datetime:
        self.now = T0 + timedelta(days=days)
        return self.now


def finding(ip: str = "127.1.0.10") -> Finding:
    return Finding(ip_address(ip), FINDING, port=9200, observed_at=T0 - timedelta(days=1))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def sandbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Sandbox]:
    async with Sandbox(directory=tmp_path, clock=clock) as box:
        yield box


def records(box: Sandbox) -> list[dict[str, Any]]:
    path = box.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def send(box: Sandbox, clock: Clock, item: Finding | None = None) -> str:
    """Send the finding the normal way; return its case reference."""
    async with Notifier(box.settings(), clock=clock) as notifier:
        result = await notifier.send([item or finding()])
    return result.messages[0].case_ref


async def send_to_owner_only(box: Sandbox, clock: Clock) -> str:
    """Tell only the owner (as an operator would by hand), leaving the whole ladder above."""
    async with Notifier(box.settings(), clock=clock) as notifier:
        resolution = await notifier.resolve("127.1.0.10")
        notifier.record_resolution(resolution)
        result = SendResult(resolution)
        owner = [c for c in resolution.recipients if c.role == Role.OWNER]
        for contact in owner:
            await notifier.deliver(contact, [finding()], resolution.network, result)
    return result.messages[0].case_ref


async def run_followup(box: Sandbox, clock: Clock, days: float, **options: Any) -> list[Any]:
    """One cron run of ``followup`` at T0 + days, with a fresh Notifier (state only in the log)."""
    now = clock.at(days)
    async with Notifier(box.settings(), clock=clock) as notifier:
        return await followup(notifier, now=now, **options)


class TestFollowupTiming:
    async def test_nothing_is_due_before_the_waiting_period(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """A case notified 13 days and 23 hours ago is left alone."""
        await send(sandbox, clock)
        before = len(sandbox.smtp.messages)
        assert await run_followup(sandbox, clock, 14 - 1 / 24) == []
        assert len(sandbox.smtp.messages) == before
        assert not [r for r in records(sandbox) if r["event"] == "followup"]

    async def test_next_rung_after_the_waiting_period(self, sandbox: Sandbox, clock: Clock) -> None:
        """Owner and abuse desk told at T0: after 14 days the national CERT gets the case."""
        case = await send(sandbox, clock)
        actions = await run_followup(sandbox, clock, 14)
        assert [(a.case, a.status, a.level, a.recipients) for a in actions] == [
            (case, FollowupStatus.SENT, "cert", (CERT,))
        ]
        assert sandbox.smtp.messages[-1].rcpt_tos == (CERT,)
        log = records(sandbox)
        marker = next(i for i, r in enumerate(log) if r["event"] == "followup")
        assert log[marker]["case"] == case and log[marker]["level"] == "cert"
        assert log[marker]["to"] == [CERT]
        intent = next(
            i for i, r in enumerate(log) if r["event"] == "intent" and r["recipient"] == CERT
        )
        assert marker < intent
        assert log[intent]["case"] == case

    async def test_the_waiting_period_comes_from_the_settings(self, tmp_path: Path) -> None:
        """followup.after_days = 3 makes a case due after three days."""
        clock = Clock(T0)
        async with Sandbox(directory=tmp_path, clock=clock) as box:
            await send(box, clock)
            settings = box.settings(followup={"after_days": 3})
            async with Notifier(settings, clock=clock) as notifier:
                early = await followup(notifier, now=clock.at(2.9))
                due = await followup(notifier, now=clock.at(3))
        assert early == []
        assert [a.level for a in due] == ["cert"]


class TestThreading:
    async def test_followup_is_threaded_to_the_first_message(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """The follow-up answers the first notice and names every earlier message of the case."""
        case = await send(sandbox, clock)
        first = [parsed(m.raw) for m in sandbox.smtp.messages]
        await run_followup(sandbox, clock, 14)
        reminder = parsed(sandbox.smtp.messages[-1].raw)
        owner_notice = next(m for m in first if str(m["To"]).endswith(OWNER))
        assert reminder["In-Reply-To"] == owner_notice["Message-ID"]
        references = str(reminder["References"]).split()
        assert references == [str(m["Message-ID"]) for m in first]
        assert str(reminder["Subject"]).startswith(f"Re: [{case}]")
        assert reminder["X-Notifier-Case"] == case
        assert "follow-up" in reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]


class TestIdempotence:
    async def test_a_rerun_does_not_escalate_twice(self, sandbox: Sandbox, clock: Clock) -> None:
        """Cron running followup again (same day, next day) sends nothing more."""
        await send(sandbox, clock)
        await run_followup(sandbox, clock, 14)
        again = await run_followup(sandbox, clock, 14)
        later = await run_followup(sandbox, clock, 15)
        assert again == [] and later == []
        assert [m.rcpt_tos for m in sandbox.smtp.messages].count((CERT,)) == 1

    async def test_a_followup_cut_short_by_a_crash_is_not_repeated(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """A followup record without a message (crash before SMTP) still counts: no resend."""
        case = await send(sandbox, clock)
        clock.at(14)
        async with Notifier(sandbox.settings(), clock=clock) as notifier:
            notifier.audit.append("followup", case=case, level="cert", to=[CERT], reason="test")
        before = len(sandbox.smtp.messages)
        actions = await run_followup(sandbox, clock, 28)
        assert [(a.case, a.status) for a in actions] == [(case, FollowupStatus.EXHAUSTED)]
        assert len(sandbox.smtp.messages) == before

    async def test_rehearsals_are_not_cases(self, sandbox: Sandbox, clock: Clock) -> None:
        """Messages sent with --test-recipient are never followed up."""
        # both rehearsal messages go to one domain: lift the per-domain pacing for speed
        settings = sandbox.settings(limits={"per_domain_per_minute": 60_000})
        async with Notifier(settings, clock=clock) as notifier:
            await notifier.send([finding()], test_recipient="me@research.test")
        assert await run_followup(sandbox, clock, 30) == []


class TestLadder:
    async def test_the_ladder_climbs_one_rung_per_period(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """Owner at T0, abuse desk at 14 days, national CERT at 28, then nobody is left."""
        case = await send_to_owner_only(sandbox, clock)
        network = await run_followup(sandbox, clock, 14)
        assert [(a.level, a.recipients) for a in network] == [("network", (NETWORK,))]
        assert await run_followup(sandbox, clock, 27) == []
        cert = await run_followup(sandbox, clock, 28)
        assert [(a.level, a.recipients) for a in cert] == [("cert", (CERT,))]
        sent = len(sandbox.smtp.messages)
        done = await run_followup(sandbox, clock, 42)
        assert [(a.case, a.status, a.level) for a in done] == [
            (case, FollowupStatus.EXHAUSTED, None)
        ]
        assert "nobody left" in done[0].reason
        assert len(sandbox.smtp.messages) == sent
        # the CERT's message names the owner's notice and the abuse desk's reminder
        references = str(parsed(sandbox.smtp.messages[-1].raw)["References"]).split()
        assert len(references) == 2

    async def test_a_refusing_rung_climbs_on_in_the_same_run(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """When the abuse desk refuses the follow-up (550), the CERT gets it in the same run."""
        await send_to_owner_only(sandbox, clock)
        sandbox.smtp.add_script(NETWORK, "550 5.1.1 Mailbox does not exist")
        actions = await run_followup(sandbox, clock, 14)
        assert [(a.status, a.level) for a in actions] == [(FollowupStatus.SENT, "cert")]
        assert [d.recipient for d in actions[0].deliveries] == [NETWORK, CERT]
        levels = [r["level"] for r in records(sandbox) if r["event"] == "followup"]
        assert levels == ["network", "cert"]

    async def test_a_contact_that_refused_the_case_is_skipped(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """The abuse desk refused the first notice (550): the follow-up goes to the CERT only."""
        sandbox.smtp.add_script(NETWORK, "550 5.1.1 Mailbox does not exist")
        await send(sandbox, clock)
        actions = await run_followup(sandbox, clock, 14)
        assert [(a.level, [d.recipient for d in a.deliveries]) for a in actions] == [
            ("cert", [CERT])
        ]

    async def test_no_rung_above_is_reported_as_exhausted(self, tmp_path: Path) -> None:
        """A network with no national CERT on file: the case is reported, nothing is resent."""
        world = World(
            networks=(
                WorldNetwork(
                    "127.6.0.0/16",
                    "arin",
                    "NET-6",
                    "NOWHERE",
                    "ZZ",
                    "Nowhere Inc",
                    "abuse@nowhere.test",
                ),
            ),
            hosts=(WorldHost("127.6.0.6"),),
        )
        clock = Clock(T0)
        async with Sandbox(world, directory=tmp_path, clock=clock) as box:
            case = await send(box, clock, finding("127.6.0.6"))
            actions = await run_followup(box, clock, 20)
            assert [(a.case, a.status) for a in actions] == [(case, FollowupStatus.EXHAUSTED)]
            assert actions[0].ips == ("127.6.0.6",)
            assert len(box.smtp.messages) == 1

    async def test_each_national_cert_gets_only_its_own_countrys_findings(
        self, tmp_path: Path
    ) -> None:
        """One desk for networks in two countries: the CERT follow-ups split by country."""
        desk = "abuse@multi.test"
        world = World(
            networks=(
                WorldNetwork("127.10.0.0/16", "ripe", "NET-NL", "NL-NET", "NL", "Multi BV", desk),
                WorldNetwork("127.11.0.0/16", "arin", "NET-US", "US-NET", "US", "Multi Inc", desk),
            ),
            hosts=(WorldHost("127.10.0.1"), WorldHost("127.11.0.1")),
        )
        clock = Clock(T0)
        async with Sandbox(world, directory=tmp_path, clock=clock) as box:
            async with Notifier(box.settings(), clock=clock) as notifier:
                batch = Batch(notifier)
                for ip in ("127.10.0.1", "127.11.0.1"):
                    await batch.submit(finding(ip))
                await batch.flush()
            assert [m.rcpt_tos for m in box.smtp.messages] == [(desk,)]
            actions = await run_followup(box, clock, 14)
            assert [(a.status, a.level) for a in actions] == [(FollowupStatus.SENT, "cert")]
            told = {m.rcpt_tos[0]: m.raw for m in box.smtp.messages[1:]}
            assert set(told) == {"cert@ncsc.nl", "report@cisa.gov"}
            assert b"127.10.0.1" in told["cert@ncsc.nl"]
            assert b"127.11.0.1" not in told["cert@ncsc.nl"]
            assert b"127.11.0.1" in told["report@cisa.gov"]
            assert b"127.10.0.1" not in told["report@cisa.gov"]
            # both follow-ups belong to the one case, threaded to its first message
            cases = {r["case"] for r in records(box) if r["event"] == "intent"}
            assert len(cases) == 1


class TestLimits:
    async def test_a_capped_followup_is_deferred_and_retried(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """The CERT's daily cap refuses the second case: that level is retried the next day."""
        first = await send(sandbox, clock)
        second = await send(sandbox, clock, Finding(ip_address("127.1.0.10"), "Open Redis", 6379))
        limits = {"per_recipient_per_day": 1}
        settings = sandbox.settings(limits=limits)
        async with Notifier(settings, clock=clock) as notifier:
            actions = await followup(notifier, now=clock.at(14))
        assert [(a.case, a.status) for a in actions] == [
            (first, FollowupStatus.SENT),
            (second, FollowupStatus.DEFERRED),
        ]
        events = [r["event"] for r in records(sandbox)]
        assert events[-3:] == ["followup", "refusal", "followup-deferred"]
        async with Notifier(settings, clock=clock) as notifier:
            retry = await followup(notifier, now=clock.at(15.5))
        assert [(a.case, a.status, a.level) for a in retry] == [
            (second, FollowupStatus.SENT, "cert")
        ]
        assert [m.rcpt_tos for m in sandbox.smtp.messages].count((CERT,)) == 2

    async def test_the_run_cap_leaves_the_rest_for_the_next_run(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """Once a run sent its maximum, the other due cases are reported and left untouched."""
        await send(sandbox, clock)
        second = await send(sandbox, clock, Finding(ip_address("127.1.0.10"), "Open Redis", 6379))
        settings = sandbox.settings(limits={"max_messages_per_run": 1})
        async with Notifier(settings, clock=clock) as notifier:
            actions = await followup(notifier, now=clock.at(14))
        assert [a.status for a in actions] == [FollowupStatus.SENT, FollowupStatus.DEFERRED]
        assert "run cap" in actions[1].reason
        assert second not in [r["case"] for r in records(sandbox) if r["event"] == "followup"]

    async def test_a_suppressed_cert_is_off_the_ladder(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """An address that asked not to be written to is never escalated to."""
        case = await send(sandbox, clock)
        async with Notifier(sandbox.settings(), clock=clock) as notifier:
            notifier.suppress(CERT, reason="asked us to stop")
        actions = await run_followup(sandbox, clock, 14)
        assert [(a.case, a.status) for a in actions] == [(case, FollowupStatus.EXHAUSTED)]
        assert CERT not in [r for m in sandbox.smtp.messages for r in m.rcpt_tos]


class TestAck:
    async def test_ack_stops_followups(self, sandbox: Sandbox, clock: Clock) -> None:
        """An acknowledged case (reference typed in lower case) is never followed up."""
        case = await send(sandbox, clock)
        clock.at(3)
        async with Notifier(sandbox.settings(), clock=clock) as notifier:
            record = ack(notifier, case.lower(), note="fixed, thanks\r\nBcc: x@y.test")
        assert record["event"] == "ack" and record["case"] == case
        assert "\n" not in record["note"]
        before = len(sandbox.smtp.messages)
        assert await run_followup(sandbox, clock, 30) == []
        assert len(sandbox.smtp.messages) == before

    async def test_ack_through_the_settings_uses_the_given_clock(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """ack(settings, ...) opens the log itself and stamps the record with the clock given."""
        case = await send(sandbox, clock)
        record = ack(sandbox.settings(), case, clock=lambda: T0 + timedelta(days=5))
        assert record["time"].startswith("2026-11-07T09:00")

    async def test_unknown_case_is_a_config_error(self, sandbox: Sandbox, clock: Clock) -> None:
        """Acknowledging a reference the log does not know fails with one line."""
        await send(sandbox, clock)
        async with Notifier(sandbox.settings(), clock=clock) as notifier:
            with pytest.raises(ConfigError, match="no case NTF-NOSUCHCASE") as info:
                ack(notifier, "NTF-NOSUCHCASE")
        assert "\n" not in str(info.value)
        assert not [r for r in records(sandbox) if r["event"] == "ack"]


class TestDryRun:
    async def test_dry_run_renders_but_sends_and_records_nothing(
        self, sandbox: Sandbox, clock: Clock
    ) -> None:
        """--dry-run shows the threaded follow-up it would send, and leaves no trace."""
        await send(sandbox, clock)
        before = (len(sandbox.smtp.messages), len(records(sandbox)))
        actions = await run_followup(sandbox, clock, 14, dry_run=True)
        assert [(a.status, a.level) for a in actions] == [(FollowupStatus.DRY_RUN, "cert")]
        preview = actions[0].messages[0].message
        assert preview["In-Reply-To"] and preview["To"].addresses[0].addr_spec == CERT
        assert (len(sandbox.smtp.messages), len(records(sandbox))) == before
        # and the real run afterwards still escalates
        assert [a.status for a in await run_followup(sandbox, clock, 14)] == [FollowupStatus.SENT]


class TestRebuilding:
    def test_findings_come_back_from_structured_intents(self) -> None:
        """The intent's structured findings rebuild the same findings (same keys, same case)."""
        item = Finding(
            ip_address("2001:db8::7"),
            "Redis without auth",
            port=6379,
            hostname="h.test",
            observed_at=T0,
            extra=(("service", "redis"),),
        )
        record = {
            "findings": [
                {
                    "ip": "2001:db8::7",
                    "port": 6379,
                    "text": "Redis without auth",
                    "hostname": "h.test",
                    "observed_at": "2026-11-02T09:00:00Z",
                    "extra": [["service", "redis"]],
                },
                {"ip": "not an address", "text": "dropped"},
                "garbage",
            ]
        }
        assert findings_of(record) == [item]

    def test_findings_come_back_from_older_text_lines(self) -> None:
        """Intents written before structured findings are read from ``ip:port text``."""
        record = {"finding_texts": ["::1:9200 Open Elasticsearch", "127.0.0.9: Open FTP", 7]}
        got = findings_of(record)
        assert [(str(f.ip), f.port, f.text) for f in got] == [
            ("::1", 9200, "Open Elasticsearch"),
            ("127.0.0.9", None, "Open FTP"),
        ]

    def test_a_damaged_log_does_not_make_a_case(self) -> None:
        """Intents without a case, Message-ID or address are ignored, not fatal."""
        book = ReadModel.of(
            [
                {"event": "intent", "case": "NTF-A", "recipient": "a@b.test"},
                {"event": "intent", "message_id": "<m@x>", "recipient": "a@b.test"},
                {"event": "intent", "message_id": "<m@x>", "case": "NTF-B", "recipient": "x"},
                {"event": "outcome", "attempt_id": 5, "status": "delivered"},
                {"event": "followup", "case": ["bad"], "level": "cert"},
            ]
        )
        assert book.cases == {}
