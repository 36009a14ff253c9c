"""The whole disclosure path on the loopback internet: resolve → compose → deliver → log."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime
from email import policy
from ipaddress import ip_address
from pathlib import Path

import pytest

from notifier.ledger import verify
from notifier.models import DeliveryStatus, Finding, Role
from notifier.pipeline import Notifier
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox

FINDING = "Elasticsearch on 9200 without authentication"


def finding(ip: str, text: str = FINDING, port: int = 9200) -> Finding:
    return Finding(ip_address(ip), text, port=port, observed_at=datetime(2026, 11, 1, tzinfo=UTC))


def records(box: Sandbox) -> list[dict[str, object]]:
    path = box.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestSend:
    async def test_owner_and_network_are_both_notified(self, sandbox: Sandbox) -> None:
        """security.txt's contact and the RDAP abuse desk each get one message."""
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding("127.1.0.10")])
        got = {d.recipient: d for d in result.deliveries}
        assert set(got) == {"security@health-dept.test", "abuse@telecom-in.test"}
        assert all(d.status == DeliveryStatus.DELIVERED for d in got.values())
        assert got["security@health-dept.test"].role == Role.OWNER
        assert result.exit_code == 0
        rcpts = sorted(r for m in sandbox.smtp.messages for r in m.rcpt_tos)
        assert rcpts == ["abuse@telecom-in.test", "security@health-dept.test"]

    async def test_greylisting_is_retried_and_logged(self, sandbox: Sandbox) -> None:
        """A 451 at RCPT is retried and logged; the intent is written only right before DATA."""
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding("127.1.0.10")])
        owner = next(d for d in result.deliveries if d.recipient.startswith("security@"))
        assert owner.attempts == 2
        events = [(r["event"], r.get("recipient")) for r in records(sandbox)]
        mine = [e for e, r in events if r == "security@health-dept.test"]
        # the refused try never reached DATA: nothing was in doubt while it was retried
        assert mine == ["attempt", "intent", "outcome"]

    async def test_permanent_failure_falls_back_to_national_cert(self, sandbox: Sandbox) -> None:
        """A 550 from the only contact sends the report to the country's CERT in the same run."""
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding("127.4.0.40")])
        statuses = [(d.recipient, d.status, d.role) for d in result.deliveries]
        assert statuses == [
            ("abuse@silent-isp.test", DeliveryStatus.FAILED, Role.NETWORK),
            ("report@cisa.gov", DeliveryStatus.DELIVERED, Role.NATIONAL_CERT),
        ]
        assert result.exit_code == 0
        fallback = [r for r in records(sandbox) if r["event"] == "fallback"]
        assert fallback and fallback[0]["reason"] == "every contact failed"

    async def test_no_contact_at_all_goes_to_national_cert(self, tmp_path: Path) -> None:
        """A network without any abuse contact or host name is reported to its national CERT."""
        world = World(
            networks=(
                WorldNetwork(
                    "127.5.0.0/16", "ripe", "ORPHAN", "ORPHAN-NET", "NL", "Orphan BV", None
                ),
            ),
            hosts=(WorldHost("127.5.0.5"),),
        )
        async with Sandbox(world, directory=tmp_path) as box:
            async with Notifier(box.settings()) as notifier:
                result = await notifier.send([finding("127.5.0.5")])
        assert [(d.recipient, d.role) for d in result.deliveries] == [
            ("cert@ncsc.nl", Role.NATIONAL_CERT)
        ]
        assert result.exit_code == 0

    async def test_failure_with_no_fallback_left_exits_1(self, tmp_path: Path) -> None:
        """When every rung fails, the result says so (exit status 1)."""
        world = World(
            networks=(
                WorldNetwork(
                    "127.6.0.0/16", "arin", "NET-6", "GONE", "ZZ", "Gone Inc", "abuse@gone.test"
                ),
            ),
            hosts=(WorldHost("127.6.0.6"),),
            mail_script={"abuse@gone.test": ["550 5.1.1 no such user"]},
        )
        async with Sandbox(world, directory=tmp_path) as box:
            async with Notifier(box.settings()) as notifier:
                result = await notifier.send([finding("127.6.0.6")])
        assert [d.status for d in result.deliveries] == [DeliveryStatus.FAILED]
        assert result.exit_code == 1

    async def test_rdap_down_falls_back_to_whois(self, sandbox: Sandbox) -> None:
        """With the RDAP registry answering 500, the WHOIS abuse contact is used."""
        sandbox.registries["apnic"].fail(times=50, status=500)
        async with Notifier(sandbox.settings()) as notifier:
            resolution = await notifier.resolve("127.1.0.10")
        network = [c for c in resolution.recipients if c.role == Role.NETWORK]
        assert [c.address for c in network] == ["abuse@telecom-in.test"]
        assert network[0].sources == ("whois",)
        assert any(source == "rdap" for source, _ in resolution.errors)

    async def test_messages_carry_the_log_head_and_match_their_digest(
        self, sandbox: Sandbox
    ) -> None:
        """Each message names the chain head at sending time; the stored bytes match the log."""
        async with Notifier(sandbox.settings()) as notifier:
            await notifier.send([finding("127.1.0.10")])
        received = sandbox.smtp.messages[0]
        parsed = email.message_from_bytes(received.raw, policy=policy.default)
        count, _, digest = str(parsed["X-Notifier-Log-Head"]).partition(":")
        assert int(count) >= 1 and len(digest) == 64
        state = sandbox.settings().state_dir
        assert verify(state / "audit.jsonl", messages_dir=state / "messages").ok


