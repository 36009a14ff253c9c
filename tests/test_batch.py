"""notify batch: one message per recipient, each network resolved once, resumable."""

from __future__ import annotations

import asyncio
import email
import json
from collections.abc import AsyncIterator
from email import policy
from ipaddress import ip_address
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier import Finding, Notifier, SyncNotifier
from notifier.batch import Batch, FindingOutcome
from notifier.cache import LookupCache
from notifier.cli import app
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox

runner = CliRunner()

WORLD = World(
    networks=(
        WorldNetwork("127.10.0.0/16", "ripe", "NET-A", "NET-A", "NL", "A BV", "abuse@a.test"),
        WorldNetwork("127.11.0.0/16", "arin", "NET-B", "NET-B", "US", "B Inc", "abuse@b.test"),
        WorldNetwork("127.12.0.0/16", "lacnic", "NET-C", "NET-C", "BR", "C SA", "abuse@c.test"),
    ),
    hosts=tuple(WorldHost(f"127.{n}.0.{h}") for n in (10, 11, 12) for h in (1, 2)),
    mail_script={"abuse@c.test": ["550 5.1.1 unknown user"] * 10},
)

CSV = "ip,port,finding\n" + "".join(
    f"127.{n}.0.{h},{port},open {svc}\n"
    for n in (10, 11, 12)
    for h in (1, 2)
    for port, svc in ((9200, "Elasticsearch"), (6379, "Redis"))
)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(WORLD, directory=tmp_path) as box:
        yield box


async def invoke(*args: str, stdin: str = "") -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def rdap_requests(box: Sandbox) -> int:
    return sum(r.request_count for r in box.registries.values())


class TestAggregation:
    async def test_one_message_per_recipient_listing_all_findings(self, sandbox: Sandbox) -> None:
        """12 findings on 6 addresses in 3 networks: one message per abuse desk, with a CSV."""
        config = str(sandbox.write_config())
        code, stdout, _ = await invoke("batch", "-", "--json", "--config", config, stdin=CSV)
        outcomes = [json.loads(line) for line in stdout.splitlines()]
        assert len(outcomes) == 12
        by_recipient = {m.rcpt_tos[0]: m for m in sandbox.smtp.messages}
        assert {"abuse@a.test", "abuse@b.test"} <= set(by_recipient)
        message = email.message_from_bytes(by_recipient["abuse@a.test"].raw, policy=policy.default)
        attachments = {part.get_filename(): part for part in message.iter_attachments()}
        rows = attachments["findings.csv"].get_content().strip().splitlines()
        assert len(rows) == 1 + 4
        assert code == 0

    async def test_each_network_is_looked_up_once(self, sandbox: Sandbox) -> None:
        """Upstream RDAP requests equal distinct networks, not addresses."""
        config = str(sandbox.write_config())
        await invoke("batch", "-", "--dry-run", "--config", config, stdin=CSV)
        assert rdap_requests(sandbox) == 3

    async def test_cache_is_reused_by_the_next_run(self, sandbox: Sandbox) -> None:
        """The range cache persists under state.dir: a second run asks no registry."""
        config = str(sandbox.write_config())
        await invoke("batch", "-", "--dry-run", "--config", config, stdin=CSV)
        before = rdap_requests(sandbox)
        await invoke("batch", "-", "--dry-run", "--config", config, stdin=CSV)
        assert rdap_requests(sandbox) == before

    async def test_failed_network_falls_back_to_cert_in_one_message(self, sandbox: Sandbox) -> None:
        """abuse@c.test refuses: CERT.br gets one message with all four findings."""
        config = str(sandbox.write_config())
        code, stdout, _ = await invoke("batch", "-", "--json", "--config", config, stdin=CSV)
        to_cert = [m for m in sandbox.smtp.messages if m.rcpt_tos == ("cert@cert.br",)]
        assert len(to_cert) == 1
        c_outcomes = [json.loads(x) for x in stdout.splitlines() if '"127.12.' in x]
        assert {o["status"] for o in c_outcomes} == {"sent"}
        assert all("cert@cert.br" in o["recipients"] for o in c_outcomes)
        assert code == 0

    async def test_split_past_the_configured_maximum(self, sandbox: Sandbox) -> None:
        """max_findings_per_message = 3 splits four findings into two messages."""
        config = str(sandbox.write_config(batch={"max_findings_per_message": 3}))
        await invoke("batch", "-", "--config", config, stdin=CSV)
        to_a = [m for m in sandbox.smtp.messages if m.rcpt_tos == ("abuse@a.test",)]
        assert len(to_a) == 2

    async def test_audit_log_records_which_findings_each_message_carried(
        self, sandbox: Sandbox
    ) -> None:
        """Each intent lists the keys and texts of the findings in that message."""
        config = str(sandbox.write_config())
        await invoke("batch", "-", "--config", config, stdin=CSV)
        log = sandbox.settings().state_dir / "audit.jsonl"
        intents = [json.loads(x) for x in log.read_text().splitlines() if '"intent"' in x]
        to_a = next(r for r in intents if r["recipient"] == "abuse@a.test")
        assert len(to_a["finding_keys"]) == 4 and len(to_a["finding_texts"]) == 4


