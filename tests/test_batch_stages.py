"""A batch's staged lookups, the c-ares bulk path and the fast sandbox nameserver, on loopback."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.resolver
import pytest

from notifier import Finding, Notifier
from notifier.batch import Batch, FindingOutcome
from notifier.cache import LookupCache
from notifier.config import Settings
from notifier.models import Target
from notifier.net import RateLimiter, make_http_client, make_resolver
from notifier.sandbox.dns import DNSServer
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.sources import LookupContext, Query
from notifier.sources.ares import BulkResolver
from notifier.sources.rdns import lookup
from notifier.testing import Sandbox

ZONE = {
    "www.example.test": {"A": "127.0.0.5", "AAAA": "::1", "TXT": "hello"},
    "alias.example.test": {"CNAME": "www.example.test"},
    "mail.example.test": {"MX": "10 mx.example.test"},
}


@pytest.fixture
async def server() -> AsyncIterator[DNSServer]:
    box = DNSServer(ZONE)
    box.add_ptr("127.0.0.5", "www.example.test")
    box.add_ptr("127.0.0.6", "elsewhere.example.test")
    await box.start()
    yield box
    await box.stop()


def _ask(server: DNSServer, name: str, rdtype: str, **options: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **options)  # type: ignore[arg-type]
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


class TestWireAnswers:
    @pytest.mark.parametrize(
        ("name", "rdtype"),
        [
            ("www.example.test", "A"),
            ("WWW.Example.TEST", "AAAA"),  # the client's case comes back
            ("www.example.test", "TXT"),
            ("alias.example.test", "A"),  # through the CNAME
            ("mail.example.test", "MX"),
            ("www.example.test", "MX"),  # the name exists: no data, NOERROR
            ("example.test", "A"),  # an empty non-terminal: NOERROR
            ("nothing.example.test", "A"),  # NXDOMAIN
            ("5.0.0.127.in-addr.arpa", "PTR"),
            ("7.0.0.127.in-addr.arpa", "PTR"),
        ],
    )
    async def test_packed_answer_equals_dnslib(
        self, server: DNSServer, name: str, rdtype: str
    ) -> None:
        """What the packed table answers is what dnslib builds, question as asked."""
        fast = await asyncio.to_thread(_ask, server, name, rdtype)
        server.misbehave("unrelated.test", delay=0.0)  # any misbehaviour: dnslib answers all
        slow = await asyncio.to_thread(_ask, server, name, rdtype)
        server.behave()
        assert fast.rcode() == slow.rcode()
        assert fast.answer == slow.answer
        assert fast.question[0].name.to_text() == name + "."
        assert fast.flags & dns.flags.AA and fast.flags & dns.flags.QR

    async def test_edns_query_and_log(self, server: DNSServer) -> None:
        answer = await asyncio.to_thread(_ask, server, "www.example.test", "A", use_edns=0)
        assert answer.answer[0][0].to_text() == "127.0.0.5"
        assert server.queries[-1].name == "www.example.test"
        assert server.queries[-1].outcome == "NOERROR"

    async def test_latency_delays_every_answer(self, server: DNSServer) -> None:
        server.latency = 0.2
        started = time.perf_counter()
        await asyncio.to_thread(_ask, server, "www.example.test", "A")
        assert time.perf_counter() - started >= 0.2

    async def test_own_process(self) -> None:
        """The zone served from a child process, with the latency, counted."""
        box = DNSServer(ZONE, latency=0.05, own_process=True)
        await box.start()
        try:
            answers = await asyncio.gather(
                *(asyncio.to_thread(_ask, box, "www.example.test", "A") for _ in range(20))
            )
        finally:
            await box.stop()
        assert all(a.answer[0][0].to_text() == "127.0.0.5" for a in answers)
        assert box.answered == 20


@pytest.fixture
async def ctx(server: DNSServer) -> AsyncIterator[LookupContext]:
    settings = Settings.from_mapping({"dns": {"nameservers": [server.nameserver], "timeout": 0.5}})
    resolver = make_resolver(settings.dns)
    http = make_http_client(settings.http, resolver, user_agent="notifier-test")
    yield LookupContext(settings, resolver, http, RateLimiter(10))
    await http.aclose()


class TestBulkResolver:
    async def test_same_report_as_dnspython(self, ctx: LookupContext) -> None:
        """Reverse DNS through c-ares gives the report dnspython gives: names, notes, evidence."""
        for ip in ("127.0.0.5", "127.0.0.6", "127.0.0.7"):
            query = Query(Target(ip_address(ip)))
            plain = await lookup(query, ctx)
            ctx.bulk_dns = BulkResolver(ctx.settings.dns)
            try:
                bulk = await lookup(query, ctx)
            finally:
                await ctx.bulk_dns.close()
                ctx.bulk_dns = None
            assert bulk.hostnames == plain.hostnames
            assert bulk.notes == plain.notes
            assert [e.sha256 for e in bulk.evidence] == [e.sha256 for e in plain.evidence]

    async def test_failures_in_dnspython_terms(self, server: DNSServer) -> None:
        settings = Settings.from_mapping(
            {"dns": {"nameservers": [server.nameserver], "timeout": 0.4}}
        )
        bulk = BulkResolver(settings.dns)
        server.misbehave("silent.example.test", drop=True)
        server.misbehave("broken.example.test", servfail=True)
        try:
            with pytest.raises(dns.resolver.NXDOMAIN):
                await bulk.query("nothing.example.test", "A")
            with pytest.raises(dns.resolver.NoAnswer):
                await bulk.query("www.example.test", "PTR")
            with pytest.raises(dns.exception.Timeout):
                await bulk.query("silent.example.test", "A")
            with pytest.raises(dns.resolver.NoNameservers):
                await bulk.query("broken.example.test", "A")
            answer = await bulk.query("alias.example.test", "A")
            assert answer.values == ("127.0.0.5",)
        finally:
            await bulk.close()

    async def test_a_query_that_outlives_close_is_answered(self, server: DNSServer) -> None:
        """A lookup that outlives the batch's (a recipient's key, looked up while the lookups
        ran) took the resolver before it closed: its queries are answered, not failed."""
        settings = Settings.from_mapping({"dns": {"nameservers": [server.nameserver]}})
        bulk = BulkResolver(settings.dns)
        server.latency = 0.2
        on_the_way = asyncio.ensure_future(bulk.query("www.example.test", "A"))
        await asyncio.sleep(0.05)
        await bulk.close()
        assert (await on_the_way).values == ("127.0.0.5",)
        server.latency = 0
        assert (await bulk.query("www.example.test", "AAAA")).values == ("::1",)
        await bulk.close()


NETS = World(
    networks=(
        WorldNetwork("127.20.0.0/24", "ripe", "NET-S", "NET-S", "NL", "S BV", "abuse@s.test"),
        WorldNetwork("127.21.0.0/24", "arin", "NET-T", "NET-T", "US", "T Inc", "abuse@t.test"),
    ),
    hosts=(WorldHost("127.20.0.9", "www.owner.test"),),
)


async def _run_batch(settings: Settings) -> list[FindingOutcome]:
    outcomes: list[FindingOutcome] = []
    async with Notifier(settings) as notifier:
        batch = Batch(notifier, dry_run=True, on_outcome=outcomes.append)
        for net in (20, 21):
            for host in range(1, 41):
                await batch.submit(Finding(ip_address(f"127.{net}.0.{host}"), "open ES", port=9200))
        await batch.flush()
        assert notifier.ctx.bulk_dns is None  # the batch's DNS channel is closed with it
    return outcomes


class TestStagedBatch:
    async def test_one_registry_request_per_network(self, tmp_path: Path) -> None:
        async with Sandbox(NETS, directory=tmp_path) as box:
            outcomes = await _run_batch(box.settings())
            assert {o.status for o in outcomes} == {"dry-run"}
            assert box.registries["ripe"].request_count == 1
            assert box.registries["arin"].request_count == 1
            ptr = [q for q in box.dns.queries if q.rtype == "PTR"]
            assert len(ptr) == 80  # every address asked once

    async def test_a_second_run_reads_its_answers_from_the_cache(self, tmp_path: Path) -> None:
        """Cached PTR answers are read in bulk and not asked again; the garbage collector runs
        rarely while a batch runs and as before once it is done."""
        async with Sandbox(NETS, directory=tmp_path) as box:
            settings = box.settings()
            usual = gc.get_threshold()
            during: list[tuple[int, ...]] = []
            hits = []
            for _ in range(2):
                with LookupCache.from_settings(settings) as cache:
                    async with Notifier(settings, cache=cache) as notifier:
                        batch = Batch(
                            notifier,
                            dry_run=True,
                            on_progress=lambda _: during.append(gc.get_threshold()),
                        )
                        for host in range(1, 41):
                            await batch.submit(
                                Finding(ip_address(f"127.20.0.{host}"), "open ES", port=9200)
                            )
                        await batch.flush()
                    hits.append(cache.stats.hits)
            assert len([q for q in box.dns.queries if q.rtype == "PTR"]) == 40
            assert hits[1] >= 40
            assert during and all(t[0] > usual[0] for t in during)
            assert gc.get_threshold() == usual

    async def test_bulk_dns_waits_for_the_bootstraps_to_be_asked_for(self, tmp_path: Path) -> None:
        """Reverse DNS for the input starts once the registries' bootstrap requests have left
        (its answers would keep the event loop from making those connections), not once they
        are answered: here the bootstrap server's name takes 0.1 s to resolve and its answers
        0.3 s to come."""
        async with Sandbox(NETS, directory=tmp_path, latency=0.3) as box:
            box.dns.latency = 0.1
            outcomes = await _run_batch(box.settings())
            assert {o.status for o in outcomes} == {"dry-run"}
            asked = [r.at for r in box.web.requests if r.path.startswith("/bootstrap/")]
            ptr = [q.at for q in box.dns.queries if q.rtype == "PTR"]
            assert len(asked) == 2 and len(ptr) == 80
            # the server reads a request a moment after it left: that moment is allowed for
            assert max(asked) - 0.02 <= min(ptr) < min(asked) + 0.3

    async def test_silent_resolver_does_not_stall_the_batch(self, tmp_path: Path) -> None:
        """A resolver that answers nothing: the batch goes on with the registries' answers,
        and far fewer than 80 timeouts are waited for."""
        async with Sandbox(NETS, directory=tmp_path) as box:
            box.dns.misbehave("*", drop=True)
            # the registries' host names still resolve: only reverse lookups go unanswered
            for name in ("rdap.ripe.sandbox", "rdap.arin.sandbox"):
                box.dns.misbehave(name, delay=0.0)
            settings = Settings.from_mapping(
                {
                    **box.config(),
                    "dns": {"nameservers": [box.dns.nameserver], "timeout": 0.3},
                    "limits": {"dns_concurrency": 8},
                }
            )
            outcomes = await _run_batch(settings)
            assert {o.status for o in outcomes} == {"dry-run"}
            asked = [q for q in box.dns.queries if q.rtype == "PTR"]
            assert all(q.outcome == "dropped" for q in asked)
            # once the resolver counted as silent, the rest were not asked (but for probes)
            assert len({q.name for q in asked}) < 60


class TestTurns:
    async def test_bulk_work_takes_turns_per_loop_iteration(self) -> None:
        """At most ``per_tick`` bulk steps run in one iteration of the event loop; the others
        go on in the next ones, so a fetch waiting for an iteration is never held long."""
        from notifier.batch.turns import Turns

        turns = Turns(2)
        ticks = 0
        taken: list[int] = []

        async def step(number: int) -> None:
            await turns.take()
            taken.append(ticks)

        async def clock() -> None:
            nonlocal ticks
            while len(taken) < 6:
                ticks += 1
                await asyncio.sleep(0)

        await asyncio.gather(clock(), *(step(n) for n in range(6)))
        per_tick = [taken.count(t) for t in set(taken)]
        assert max(per_tick) <= 2 and len(taken) == 6

    async def test_later_turns_go_after_every_other_waiting(self) -> None:
        """Finishing an address waits for reverse DNS: the DNS stage's turns come first."""
        from notifier.batch.turns import Turns

        turns = Turns(1)
        order: list[str] = []

        async def step(name: str, later: bool) -> None:
            await turns.take(later=later)
            order.append(name)

        await asyncio.gather(
            turns.take(),  # the iteration's only turn: the others all wait
            step("finish 1", True),
            step("dns 1", False),
            step("finish 2", True),
            step("dns 2", False),
        )
        assert order == ["dns 1", "dns 2", "finish 1", "finish 2"]


