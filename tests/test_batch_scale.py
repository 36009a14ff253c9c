"""What lets a batch scale: registry rate limits, keep-alive, group commit, narrowing locks,
parallel delivery within the caps, and findings kept compactly without losing detail."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.batch import Batch, FindingOutcome
from notifier.cache import LookupCache
from notifier.errors import AuditError
from notifier.ledger import AuditLog, GroupCommit, files, head, verify
from notifier.models import Finding
from notifier.pipeline import Notifier
from notifier.sandbox.rdap import RDAPRegistry, network_json
from notifier.sandbox.web import Reply, WebServer
from notifier.sandbox.world import World, WorldNetwork
from notifier.sources import utcnow
from notifier.testing import Sandbox

# six abuse desks, each network in its own /16
DESKS = World(
    networks=tuple(
        WorldNetwork(
            f"127.{60 + n}.0.0/16",
            "ripe",
            f"NET-{n}",
            f"NET-{n}",
            "NL",
            f"Org {n}",
            f"abuse@{n}.test",
        )
        for n in range(6)
    ),
    hosts=(),
)

# six customer /24s side by side in one provider /16
SIBLINGS = World(
    networks=tuple(
        WorldNetwork(
            f"127.70.{n}.0/24",
            "arin",
            f"NET-S{n}",
            f"NET-S{n}",
            "US",
            f"Cust {n}",
            f"abuse@s{n}.test",
        )
        for n in range(1, 7)
    ),
    hosts=(),
)


def rdap_requests(box: Sandbox) -> int:
    return sum(r.request_count for r in box.registries.values())


async def run_batch(
    notifier: Notifier, findings: list[Finding], **options: Any
) -> list[FindingOutcome]:
    outcomes: list[FindingOutcome] = []
    batch = Batch(notifier, on_outcome=outcomes.append, **options)
    for item in findings:
        await batch.submit(item)
    await batch.flush()
    return outcomes


@pytest.fixture
async def desks(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(DESKS, directory=tmp_path) as box:
        yield box


class TestRegistryRateLimit:
    async def test_queries_past_the_limit_get_429_with_retry_after(self) -> None:
        """Limited to 2/s with a burst of 2, the third query at once is refused, Retry-After: 1."""
        now = [100.0]
        answer = network_json("127.40.0.0/16", "NET-40", abuse_email="abuse@40.test")
        registry = RDAPRegistry(
            networks={"127.40.0.0/16": answer},
            rate_limit_per_second=2,
            rate_limit_burst=2,
            clock=lambda: now[0],
        )
        async with registry, httpx.AsyncClient(trust_env=False, timeout=5) as client:
            replies = [await client.get(f"{registry.base_url}ip/127.40.0.1") for _ in range(3)]
            now[0] += 0.5  # one token back
            later = await client.get(f"{registry.base_url}ip/127.40.0.1")
        assert [r.status_code for r in replies] == [200, 200, 429]
        assert replies[2].headers["retry-after"] == "1"
        assert later.status_code == 200
        assert registry.throttled == 1
        assert registry.request_count == 4

    async def test_bootstrap_files_are_not_limited(self) -> None:
        """Bootstrap fetches neither spend tokens nor get refused."""
        now = [0.0]
        registry = RDAPRegistry(rate_limit_per_second=1, rate_limit_burst=1, clock=lambda: now[0])
        async with registry, httpx.AsyncClient(trust_env=False, timeout=5) as client:
            statuses = [
                (await client.get(f"{registry.bootstrap_url}ipv4.json")).status_code
                for _ in range(3)
            ]
        assert statuses == [200, 200, 200] and registry.throttled == 0


class TestKeepAlive:
    @staticmethod
    async def exchange(server: WebServer, count: int) -> tuple[list[bytes], bytes]:
        """``count`` requests on one connection; the replies' bodies, and what follows them."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        bodies = []
        try:
            for _ in range(count):
                writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                await writer.drain()
                head_text = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                length = int(head_text.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                bodies.append(await asyncio.wait_for(reader.readexactly(length), 2))
            rest = await asyncio.wait_for(reader.read(), 2) if not server.keep_alive else b""
        finally:
            writer.close()
        return bodies, rest

    async def test_several_requests_share_one_connection(self) -> None:
        """With keep_alive, a second request on the same connection is answered."""
        async with WebServer() as server:
            server.keep_alive = True
            server.route("/hello", Reply(200, b"hi"))
            bodies, _ = await self.exchange(server, 2)
        assert bodies == [b"hi", b"hi"]
        assert len(server.requests) == 2

    async def test_without_keep_alive_the_server_closes(self) -> None:
        """By default the connection ends after one answer."""
        async with WebServer() as server:
            server.route("/hello", Reply(200, b"hi"))
            bodies, rest = await self.exchange(server, 1)
        assert bodies == [b"hi"] and rest == b""


class TestGroupCommit:
    async def test_concurrent_appends_share_writes_and_keep_one_chain(self, tmp_path: Path) -> None:
        """Fifty records at once: in order, one verified chain, fewer writes than records."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        group = GroupCommit(log)
        records = await asyncio.gather(
            *(group.append("resolution", ip=f"127.0.0.{n}") for n in range(50))
        )
        assert [r["seq"] for r in records] == list(range(1, 51))
        assert [r["ip"] for r in records] == [f"127.0.0.{n}" for n in range(50)]
        assert group.groups < 50
        assert verify(log.path).ok

    async def test_a_refused_record_fails_only_its_caller(self, tmp_path: Path) -> None:
        """A secret-looking field raises for its caller; the records beside it are written."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        group = GroupCommit(log)
        results = await asyncio.gather(
            group.append("note", text="one"),
            group.append("note", password="hunter2"),
            group.append("note", text="two"),
            return_exceptions=True,
        )
        assert isinstance(results[1], ValueError)
        assert [r["text"] for r in log.records()] == ["one", "two"]

    async def test_records_handed_in_while_another_process_writes_join_the_group(
        self, tmp_path: Path
    ) -> None:
        """While the writer waits for the log's lock (another process holds it), the records
        handed in meanwhile are taken with the first once the lock is had: one write for all;
        ``prepare`` (the gate's reading) runs before the lock is asked for."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        prepared = threading.Event()
        group = GroupCommit(log, prepare=prepared.set)
        with open(tmp_path / "audit.jsonl.lock", "a") as other:
            fcntl.flock(other, fcntl.LOCK_EX)  # another process writing
            first = asyncio.ensure_future(group.append("note", text="first"))
            assert await asyncio.to_thread(prepared.wait, 5)
            rest = [asyncio.ensure_future(group.append("note", text=f"n{i}")) for i in range(9)]
            await asyncio.sleep(0.1)
            assert not first.done()
        records = await asyncio.gather(first, *rest)
        assert [r["seq"] for r in records] == list(range(1, 11))
        assert group.groups == 1
        assert verify(log.path).ok

    async def test_messages_kept_with_their_records(self, tmp_path: Path) -> None:
        """A message handed in with its record is stored once the record is on disk, in the
        same trip (several at once); none is stored for a record its guard refused, and every
        stored one has its intent (verify)."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        group = GroupCommit(log)
        bodies = [f"Subject: {n}\r\n\r\n.{n}\r\n".encode() for n in range(6)]

        def intent(n: int) -> dict[str, object]:
            digest = hashlib.sha256(bodies[n]).hexdigest()
            return {"attempt_id": f"a{n}", "recipient": "x@example.net", "digest": digest}

        records = await asyncio.gather(
            *(
                group.append_if(lambda n=n: n != 3, "intent", None, bodies[n], **intent(n))
                for n in range(6)
            )
        )
        assert [r is None for r in records] == [n == 3 for n in range(6)]
        kept = {d: log.load_message(d) for d in log.message_digests()}
        assert kept == {hashlib.sha256(b).hexdigest(): b for n, b in enumerate(bodies) if n != 3}
        assert not list((tmp_path / "messages").glob(".*.tmp"))
        assert verify(log.path).ok

    async def test_a_message_that_cannot_be_kept_fails_only_its_caller(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The disk refuses a kept message: its record is on disk, its caller hears the error,
        and the records beside it in the same group are answered as written."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        group = GroupCommit(log)

        def full(raws: object) -> list[str]:
            raise AuditError("cannot store message: No space left on device")

        monkeypatch.setattr(log, "store_messages", full)
        results = await asyncio.gather(
            group.append("intent", None, b"Subject: x\r\n\r\nbody\r\n", attempt_id="a1"),
            group.append("note", text="beside it"),
            return_exceptions=True,
        )
        assert isinstance(results[0], AuditError)
        assert not isinstance(results[1], BaseException) and results[1]["text"] == "beside it"
        assert [r["event"] for r in log.records()] == ["intent", "note"]

    async def test_a_write_given_up_takes_no_record_handed_in_after(self, tmp_path: Path) -> None:
        """A group's writer cancelled while it waits for the lock takes nothing when it gets
        it: the records still queued, and one handed in afterwards, are written and answered
        by the next writer."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        waiting = threading.Event()
        group = GroupCommit(log, prepare=waiting.set)
        with open(tmp_path / "audit.jsonl.lock", "a") as other:
            fcntl.flock(other, fcntl.LOCK_EX)
            first = asyncio.ensure_future(group.append("note", text="given up"))
            assert await asyncio.to_thread(waiting.wait, 5)
            writer = group._writer
            assert writer is not None
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            second = asyncio.ensure_future(group.append("note", text="after"))
            await asyncio.sleep(0.05)
        records = await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert [r["text"] for r in records] == ["given up", "after"]
        assert [r["text"] for r in log.records()] == ["given up", "after"]

    async def test_the_lock_is_let_go_before_the_flush(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A group is flushed to disk once the lock is let go, and returned only then: another
        writer appends while the first one's flush is still going."""
        path = tmp_path / "audit.jsonl"
        mine, other = AuditLog(path, clock=utcnow), AuditLog(path, clock=utcnow)
        flushing, flushed = threading.Event(), threading.Event()
        real = files.sync_log

        def slow_sync(fd: int) -> None:
            if not flushing.is_set():
                flushing.set()
                assert flushed.wait(5)
            real(fd)

        monkeypatch.setattr(files, "sync_log", slow_sync)
        group = GroupCommit(mine)
        first = asyncio.ensure_future(group.append("note", text="mine"))
        assert await asyncio.to_thread(flushing.wait, 5)
        written = await asyncio.wait_for(asyncio.to_thread(other.append, "note", text="theirs"), 5)
        assert written["seq"] == 2 and not first.done()
        flushed.set()
        assert (await first)["seq"] == 1
        assert verify(path).ok

    def test_append_many_writes_one_chain(self, tmp_path: Path) -> None:
        """append_many continues the chain of earlier appends and verifies end to end."""
        log = AuditLog(tmp_path / "audit.jsonl", clock=utcnow)
        log.append("note", text="first")
        written = log.append_many([("note", {"text": f"n{i}"}) for i in range(5)])
        assert [r["seq"] for r in written] == [2, 3, 4, 5, 6]
        assert written[0]["prev"] != written[1]["prev"]
        assert verify(log.path).ok

    def test_head_counts_what_others_append_too(self, tmp_path: Path) -> None:
        """AuditLog.head() matches head() as this and another writer append."""
        path = tmp_path / "audit.jsonl"
        mine, other = AuditLog(path, clock=utcnow), AuditLog(path, clock=utcnow)
        assert mine.head() == head(path)
        mine.append("note", text="a")
        assert mine.head() == head(path) == (1, head(path)[1])
        other.append_many([("note", {"text": "b"}), ("note", {"text": "c"})])
        assert mine.head() == head(path) and mine.head()[0] == 3


class TestNarrowingLocks:
    async def test_sibling_networks_in_one_block_are_fetched_together(self, tmp_path: Path) -> None:
        """Six /24s of one /16, 0.5 s an answer: each fetched once, not one after another."""
        async with Sandbox(SIBLINGS, directory=tmp_path, latency=0.5) as box:
            settings = box.settings(rdap={"rate_per_second": 100})
            findings = [
                Finding(ip_address(f"127.70.{n}.{h}"), "open Redis", port=6379)
                for h in (1, 2)
                for n in range(1, 7)
            ]
            cache = LookupCache.from_settings(settings)
            started = time.perf_counter()
            async with Notifier(settings, cache=cache) as notifier:
                outcomes = await run_batch(notifier, findings, dry_run=True)
            elapsed = time.perf_counter() - started
            cache.close()
            requests = rdap_requests(box)
        assert {o.status for o in outcomes} == {"dry-run"}
        assert requests == 6
        # one after another: bootstrap + 6 answers = 3.5 s; together: bootstrap + 2 answers
        assert elapsed < 2.5


class TestParallelDelivery:
    async def test_desks_are_written_to_over_several_connections(self, desks: Sandbox) -> None:
        """Six desks, a slow mail server: more than one connection, one message per desk."""
        desks.smtp.delay = 0.05
        findings = [
            Finding(ip_address(f"127.{60 + n}.0.{h}"), "open Redis", port=6379)
            for n in range(6)
            for h in (1, 2)
        ]
        async with Notifier(desks.settings()) as notifier:
            outcomes = await run_batch(notifier, findings)
        recipients = [m.rcpt_tos for m in desks.smtp.messages]
        assert sorted(recipients) == [(f"abuse@{n}.test",) for n in range(6)]
        assert desks.smtp.connections > 1
        assert {o.status for o in outcomes} == {"sent"}
        assert verify(desks.settings().state_dir / "audit.jsonl").ok

    async def test_run_cap_holds_when_desks_go_in_parallel(self, desks: Sandbox) -> None:
        """max_messages_per_run = 2 with six desks: exactly two messages go out."""
        desks.smtp.delay = 0.05
        findings = [Finding(ip_address(f"127.{60 + n}.0.1"), "open Redis") for n in range(6)]
        settings = desks.settings(limits={"max_messages_per_run": 2})
        async with Notifier(settings) as notifier:
            outcomes = await run_batch(notifier, findings)
        assert len(desks.smtp.messages) == 2
        assert sum(o.status == "sent" for o in outcomes) == 2

    async def test_every_intent_precedes_its_outcome(self, desks: Sandbox) -> None:
        """Under parallel delivery each message's intent is logged before its outcome."""
        findings = [Finding(ip_address(f"127.{60 + n}.0.1"), "open Redis") for n in range(6)]
        async with Notifier(desks.settings()) as notifier:
            await run_batch(notifier, findings)
        log = desks.settings().state_dir / "audit.jsonl"
        seen: dict[str, str] = {}
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record["event"] in ("intent", "outcome"):
                assert record["event"] == "intent" or seen.get(record["attempt_id"]) == "intent"
                seen[record["attempt_id"]] = record["event"]
        assert list(seen.values()) == ["outcome"] * 6


class TestCompactFindings:
    async def test_details_survive_compact_storage(self, desks: Sandbox) -> None:
        """Time, host name and extra fields reach the logged intent as they were submitted."""
        seen = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        finding = Finding(
            ip_address("127.60.0.9"),
            "open Redis",
            port=6379,
            hostname="cache.example.test",
            observed_at=seen,
            extra=(("service", "redis"), ("banner", "redis_version:7.2")),
        )
        async with Notifier(desks.settings()) as notifier:
            outcomes = await run_batch(notifier, [finding, finding])
        assert [o.status for o in outcomes] == ["sent"]  # the duplicate is dropped
        log = desks.settings().state_dir / "audit.jsonl"
        intent = next(
            json.loads(x) for x in log.read_text().splitlines() if '"event":"intent"' in x
        )
        (logged,) = intent["findings"]
        assert logged["hostname"] == "cache.example.test"
        assert logged["extra"] == [["service", "redis"], ["banner", "redis_version:7.2"]]
        assert logged["observed_at"] == seen.astimezone(UTC).isoformat().replace("+00:00", "Z")
        assert intent["finding_keys"] == [finding.key]