class TestResume:
    async def test_rerun_sends_nothing_twice(self, sandbox: Sandbox) -> None:
        """Run again on the same input: every finding is already sent, no new message."""
        config = str(sandbox.write_config())
        await invoke("batch", "-", "--config", config, stdin=CSV)
        sent = len(sandbox.smtp.messages)
        code, stdout, _ = await invoke("batch", "-", "--json", "--config", config, stdin=CSV)
        assert len(sandbox.smtp.messages) == sent
        statuses = {json.loads(x)["status"] for x in stdout.splitlines()}
        assert statuses == {"already-sent"}
        assert code == 0

    async def test_new_findings_only_are_sent_on_rerun(self, sandbox: Sandbox) -> None:
        """A second input with one new finding sends exactly one new message."""
        config = str(sandbox.write_config())
        await invoke("batch", "-", "--config", config, stdin=CSV)
        sent = len(sandbox.smtp.messages)
        await invoke(
            "batch", "-", "--config", config, stdin=CSV + "127.10.0.1,27017,open MongoDB\n"
        )
        assert len(sandbox.smtp.messages) == sent + 1


class TestInput:
    async def test_bad_lines_are_reported_and_the_rest_goes_on(self, sandbox: Sandbox) -> None:
        """A malformed line and a refused target are reported with the line; others are sent."""
        config = str(sandbox.write_config())
        data = "ip,port,finding\nnot-an-ip,1,x\n192.0.2.1,22,ssh\n127.10.0.1,9200,open ES\n"
        code, stdout, stderr = await invoke("batch", "-", "--json", "--config", config, stdin=data)
        statuses = [json.loads(x)["status"] for x in stdout.splitlines()]
        assert sorted(statuses) == ["bad-input", "refused", "sent"]
        assert code == 0

    async def test_unknown_format_is_exit_2(self, sandbox: Sandbox) -> None:
        """--format with an unknown name is bad input."""
        code, _, stderr = await invoke("batch", "-", "--format", "pcap", stdin="")
        assert code == 2 and "unknown input format" in stderr

    async def test_missing_file_is_exit_2(self, tmp_path: Path) -> None:
        """A file that cannot be read is one line and exit 2."""
        code, _, stderr = await invoke("batch", str(tmp_path / "nope.txt"))
        assert code == 2 and "cannot read" in stderr

    async def test_test_recipient_gets_everything(self, sandbox: Sandbox) -> None:
        """--test-recipient sends every message of the run to one address."""
        config = str(sandbox.write_config())
        await invoke(
            "batch", "-", "--test-recipient", "me@research.test", "--config", config, stdin=CSV
        )
        assert {m.rcpt_tos for m in sandbox.smtp.messages} == {("me@research.test",)}