class TestIdempotence:
    async def test_second_send_is_not_sent_again(self, sandbox: Sandbox) -> None:
        """The same IP, recipient and finding already delivered is skipped."""
        async with Notifier(sandbox.settings()) as notifier:
            await notifier.send([finding("127.2.0.20")])
        async with Notifier(sandbox.settings()) as notifier:
            again = await notifier.send([finding("127.2.0.20")])
        assert [d.status for d in again.deliveries] == [DeliveryStatus.ALREADY_SENT]
        assert again.exit_code == 0
        assert len(sandbox.smtp.messages) == 1

    async def test_force_sends_again(self, sandbox: Sandbox) -> None:
        """--force resends a delivered finding."""
        async with Notifier(sandbox.settings()) as notifier:
            await notifier.send([finding("127.2.0.20")])
            again = await notifier.send([finding("127.2.0.20")], force=True)
        assert [d.status for d in again.deliveries] == [DeliveryStatus.DELIVERED]
        assert len(sandbox.smtp.messages) == 2

    async def test_a_new_finding_is_sent(self, sandbox: Sandbox) -> None:
        """A different finding on the same address is news, not a duplicate."""
        async with Notifier(sandbox.settings()) as notifier:
            await notifier.send([finding("127.2.0.20")])
            other = await notifier.send([finding("127.2.0.20", "Redis on 6379 without auth", 6379)])
        assert [d.status for d in other.deliveries] == [DeliveryStatus.DELIVERED]

    async def test_intent_without_outcome_is_in_doubt(self, sandbox: Sandbox) -> None:
        """A crash between intent and outcome leaves the finding in doubt: not resent."""
        settings = sandbox.settings()
        async with Notifier(settings) as notifier:
            resolution = await notifier.resolve("127.2.0.20")
            item = finding("127.2.0.20")
            notifier.audit.append(
                "intent",
                attempt_id="crashed",
                worker="a-run-that-died",  # not this live process: its intent is in doubt
                ip="127.2.0.20",
                recipient=resolution.recipients[0].address,
                finding_keys=[item.key],
            )
        async with Notifier(settings) as notifier:
            result = await notifier.send([item])
        assert [d.status for d in result.deliveries] == [DeliveryStatus.IN_DOUBT]
        assert sandbox.smtp.messages == []


class TestDryRun:
    async def test_dry_run_renders_but_sends_and_records_nothing(self, sandbox: Sandbox) -> None:
        """--dry-run composes every message and leaves the SMTP server and the log untouched."""
        settings = sandbox.settings()
        async with Notifier(settings) as notifier:
            result = await notifier.send([finding("127.1.0.10")], dry_run=True)
        assert {d.status for d in result.deliveries} == {DeliveryStatus.DRY_RUN}
        assert len(result.messages) == 2
        assert sandbox.smtp.messages == []
        assert not (settings.state_dir / "audit.jsonl").exists()


class TestTestRecipient:
    async def test_every_message_goes_to_the_tester(self, sandbox: Sandbox) -> None:
        """--test-recipient redirects each message and records the intended recipient."""
        async with Notifier(sandbox.settings()) as notifier:
            await notifier.send([finding("127.1.0.10")], test_recipient="me@research.test")
        assert {r for m in sandbox.smtp.messages for r in m.rcpt_tos} == {"me@research.test"}
        intents = [r for r in records(sandbox) if r["event"] == "intent"]
        assert {r["intended_recipient"] for r in intents} == {
            "security@health-dept.test",
            "abuse@telecom-in.test",
        }


