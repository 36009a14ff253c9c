"""Caps and suppression are not failures: nothing climbs the ladder because of them.

A contact held back by the daily per-recipient cap or the run cap waits for a later run (exit 3,
with a line saying which limit); a contact on the suppression list is off the ladder. Neither
sends the report to the registrar or the national CERT in its place.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

from typer.testing import CliRunner

from notifier.cli import app
from notifier.config import LimitSettings
from notifier.ladder import climbs, settles
from notifier.models import DeliveryStatus, Finding
from notifier.pipeline import Notifier
from notifier.testing import Sandbox

runner = CliRunner()
D = DeliveryStatus
DESK = "abuse@cloud-eu.test"  # 127.2.0.20's only contact: the ladder above it is the registrar


async def invoke(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


def finding(ip: str, text: str, port: int = 6379) -> Finding:
    return Finding(ip_address(ip), text, port=port, observed_at=datetime(2026, 11, 1, tzinfo=UTC))


def recipients(box: Sandbox) -> list[str]:
    return [r for m in box.smtp.messages for r in m.rcpt_tos]


def records(box: Sandbox) -> list[dict[str, object]]:
    path = box.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestRule:
    def test_only_failures_climb(self) -> None:
        """Failed climbs; held back, suppressed, in doubt and delivered do not."""
        assert climbs([]) and climbs([D.FAILED]) and climbs([D.FAILED, D.SUPPRESSED])
        for status in (D.HELD_BACK, D.SUPPRESSED, D.IN_DOUBT, D.DELIVERED, D.ALREADY_SENT):
            assert not climbs([status])
        assert not climbs([D.FAILED, D.HELD_BACK])
        assert settles(D.HELD_BACK) and not settles(D.FAILED) and not settles(D.SUPPRESSED)

    def test_defaults_let_an_ordinary_batch_go_out_whole(self) -> None:
        """30,000 findings for 667 abuse desks is one message each, well inside the run cap."""
        assert LimitSettings().max_messages_per_run >= 667 * 10


class TestDailyCap:
    async def test_second_send_over_the_daily_cap_waits(self, sandbox: Sandbox) -> None:
        """per_recipient_per_day = 1: the second send is held back, not sent to the registrar."""
        config = str(sandbox.write_config(limits={"per_recipient_per_day": 1}))
        code, _, _ = await invoke(
            "send", "127.2.0.20", "--finding", "open Redis", "--config", config
        )
        assert code == 0 and recipients(sandbox) == [DESK]
        code, stdout, stderr = await invoke(
            "send", "127.2.0.20", "--port", "9200", "--finding", "open Elasticsearch",
            "--json", "--config", config,
        )  # fmt: skip
        assert code == 3
        assert recipients(sandbox) == [DESK]  # nobody else: not the registrar, not the CERT
        report = json.loads(stdout)
        assert report["exit"] == 3 and report["held_back"] == 1
        (delivery,) = report["deliveries"]
        assert delivery["status"] == "held-back"
        assert delivery["reason"].startswith("held back: daily cap of 1 reached")
        assert "1 message held back (daily cap of 1 reached: 1)" in stderr
        refusal = [r for r in records(sandbox) if r["event"] == "refusal"]
        assert refusal[-1]["status"] == "held-back"
        assert not [r for r in records(sandbox) if r["event"] == "fallback"]

    async def test_a_batch_of_100000_findings_for_one_address_does_not_escalate(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """The default daily cap holds the rest back; the registrar and CERT hear nothing."""
        path = tmp_path / "scan.jsonl"
        path.write_text(
            "".join(
                json.dumps({"ip": "127.2.0.20", "port": 1 + n % 60000, "finding": f"svc {n}"})
                + "\n"
                for n in range(100_000)
            )
        )
        config = str(sandbox.write_config())
        code, _, stderr = await invoke("batch", str(path), "--config", config)
        assert code == 3, stderr
        cap = LimitSettings().per_recipient_per_day
        assert set(recipients(sandbox)) == {DESK} and len(recipients(sandbox)) == cap
        held = 100_000 // 500 - cap
        assert f"{held} messages held back (daily cap of {cap} reached: {held})" in stderr
        assert not [r for r in records(sandbox) if r["event"] == "fallback"]


class TestRunCap:
    async def test_run_cap_holds_back_and_exits_3(self, sandbox: Sandbox) -> None:
        """Over max_messages_per_run the rest is held back with exit 3, never 0."""
        settings = sandbox.settings(limits={"max_messages_per_run": 1})
        async with Notifier(settings) as notifier:
            result = await notifier.send([finding("127.1.0.10", "open Elasticsearch", 9200)])
        statuses = [d.status for d in result.deliveries]
        assert statuses.count(D.DELIVERED) == 1 and statuses.count(D.HELD_BACK) == 1
        assert "run cap of 1 messages reached" in result.held_back[0].reason
        assert result.exit_code == 3
        assert len(sandbox.smtp.messages) == 1


class TestSuppression:
    async def test_suppressed_desk_is_not_replaced_by_its_registrar(self, sandbox: Sandbox) -> None:
        """An opted-out desk is reported as suppressed; nobody above it is told instead."""
        async with Notifier(sandbox.settings()) as notifier:
            notifier.suppress(DESK, "asked us to stop")
            result = await notifier.send([finding("127.2.0.20", "open Redis")])
        (delivery,) = result.deliveries
        assert delivery.status == D.SUPPRESSED and delivery.reason.startswith("suppressed")
        assert recipients(sandbox) == [] and result.exit_code == 0