class TestPythonAPI:
    async def test_submit_and_flush(self, sandbox: Sandbox) -> None:
        """Batch.submit/flush do what the batch command does: one message per recipient."""
        outcomes: list[FindingOutcome] = []
        async with Notifier(sandbox.settings()) as notifier:
            batch = Batch(notifier, on_outcome=outcomes.append)
            for line in CSV.splitlines()[1:5]:
                ip, port, text = line.split(",")
                await batch.submit(Finding(ip_address(ip), text, port=int(port)))
            await batch.flush()
        assert all(isinstance(o, FindingOutcome) for o in outcomes)
        assert {o.status for o in outcomes} == {"sent"}
        assert [m.rcpt_tos for m in sandbox.smtp.messages] == [("abuse@a.test",)]

    async def test_sync_wrapper(self, sandbox: Sandbox) -> None:
        """SyncNotifier offers the same calls without an event loop."""
        settings = sandbox.settings()

        def scanner_loop() -> list[FindingOutcome]:
            with SyncNotifier(settings) as n:
                resolution = n.resolve("127.11.0.1")
                assert resolution.recipients[0].address == "abuse@b.test"
                n.submit(Finding(ip_address("127.11.0.1"), "open Redis", port=6379))
                return n.flush()

        outcomes = await asyncio.to_thread(scanner_loop)
        assert [o.status for o in outcomes] == ["sent"]

    async def test_batch_with_persistent_cache(self, sandbox: Sandbox) -> None:
        """One registry request per network in a batch; the next run asks the cache, by range."""
        settings = sandbox.settings()
        hits = []
        for _ in range(2):
            cache = LookupCache.from_settings(settings)
            async with Notifier(settings, cache=cache) as notifier:
                batch = Batch(notifier, dry_run=True)
                for h in range(1, 30):
                    await batch.submit(Finding(ip_address(f"127.10.0.{h}"), "open ES", port=9200))
                await batch.flush()
            cache.close()
            hits.append(cache.stats.hits)
            assert rdap_requests(sandbox) == 1
        assert hits[1] >= 1


class TestCaching:
    async def test_ptr_and_security_txt_are_cached_by_name(self, tmp_path: Path) -> None:
        """A second run asks the DNS server for no PTR and fetches no security.txt again."""
        async with Sandbox(directory=tmp_path) as box:
            settings = box.settings()
            for _ in range(2):
                cache = LookupCache.from_settings(settings)
                async with Notifier(settings, cache=cache) as notifier:
                    await notifier.resolve("127.1.0.10")
                cache.close()
                if _ == 0:
                    ptr = sum(1 for q in box.dns.queries if "in-addr.arpa" in q.name)
                    fetched = sum(1 for r in box.web.requests if "security.txt" in r.path)
            assert sum(1 for q in box.dns.queries if "in-addr.arpa" in q.name) == ptr
            assert sum(1 for r in box.web.requests if "security.txt" in r.path) == fetched
            assert ptr >= 1 and fetched >= 1

    async def test_negative_registry_answers_are_cached(self, tmp_path: Path) -> None:
        """An address no registry knows is asked about once, not on every run."""
        world = World(networks=(), hosts=())
        async with Sandbox(world, directory=tmp_path) as box:
            box.add_rdap("ripe", "127.9.0.0/16", {"objectClassName": "ip network"})
            box.registries["ripe"].behave()
            settings = box.settings()
            counts = []
            for _ in range(2):
                cache = LookupCache.from_settings(settings)
                async with Notifier(settings, cache=cache) as notifier:
                    await notifier.resolve("127.9.9.9")
                cache.close()
                counts.append(box.registries["ripe"].request_count)
            assert counts[0] >= 1 and counts[1] == counts[0]