class TestResolutionRecords:
    async def test_one_record_per_network_range_resolved_alike(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """40 addresses of one network: one resolution record naming them all, and the read
        model finds each address's resolution."""
        from notifier.batch import records

        monkeypatch.setattr(records, "LOG_SECONDS", 60.0)  # however slow this machine is
        monkeypatch.setattr(records, "TAIL_SECONDS", 60.0)
        from notifier.ledger import open_ledger

        async with Sandbox(NETS, directory=tmp_path) as box:
            settings = box.settings()
            async with Notifier(settings) as notifier:
                batch = Batch(notifier)
                for host in range(1, 41):
                    ip = ip_address(f"127.21.0.{host}")
                    await batch.submit(Finding(ip, "open ES", port=9200))
                await batch.flush()
            ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
            records = [r for r in ledger.records() if r["event"] == "resolution"]
            assert len(records) == 1
            assert len(records[0]["ips"]) == 39
            model = ledger.view().refresh()
            assert all(f"127.21.0.{h}" in model.resolutions for h in range(1, 41))
            assert len(box.smtp.messages) == 1

    @staticmethod
    async def _pool_range(tmp_path: Path) -> tuple[list[dict[str, Any]], int]:
        """Ten addresses of one hosting range, each with a PTR name of its own, sent in one
        batch: its resolution records, and the messages sent."""
        from notifier.ledger import open_ledger

        world = World(
            networks=NETS.networks[1:],
            hosts=tuple(
                WorldHost(f"127.21.0.{h}", f"ip-127-21-0-{h}.pool.t.test") for h in range(1, 11)
            ),
        )
        async with Sandbox(world, directory=tmp_path) as box:
            settings = box.settings()
            async with Notifier(settings) as notifier:
                batch = Batch(notifier)
                for host in range(1, 11):
                    await batch.submit(Finding(ip_address(f"127.21.0.{host}"), "open ES"))
                await batch.flush()
            ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
            found = [r for r in ledger.records() if r["event"] == "resolution"]
            return found, len(box.smtp.messages)

    async def test_addresses_with_names_of_their_own_share_one_record(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every address of a hosting range has its own PTR name: still one record for the
        range, which keeps each address's names and the digest of its own PTR answer, and
        the range's RDAP answer once."""
        from notifier.batch import records

        monkeypatch.setattr(records, "LOG_SECONDS", 60.0)
        monkeypatch.setattr(records, "TAIL_SECONDS", 60.0)
        [record], messages = await self._pool_range(tmp_path)
        first = int(record["ip"].rsplit(".", 1)[1])
        assert record["hostnames"] == [f"ip-127-21-0-{first}.pool.t.test"]
        assert sorted(e["source"] for e in record["evidence"]) == ["rdap", "rdns"]
        others = {a["ip"]: a for a in record["addresses"]}
        assert sorted(others) == sorted(record["ips"]) and len(others) == 9
        digests = set()
        for ip, facts in others.items():
            host = ip.rsplit(".", 1)[1]
            assert facts["hostnames"] == [f"ip-127-21-0-{host}.pool.t.test"]
            [ptr] = facts["evidence"]
            assert ptr["source"] == "rdns"
            assert ptr["locator"] == f"PTR {host}.0.21.127.in-addr.arpa."
            digests.add(ptr["sha256"])
        assert len(digests) == 9  # each address's own answer, not the first one's
        assert messages == 1

    async def test_a_large_range_is_split_over_records_each_naming_its_own(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past ``_IPS_PER_RECORD`` addresses a range takes more records (each may bring ten
        long PTR names): every address is named once, with its own names."""
        from notifier.batch import records

        monkeypatch.setattr(records, "LOG_SECONDS", 60.0)
        monkeypatch.setattr(records, "TAIL_SECONDS", 60.0)
        monkeypatch.setattr(records, "_IPS_PER_RECORD", 4)
        found, _ = await self._pool_range(tmp_path)
        assert [len(r["ips"]) for r in found] == [3, 3, 1]
        named = {r["ip"]: r["hostnames"] for r in found}
        named.update({a["ip"]: a["hostnames"] for r in found for a in r["addresses"]})
        assert named == {f"127.21.0.{h}": [f"ip-127-21-0-{h}.pool.t.test"] for h in range(1, 11)}

    @pytest.mark.parametrize("every", ["four addresses", "moment", "moment once DNS is done"])
    async def test_records_written_while_the_lookups_go_on(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: str
    ) -> None:
        """Every few resolved addresses (or every so often, and more often once reverse DNS is
        done for every address) their records are written, not all at the end: each address is
        still named once, and every record is on disk before the first intent."""
        from notifier.batch import records
        from notifier.ledger import open_ledger

        if every == "moment":
            monkeypatch.setattr(records, "LOG_SECONDS", 0.0)
        elif every == "moment once DNS is done":
            monkeypatch.setattr(records, "LOG_SECONDS", 60.0)
            monkeypatch.setattr(records, "TAIL_SECONDS", 0.0)
        else:
            monkeypatch.setattr(records, "LOG_EVERY", 4)
        async with Sandbox(NETS, directory=tmp_path) as box:
            settings = box.settings()
            async with Notifier(settings) as notifier:
                batch = Batch(notifier)
                for host in range(1, 21):
                    for net in (20, 21):
                        ip = ip_address(f"127.{net}.0.{host}")
                        await batch.submit(Finding(ip, "open ES", port=9200))
                await batch.flush()
            ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
            events = [r["event"] for r in ledger.records()]
            records = [r for r in ledger.records() if r["event"] == "resolution"]
            named = [r["ip"] for r in records] + [ip for r in records for ip in r["ips"]]
            assert sorted(named) == sorted(
                f"127.{net}.0.{host}" for host in range(1, 21) for net in (20, 21)
            )
            assert events.index("intent") > max(
                i for i, event in enumerate(events) if event == "resolution"
            )
            # two ranges resolved alike: two records if written at the end, more in steps of 4
            assert len(records) > 2 and len(box.smtp.messages) == 2