class TestEvidence:
    async def test_chain_head_is_timestamped_after_a_run(self, sandbox: Sandbox) -> None:
        """With a TSA configured, the run ends with an anchor record and a stored token."""
        audit = {"tsa_url": sandbox.tsa_url, "tsa_ca": str(sandbox.tsa_ca_path())}
        settings = sandbox.settings(audit=audit)
        async with Notifier(settings) as notifier:
            await notifier.send([finding("127.2.0.20")])
        log = records(sandbox)
        assert log[-1]["event"] == "anchor"
        tokens = list((settings.state_dir / "timestamps").iterdir())
        assert tokens
        report = verify(
            settings.state_dir / "audit.jsonl",
            timestamps_dir=settings.state_dir / "timestamps",
            messages_dir=settings.state_dir / "messages",
        )
        assert report.ok and report.timestamps

    async def test_signed_outcomes_verify_with_the_public_key(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """With an Ed25519 key configured, outcome records are signed and verify checks them."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        key_file = tmp_path / "signing.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        settings = sandbox.settings(audit={"signing_key": str(key_file)})
        async with Notifier(settings) as notifier:
            await notifier.send([finding("127.2.0.20")])
        outcome = next(r for r in records(sandbox) if r["event"] == "outcome")
        assert "sig" in outcome
        report = verify(settings.state_dir / "audit.jsonl", public_key=key.public_key())
        assert report.ok and report.signatures == 1
        other = ed25519.Ed25519PrivateKey.generate().public_key()
        assert not verify(settings.state_dir / "audit.jsonl", public_key=other).ok


class TestLimits:
    async def test_suppressed_address_is_never_written_to(self, sandbox: Sandbox) -> None:
        """A suppressed recipient is refused and the refusal is logged."""
        async with Notifier(sandbox.settings()) as notifier:
            notifier.suppress("abuse@cloud-eu.test", "asked us to stop")
            result = await notifier.send([finding("127.2.0.20")])
        assert [d.status for d in result.deliveries][0] == DeliveryStatus.SUPPRESSED
        assert not any("abuse@cloud-eu.test" in m.rcpt_tos for m in sandbox.smtp.messages)
        assert any(r["event"] == "refusal" for r in records(sandbox))

    async def test_run_cap_stops_sending(self, sandbox: Sandbox) -> None:
        """Past limits.max_messages_per_run nothing more is sent in that run."""
        settings = sandbox.settings(limits={"max_messages_per_run": 1})
        async with Notifier(settings) as notifier:
            result = await notifier.send([finding("127.1.0.10")])
        assert [d.status for d in result.deliveries].count(DeliveryStatus.HELD_BACK) == 1
        assert len(sandbox.smtp.messages) == 1

    async def test_daily_cap_per_recipient(self, sandbox: Sandbox) -> None:
        """limits.per_recipient_per_day counts deliveries of the last 24 hours across runs."""
        settings = sandbox.settings(limits={"per_recipient_per_day": 1})
        async with Notifier(settings) as notifier:
            await notifier.send([finding("127.2.0.20")])
        async with Notifier(settings) as notifier:
            second = await notifier.send([finding("127.2.0.21", "open Redis", 6379)])
        assert second.deliveries[0].status == DeliveryStatus.HELD_BACK

    async def test_state_files_are_private(self, sandbox: Sandbox) -> None:
        """The audit log and stored messages are created with mode 0600."""
        settings = sandbox.settings()
        async with Notifier(settings) as notifier:
            await notifier.send([finding("127.2.0.20")])
        state = settings.state_dir
        assert (state / "audit.jsonl").stat().st_mode & 0o777 == 0o600
        for message in (state / "messages").iterdir():
            assert message.stat().st_mode & 0o777 == 0o600

    async def test_smtp_password_never_reaches_the_log(
        self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The password from the environment appears in no state file."""
        monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "hunter2-very-secret")
        async with Notifier(sandbox.settings()) as notifier:
            await notifier.send([finding("127.2.0.20")])
        for path in sandbox.settings().state_dir.rglob("*"):
            if path.is_file():
                assert b"hunter2-very-secret" not in path.read_bytes()


class TestNobody:
    async def test_no_contact_at_all_is_exit_1(self, tmp_path: Path) -> None:
        """A network with no abuse desk, no host name and no CERT for its country: exit 1."""
        world = World(
            networks=(WorldNetwork("127.7.0.0/16", "ripe", "X", "X", "ZZ", "Nobody", None),),
            hosts=(WorldHost("127.7.0.7"),),
        )
        async with Sandbox(world, directory=tmp_path) as box:
            async with Notifier(box.settings()) as notifier:
                result = await notifier.send([finding("127.7.0.7")])
        assert result.deliveries == [] and result.exit_code == 1
