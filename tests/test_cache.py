"""The persistent lookup cache: ranges, expiry, persistence, corruption, and the report codec."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from notifier.cache import (
    CACHE_FILE,
    LookupCache,
    dump_reports,
    load_reports,
)
from notifier.config import Settings
from notifier.models import (
    Channel,
    ChannelKind,
    Contact,
    Evidence,
    Network,
    Role,
    SourceReport,
)
from notifier.sources import Cache


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        self.seen.append((event, fields))

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


def full_report(tag: str = "rdap") -> SourceReport:
    """A report with every field, nested ones included, away from its default."""
    return SourceReport(
        source=tag,
        contacts=[
            Contact(
                address="abuse@example.net",
                role=Role.NETWORK,
                sources=("rdap", "whois"),
                confidence=0.9,
                provenance=("rdap:entity ABUSE1-EX", "whois:OrgAbuseEmail"),
                name="Example Abuse Desk",
                encryption=("openpgp4fpr:" + "AB" * 20,),
                languages=("en", "de"),
            ),
            Contact(
                address="cert@example.cz",
                role=Role.NATIONAL_CERT,
                sources=("cert",),
                confidence=0.35,
                provenance=("contacts.yaml:CZ",),
                name="CSIRT.CZ – národní",
            ),
        ],
        network=Network(
            registry="ripe",
            handle="EX-NET-1",
            name="EXAMPLE-NET",
            cidrs=("193.0.0.0/21", "2001:67c:2e8::/48"),
            start="193.0.0.0",
            end="193.0.7.255",
            country="NL",
            org="Example B.V.",
            asn=3333,
            postal_name="Example B.V.",
            postal=("Stationsplein 1", "1012 AB Amsterdam", "NL"),
        ),
        hostnames=["www.example.net", "mail.example.net"],
        notes=["RDAP answered via redirect", "lone surrogate kept: \udcff", "nul: \x00"],
        evidence=[
            Evidence(
                source="rdap",
                locator="https://rdap.db.ripe.net/ip/193.0.6.139",
                sha256="ab" * 32,
                fetched_at=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
                detail="200 application/rdap+json",
            ),
            Evidence(
                source="whois",
                locator="whois.ripe.net:43",
                sha256="cd" * 32,
                fetched_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
                detail="referral from whois.iana.org",
            ),
        ],
        error="whois: referral loop cut short",
        channels=[
            Channel(
                ChannelKind.WEB,
                "https://example.net/report",
                Role.OWNER,
                "security.txt",
                ("security.txt at https://example.net/.well-known/security.txt",),
                ("en",),
            )
        ],
        answered=["example.net"],
        replaces=[Role.NETWORK],
    )


def open_cache(path: Path, clock: FakeClock | None = None, **kw: Any) -> LookupCache:
    return LookupCache(path / CACHE_FILE, clock=clock or FakeClock(), **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def cache(tmp_path: Path, clock: FakeClock, events: Events) -> Any:
    c = open_cache(tmp_path, clock, on_event=events)
    yield c
    c.close()


def raw(path: Path) -> sqlite3.Connection:
    """A second, independent connection to the cache file (what another process would see)."""
    return sqlite3.connect(path / CACHE_FILE, isolation_level=None, timeout=1)


class TestReportCodec:
    def test_round_trip_with_every_field_populated(self) -> None:
        """Reports with every field set come back equal, types and time zones included."""
        reports = [full_report("rdap"), full_report("whois")]
        first = reports[0]
        for obj in (first, first.contacts[0], first.network, first.evidence[0], first.channels[0]):
            assert obj is not None
            for f in dataclasses.fields(obj):
                default = (
                    f.default_factory()
                    if f.default_factory is not dataclasses.MISSING
                    else f.default
                )
                assert getattr(obj, f.name) != default, f"{type(obj).__name__}.{f.name} unset"
        back = load_reports(dump_reports(reports))
        assert back == reports
        assert isinstance(back[0].contacts[0].role, Role)
        assert isinstance(back[0].contacts[0].sources, tuple)
        assert isinstance(back[0].network and back[0].network.cidrs, tuple)
        assert back[0].evidence[1].fetched_at.utcoffset() == timedelta(hours=2)

    def test_minimal_and_empty_reports_round_trip(self) -> None:
        """Defaults (no network, no error, no asn) and an empty list survive unchanged."""
        reports = [SourceReport("rdns"), SourceReport("rdap", network=Network("arin"))]
        assert load_reports(dump_reports(reports)) == reports
        assert load_reports(dump_reports([])) == []

    def test_output_is_ascii_text(self) -> None:
        """The serialised form is ASCII, so any string can be stored in SQLite."""
        assert dump_reports([full_report()]).isascii()

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "not json",
            "[]",
            '{"format": 99, "reports": []}',
            '{"format": 1, "reports": {}}',
            '{"format": 1, "reports": [{"source": 5}]}',
            '{"format": 1, "reports": [{"notes": []}]}',
            '{"format": 1, "reports": [{"source": "x", "bogus": 1}]}',
            '{"format": 1, "reports": [{"source": "x", "contacts": [{"address": "a@b.c",'
            ' "role": "king", "sources": [], "confidence": 1}]}]}',
            '{"format": 1, "reports": [{"source": "x", "network": {"registry": "r",'
            ' "asn": true}}]}',
            '{"format": 1, "reports": [{"source": "x", "evidence": [{"source": "s",'
            ' "locator": "l", "sha256": "h", "fetched_at": "yesterday"}]}]}',
            "[" * 100_000,
        ],
    )
    def test_malformed_text_is_a_value_error(self, text: str) -> None:
        """Anything that is not a serialised report list raises ValueError, nothing else."""
        with pytest.raises(ValueError):
            load_reports(text)

    def test_refuses_non_reports(self) -> None:
        """Only SourceReport values are dumped."""
        with pytest.raises(TypeError):
            dump_reports(["not a report"])  # type: ignore[list-item]


class TestProtocol:
    def test_implements_the_sources_cache_protocol(self, cache: LookupCache) -> None:
        """LookupCache is accepted wherever the sources expect a Cache."""
        as_protocol: Cache = cache
        assert as_protocol is cache

    def test_from_settings_uses_the_state_directory(self, tmp_path: Path) -> None:
        """The configured cache lives at <state.dir>/cache.sqlite."""
        settings = Settings.from_mapping({"state": {"dir": str(tmp_path / "state")}})
        c = LookupCache.from_settings(settings)
        assert c.path == tmp_path / "state" / CACHE_FILE
        c.close()


class TestRanges:
    def test_later_address_in_same_network_hits(self, cache: LookupCache) -> None:
        """An address stored via its network answers for every other address in it."""
        cache.store_range("registry", ["193.0.0.0/21"], [full_report()], 3600)
        assert cache.lookup_range("registry", ip_address("193.0.7.255")) == [full_report()]
        assert cache.lookup_range("registry", ip_address("193.0.0.0")) == [full_report()]
        assert cache.lookup_range("registry", ip_address("193.0.8.0")) is None
        assert cache.lookup_range("registry", ip_address("192.255.255.255")) is None

    @pytest.mark.parametrize("order", ["broad-first", "narrow-first"])
    def test_most_specific_range_wins(self, cache: LookupCache, order: str) -> None:
        """The longest containing prefix answers, whichever was stored first."""
        stores = [(["10.0.0.0/8"], "broad"), (["10.1.2.0/24"], "narrow")]
        if order == "narrow-first":
            stores.reverse()
        for cidrs, value in stores:
            cache.store_range("net", cidrs, value, 3600)
        assert cache.lookup_range("net", ip_address("10.1.2.77")) == "narrow"
        assert cache.lookup_range("net", ip_address("10.1.3.1")) == "broad"

    def test_most_specific_wins_across_instances(self, tmp_path: Path) -> None:
        """A reopened cache also picks the longest prefix among stored ranges."""
        with open_cache(tmp_path) as first:
            first.store_range("net", ["10.1.2.0/24"], "narrow", 3600)
            first.store_range("net", ["10.0.0.0/8"], "broad", 3600)
        with open_cache(tmp_path) as second:
            assert second.lookup_range("net", ip_address("10.1.2.3")) == "narrow"
            assert second.lookup_range("net", ip_address("10.200.0.1")) == "broad"

    def test_every_cidr_of_a_store_answers(self, cache: LookupCache) -> None:
        """A network listed as several CIDRs answers for addresses in each of them."""
        cache.store_range("net", ["193.0.0.0/21", "2001:67c:2e8::/48"], "ripe", 3600)
        assert cache.lookup_range("net", ip_address("193.0.6.139")) == "ripe"
        assert cache.lookup_range("net", ip_address("2001:67c:2e8:22::c100:68b")) == "ripe"

    def test_storing_a_range_again_replaces_it(self, cache: LookupCache, tmp_path: Path) -> None:
        """The newest value for the same CIDR is the one returned, now and after reopening."""
        cache.store_range("net", ["10.0.0.0/8"], "old", 3600)
        cache.store_range("net", ["10.0.0.0/8"], "new", 3600)
        assert cache.lookup_range("net", ip_address("10.9.9.9")) == "new"
        with open_cache(tmp_path) as again:
            assert again.lookup_range("net", ip_address("10.9.9.9")) == "new"
        with raw(tmp_path) as db:
            assert db.execute("SELECT COUNT(*) FROM cache_values").fetchone() == (1,)

    def test_ipv6_whole_space_and_single_address(self, cache: LookupCache, tmp_path: Path) -> None:
        """::/0 holds every v6 address, a /128 only itself, and both survive reopening."""
        cache.store_range("net", ["::/0"], "everything", 3600)
        cache.store_range("net", ["8000::/1"], "upper-half", 3600)
        cache.store_range("net", ["2001:db8::1/128"], "one", 3600)
        top = ip_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        expected = {
            ip_address("::"): "everything",
            ip_address("2001:db8::1"): "one",
            ip_address("2001:db8::2"): "everything",
            ip_address("8000::"): "upper-half",
            top: "upper-half",
        }
        for ip, value in expected.items():
            assert cache.lookup_range("net", ip) == value
        with open_cache(tmp_path) as again:
            for ip, value in expected.items():
                assert again.lookup_range("net", ip) == value

    def test_large_ipv6_numbers_compare_correctly_on_disk(self, tmp_path: Path) -> None:
        """Ranges above 2**64 are found by the SQL fallback (not only in memory)."""
        with open_cache(tmp_path) as writer, open_cache(tmp_path) as reader:
            reader.lookup_range("net", ip_address("::1"))  # opens before the writes
            writer.store_range("net", ["fe80::/10"], "link-local", 3600)
            writer.store_range("net", ["fe80::/64"], "one-link", 3600)
            assert reader.lookup_range("net", ip_address("fe80::1")) == "one-link"
            assert reader.lookup_range("net", ip_address("febf::1")) == "link-local"
            assert reader.lookup_range("net", ip_address("fec0::1")) is None

    def test_versions_do_not_mix(self, cache: LookupCache) -> None:
        """A v4 range never answers for a v6 address with the same number, nor the reverse."""
        cache.store_range("net", ["0.0.0.0/0"], "all-v4", 3600)
        assert cache.lookup_range("net", ip_address("::1")) is None
        assert cache.lookup_range("net", ip_address("255.255.255.255")) == "all-v4"

    def test_kinds_do_not_mix(self, cache: LookupCache) -> None:
        """A range stored for one kind is invisible to another."""
        cache.store_range("net", ["10.0.0.0/8"], "x", 3600)
        assert cache.lookup_range("other", ip_address("10.0.0.1")) is None

    def test_host_bits_are_ignored_and_bad_cidrs_skipped(
        self, cache: LookupCache, events: Events
    ) -> None:
        """A CIDR with host bits stores its network; garbage is skipped and reported."""
        cache.store_range("net", ["10.1.2.3/16", "not-a-cidr", "10.0.0.0/33"], "v", 3600)
        assert cache.lookup_range("net", ip_address("10.1.255.1")) == "v"
        assert events.names().count("cache-bad-cidr") == 2

    def test_nothing_valid_stores_nothing(self, cache: LookupCache) -> None:
        """A store with no usable CIDR does not count as a store."""
        cache.store_range("net", ["garbage"], "v", 3600)
        assert cache.stats.stores == 0


class TestNegativeCaching:
    def test_empty_answer_is_a_hit_not_a_miss(self, cache: LookupCache, tmp_path: Path) -> None:
        """An empty list is cached and returned as such, distinct from None (a miss)."""
        cache.put("rdns", "193.0.6.139", [], 3600)
        cache.store_range("registry", ["193.0.0.0/21"], [], 3600)
        assert cache.get("rdns", "193.0.6.139") == []
        assert cache.lookup_range("registry", ip_address("193.0.0.9")) == []
        assert cache.get("rdns", "193.0.6.140") is None
        with open_cache(tmp_path) as again:
            assert again.get("rdns", "193.0.6.139") == []
            assert again.lookup_range("registry", ip_address("193.0.0.9")) == []

    def test_storing_none_is_refused(self, cache: LookupCache) -> None:
        """None is reserved for misses, so storing it is a programming error."""
        with pytest.raises(ValueError):
            cache.put("k", "x", None, 60)
        with pytest.raises(ValueError):
            cache.store_range("k", ["10.0.0.0/8"], None, 60)


class TestEntries:
    def test_put_then_get(self, cache: LookupCache) -> None:
        """A plain JSON value comes back equal; tuples come back as lists."""
        cache.put("securitytxt", "example.net", {"contacts": ["a@b"], "n": 1.5}, 60)
        cache.put("pair", "k", ("a", 1), 60)
        assert cache.get("securitytxt", "example.net") == {"contacts": ["a@b"], "n": 1.5}
        assert cache.get("pair", "k") == ["a", 1]
        assert cache.get("securitytxt", "other.net") is None

    def test_registry_entries_use_the_reports_codec(
        self, cache: LookupCache, tmp_path: Path
    ) -> None:
        """Kind "registry" keeps SourceReport lists faithfully, also by key and across instances."""
        cache.put("registry", "EX-NET-1", [full_report()], 60)
        with open_cache(tmp_path) as again:
            assert again.get("registry", "EX-NET-1") == [full_report()]

    def test_hostile_keys_are_stored(self, cache: LookupCache, tmp_path: Path) -> None:
        """Keys with lone surrogates or NULs are distinct, storable keys."""
        cache.put("rdns", "a\udcffb", 1, 60)
        cache.put("rdns", "a\x00b", 2, 60)
        with open_cache(tmp_path) as again:
            assert again.get("rdns", "a\udcffb") == 1
            assert again.get("rdns", "a\x00b") == 2

    def test_mutating_a_result_does_not_change_the_cache(self, cache: LookupCache) -> None:
        """Each hit is a fresh copy, so one caller cannot corrupt another's answer."""
        cache.store_range("registry", ["10.0.0.0/8"], [full_report()], 60)
        cache.put("k", "x", [1, 2], 60)
        cache.lookup_range("registry", ip_address("10.0.0.1"))[0].contacts.clear()
        cache.get("k", "x").append(3)
        assert cache.lookup_range("registry", ip_address("10.0.0.1")) == [full_report()]
        assert cache.get("k", "x") == [1, 2]


class TestPreload:
    """A batch reads the cached answers of a few hundred addresses in one query."""

    def test_preloaded_entries_and_misses_need_no_query_each(
        self, cache: LookupCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for n in range(3):
            cache.put("ptr", f"127.9.0.{n}", [full_report(f"p{n}")], 60)
        cache.close()
        again = open_cache(tmp_path)
        asked: list[bytes] = []
        real_get = again.store.get

        def counted(kind: str, key: bytes, now: float) -> Any:
            asked.append(key)
            return real_get(kind, key, now)

        monkeypatch.setattr(again.store, "get", counted)
        keys = [f"127.9.0.{n}" for n in range(5)]
        again.preload("ptr", keys)
        assert again.get("ptr", "127.9.0.1") == [full_report("p1")]
        assert again.get("ptr", "127.9.0.4") is None  # known missing: not asked again
        assert asked == []
        assert again.get("ptr", "127.9.0.4") is None  # a second time it is asked
        assert asked == [b"127.9.0.4"]
        again.close()

    def test_a_store_after_preload_is_found(self, cache: LookupCache) -> None:
        cache.preload("ptr", ["127.9.0.8"])
        cache.put("ptr", "127.9.0.8", [full_report("late")], 60)
        assert cache.get("ptr", "127.9.0.8") == [full_report("late")]

    def test_expired_entries_are_not_preloaded(
        self, cache: LookupCache, clock: FakeClock, tmp_path: Path
    ) -> None:
        cache.put("ptr", "127.9.0.9", [full_report("old")], 10)
        clock.now += 11
        cache.close()
        again = open_cache(tmp_path, clock)
        again.preload("ptr", ["127.9.0.9"])
        assert again.get("ptr", "127.9.0.9") is None
        again.close()


class TestExpiry:
    def test_entries_expire_on_the_injected_clock(
        self, cache: LookupCache, clock: FakeClock
    ) -> None:
        """An entry answers until its ttl has passed, then misses."""
        cache.put("k", "x", "v", 100)
        clock.now += 99.9
        assert cache.get("k", "x") == "v"
        clock.now += 0.1
        assert cache.get("k", "x") is None

    def test_ranges_expire_and_fall_back_to_the_broader_one(
        self, cache: LookupCache, clock: FakeClock
    ) -> None:
        """An expired specific range no longer answers; a live broader range does."""
        cache.store_range("net", ["10.0.0.0/8"], "broad", 1000)
        cache.store_range("net", ["10.1.0.0/16"], "narrow", 10)
        assert cache.lookup_range("net", ip_address("10.1.0.1")) == "narrow"
        clock.now += 10
        assert cache.lookup_range("net", ip_address("10.1.0.1")) == "broad"
        clock.now += 990
        assert cache.lookup_range("net", ip_address("10.1.0.1")) is None

    def test_expiry_holds_across_instances_and_is_purged(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """A later run does not see expired rows, and opening removes them from disk."""
        with open_cache(tmp_path, clock) as first:
            first.put("k", "x", "v", 10)
            first.store_range("net", ["10.0.0.0/8"], "v", 10)
            first.put("k", "keep", "v", 1000)
        clock.now += 11
        with open_cache(tmp_path, clock) as second:
            assert second.get("k", "x") is None
            assert second.lookup_range("net", ip_address("10.0.0.1")) is None
            assert second.get("k", "keep") == "v"
        with raw(tmp_path) as db:
            assert db.execute("SELECT COUNT(*) FROM cache_entries").fetchone() == (1,)
            assert db.execute("SELECT COUNT(*) FROM cache_ranges").fetchone() == (0,)
            assert db.execute("SELECT COUNT(*) FROM cache_values").fetchone() == (0,)

    def test_zero_ttl_keeps_nothing(self, cache: LookupCache) -> None:
        """A ttl of zero or less stores nothing."""
        cache.put("k", "x", "v", 0)
        cache.store_range("net", ["10.0.0.0/8"], "v", -1)
        assert cache.get("k", "x") is None
        assert cache.lookup_range("net", ip_address("10.0.0.1")) is None
        assert cache.stats.stores == 0


class TestPersistence:
    def test_file_is_created_on_first_use_private_and_in_wal_mode(self, tmp_path: Path) -> None:
        """No file until the cache is used; then mode 0600, WAL journal, state dir created."""
        path = tmp_path / "state" / CACHE_FILE
        c = LookupCache(path, clock=FakeClock())
        assert not path.exists()
        c.put("k", "x", "v", 60)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        c.close()

    def test_loose_file_mode_is_tightened(self, tmp_path: Path) -> None:
        """An existing cache file readable by others is made private on open."""
        path = tmp_path / CACHE_FILE
        path.touch(mode=0o644)
        path.chmod(0o644)
        with LookupCache(path, clock=FakeClock()) as c:
            c.get("k", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_new_instance_sees_old_entries(self, tmp_path: Path) -> None:
        """Entries and ranges stored by one run answer in the next."""
        with open_cache(tmp_path) as first:
            first.put("k", "x", {"a": 1}, 60)
            first.store_range("registry", ["193.0.0.0/21"], [full_report()], 60)
        with open_cache(tmp_path) as second:
            assert second.get("k", "x") == {"a": 1}
            assert second.lookup_range("registry", ip_address("193.0.3.3")) == [full_report()]
            assert second.stats.hits == 2

    def test_two_instances_share_the_file(self, tmp_path: Path) -> None:
        """Interleaved writers on one file (as two processes would be) both persist."""
        with open_cache(tmp_path) as a, open_cache(tmp_path) as b:
            for i in range(20):
                a.put("k", f"a{i}", i, 60)
                b.put("k", f"b{i}", i, 60)
                a.store_range("net", [f"10.{i}.0.0/16"], f"a{i}", 60)
                b.store_range("net", [f"11.{i}.0.0/16"], f"b{i}", 60)
            assert a.get("k", "b7") == 7
            assert b.lookup_range("net", ip_address("10.7.1.1")) == "a7"
        with open_cache(tmp_path) as c:
            assert c.get("k", "a19") == 19
            assert c.lookup_range("net", ip_address("11.19.0.1")) == "b19"

    def test_another_process_writes_the_same_file(self, tmp_path: Path) -> None:
        """A separate process writing concurrently neither fails nor loses either side's rows."""
        script = (
            "import sys\n"
            "from ipaddress import ip_address\n"
            "from notifier.cache import LookupCache\n"
            "c = LookupCache(sys.argv[1])\n"
            "for i in range(100):\n"
            "    c.put('k', f'child{i}', i, 600)\n"
            "    c.store_range('net', [f'172.16.{i}.0/24'], i, 600)\n"
            "c.close()\n"
        )
        child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / CACHE_FILE)])
        with LookupCache(tmp_path / CACHE_FILE) as mine:
            for i in range(100):
                mine.put("k", f"parent{i}", i, 600)
                mine.store_range("net", [f"172.17.{i}.0/24"], i, 600)
        assert child.wait(timeout=30) == 0
        with LookupCache(tmp_path / CACHE_FILE) as after:
            for i in (0, 57, 99):
                assert after.get("k", f"child{i}") == i
                assert after.get("k", f"parent{i}") == i
                assert after.lookup_range("net", ip_address(f"172.16.{i}.9")) == i
                assert after.lookup_range("net", ip_address(f"172.17.{i}.9")) == i

    def test_hot_lookups_answer_from_memory(self, cache: LookupCache, tmp_path: Path) -> None:
        """Once read, answers come from memory even if the rows vanish from disk."""
        cache.put("k", "x", "v", 60)
        cache.store_range("net", ["10.0.0.0/8"], "v", 60)
        cache.lookup_range("net", ip_address("10.0.0.1"))
        with raw(tmp_path) as db:
            db.execute("DELETE FROM cache_entries")
            db.execute("DELETE FROM cache_ranges")
            db.execute("DELETE FROM cache_values")
        assert cache.get("k", "x") == "v"
        assert cache.lookup_range("net", ip_address("10.0.0.1")) == "v"


class TestConcurrency:
    def test_locked_database_degrades_to_memory(
        self, tmp_path: Path, clock: FakeClock, events: Events
    ) -> None:
        """A write blocked past the busy timeout is reported, not raised, and kept in memory."""
        c = open_cache(tmp_path, clock, on_event=events, busy_timeout=0.05)
        c.get("k", "warm-up")
        db = raw(tmp_path)
        db.execute("BEGIN IMMEDIATE")
        try:
            c.put("k", "x", "v", 60)
            c.store_range("net", ["10.0.0.0/8"], "v", 60)
            assert c.get("k", "x") == "v"
            assert c.lookup_range("net", ip_address("10.0.0.1")) == "v"
        finally:
            db.execute("ROLLBACK")
            db.close()
            c.close()
        assert "cache-error" in events.names()

    def test_unusable_location_degrades_to_memory(self, tmp_path: Path, events: Events) -> None:
        """A state dir that cannot be created is reported once; the cache works in memory."""
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        c = LookupCache(blocker / CACHE_FILE, clock=FakeClock(), on_event=events)
        c.put("k", "x", "v", 60)
        c.store_range("net", ["10.0.0.0/8"], "n", 60)
        assert c.get("k", "x") == "v"
        assert c.lookup_range("net", ip_address("10.0.0.1")) == "n"
        assert c.get("k", "y") is None
        assert events.names() == ["cache-unavailable"]
        c.close()


class TestCorruption:
    def test_undecodable_entry_is_a_miss_and_deleted(self, tmp_path: Path, events: Events) -> None:
        """A row that does not decode is reported, dropped from disk, and treated as a miss."""
        with open_cache(tmp_path) as first:
            first.put("registry", "EX", [full_report()], 60)
            first.put("k", "x", "v", 60)
            first.put("k", "y", "v", 60)
        with raw(tmp_path) as db:
            db.execute(
                'UPDATE cache_entries SET value = \'{"format": 1, "reports": [3]}\''
                " WHERE kind = 'registry'"
            )
            db.execute("UPDATE cache_entries SET value = '{broken' WHERE key = X'79'")
        with open_cache(tmp_path, on_event=events) as second:
            assert second.get("registry", "EX") is None
            assert second.get("k", "y") is None
            assert second.get("k", "x") == "v"
            assert second.stats.dropped == 2
        with raw(tmp_path) as db:
            keys = {row[0] for row in db.execute("SELECT key FROM cache_entries")}
        assert keys == {b"x"}
        assert events.names() == ["cache-corrupt-row", "cache-corrupt-row"]

    def test_undecodable_range_value_is_a_miss_and_deleted(
        self, tmp_path: Path, events: Events
    ) -> None:
        """A range whose value does not decode misses, and the broader live range answers."""
        with open_cache(tmp_path) as first:
            first.store_range("registry", ["10.0.0.0/8"], [SourceReport("broad")], 60)
            first.store_range("registry", ["10.1.0.0/16"], [SourceReport("narrow")], 60)
        with raw(tmp_path) as db:
            db.execute(
                "UPDATE cache_values SET value = 'garbage' "
                "WHERE id = (SELECT value_id FROM cache_ranges WHERE prefixlen = 16)"
            )
        with open_cache(tmp_path, on_event=events) as second:
            assert second.lookup_range("registry", ip_address("10.1.0.1")) == [
                SourceReport("broad")
            ]
        with raw(tmp_path) as db:
            assert db.execute("SELECT prefixlen FROM cache_ranges").fetchall() == [(8,)]
        assert events.names() == ["cache-corrupt-row"]

    def test_malformed_range_rows_are_dropped_on_open(self, tmp_path: Path, events: Events) -> None:
        """Range rows with bad hex, misaligned starts or impossible lengths are removed."""
        with open_cache(tmp_path) as first:
            first.store_range("net", ["10.0.0.0/8"], "good", 60)
            first.store_range("net", ["11.0.0.0/8"], "bad-hex", 60)
            first.store_range("net", ["12.0.0.0/8"], "bad-len", 60)
        with raw(tmp_path) as db:
            db.execute("UPDATE cache_ranges SET start = 'zz' WHERE value_id = 2")
            db.execute("UPDATE cache_ranges SET prefixlen = 99 WHERE value_id = 3")
        with open_cache(tmp_path, on_event=events) as second:
            assert second.lookup_range("net", ip_address("10.0.0.1")) == "good"
            assert second.lookup_range("net", ip_address("11.0.0.1")) is None
            assert second.lookup_range("net", ip_address("12.0.0.1")) is None
            assert second.stats.dropped == 2
        with raw(tmp_path) as db:
            assert db.execute("SELECT COUNT(*) FROM cache_values").fetchone() == (1,)
        assert "cache-corrupt-row" in events.names()

    def test_corrupt_file_is_set_aside_and_recreated(self, tmp_path: Path, events: Events) -> None:
        """A file that is not a database is renamed aside, reported, and a fresh one used."""
        path = tmp_path / CACHE_FILE
        path.write_bytes(b"this is not a database, just junk " * 200)
        with open_cache(tmp_path, on_event=events) as c:
            assert c.get("k", "x") is None
            c.store_range("net", ["10.0.0.0/8"], "v", 60)
            c.put("k", "x", "v", 60)
        aside = tmp_path / (CACHE_FILE + ".corrupt")
        assert aside.read_bytes().startswith(b"this is not a database")
        assert events.names() == ["cache-reset"]
        assert events.seen[0][1]["moved_to"] == str(aside)
        with open_cache(tmp_path) as again:
            assert again.get("k", "x") == "v"
            assert again.lookup_range("net", ip_address("10.0.0.1")) == "v"

    def test_corrupt_file_on_first_write_keeps_the_value(
        self, tmp_path: Path, events: Events
    ) -> None:
        """A store that meets a corrupt file lands in the recreated database."""
        (tmp_path / CACHE_FILE).write_bytes(b"\x00junk" * 1000)
        (tmp_path / (CACHE_FILE + ".corrupt")).write_bytes(b"an earlier casualty")
        with open_cache(tmp_path, on_event=events) as c:
            c.put("k", "x", "v", 60)
        assert (tmp_path / (CACHE_FILE + ".corrupt.1")).exists()
        with open_cache(tmp_path) as again:
            assert again.get("k", "x") == "v"

    def test_damaged_pages_are_set_aside(self, tmp_path: Path, events: Events) -> None:
        """A database whose pages were overwritten is replaced rather than raising."""
        with open_cache(tmp_path) as first:
            for i in range(200):
                first.put("k", f"x{i}", "v" * 200, 60)
        with raw(tmp_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = tmp_path / CACHE_FILE
        data = bytearray(path.read_bytes())
        data[100:] = b"\xff" * (len(data) - 100)  # keep the header, wreck every page
        path.write_bytes(bytes(data))
        with open_cache(tmp_path, on_event=events) as c:
            assert c.get("k", "x5") is None
            c.put("k", "x5", "w", 60)
            assert c.get("k", "x5") == "w"
        assert "cache-reset" in events.names()


class TestStats:
    def test_counts_hits_misses_and_stores(self, cache: LookupCache) -> None:
        """Hits, misses and stores are counted for the benchmark report."""
        cache.store_range("net", ["10.0.0.0/8"], "v", 60)
        cache.put("k", "x", "v", 60)
        cache.lookup_range("net", ip_address("10.0.0.1"))
        cache.lookup_range("net", ip_address("10.0.0.2"))
        cache.lookup_range("net", ip_address("11.0.0.1"))
        cache.get("k", "x")
        cache.get("k", "y")
        assert cache.stats.as_dict() == {"hits": 3, "misses": 2, "stores": 2, "dropped": 0}


class TestInFlight:
    """What one process is fetching, another waits for instead of fetching again."""

    def test_a_claim_is_held_until_released_or_its_holder_dies(self, tmp_path: Path) -> None:
        import subprocess
        import sys
        import time

        from notifier.cache import LookupCache

        path = tmp_path / "cache.sqlite"
        first, second = LookupCache(path), LookupCache(path)
        assert first.claim("registry:127.1.0.0/16", 60)
        assert first.claim("registry:127.1.0.0/16", 60)  # its own mark
        assert not second.claim("registry:127.1.0.0/16", 60)
        first.release("registry:127.1.0.0/16")
        assert second.claim("registry:127.1.0.0/16", 60)
        # a holder killed mid-fetch: its mark goes at once, not after the lease
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO cache_in_flight (key, holder, lease_until) VALUES (?, ?, ?)",
                (b"ptr:x", f"{gone.stdout.strip()}:dead", time.time() + 60),
            )
        assert first.claim("ptr:x", 60)
        first.close()
        second.close()

    def test_many_let_go_at_once(self, tmp_path: Path) -> None:
        """``release_many`` lets go of this process's marks, more than one statement's worth,
        and of no other's."""
        from notifier.cache import LookupCache

        path = tmp_path / "cache.sqlite"
        first, second = LookupCache(path), LookupCache(path)
        keys = [f"lookups:4:{n:x}/24" for n in range(1200)]
        assert all(first.claim(key, 60) for key in keys)
        assert second.claim("theirs", 60)
        assert not any(second.claim(key, 60) for key in keys[::100])
        first.release_many([*keys, "theirs"])
        assert all(second.claim(key, 60) for key in keys)
        assert not first.claim("theirs", 60)
        first.release_many([])
        first.close()
        second.close()


class TestWriteBehind:
    """A batch's stores are written together: one transaction, seen by others once written."""

    def test_held_back_until_flushed_released_or_closed(self, tmp_path: Path) -> None:
        first, second = open_cache(tmp_path), open_cache(tmp_path)
        first.write_behind = 3
        first.put("k", "a", [1], 60)
        first.put("k", "b", [2], 60)
        assert first.get("k", "a") == [1]  # this process sees its own at once
        assert second.get("k", "a") is None
        first.put("k", "c", [3], 60)  # the third fills the batch: written
        assert second.get("k", "a") == [1] and second.get("k", "c") == [3]
        first.put("k", "d", [4], 60)
        first.release("registry:x")  # before letting go of anything: written
        assert second.get("k", "d") == [4]
        first.put("k", "e", [5], 60)
        first.close()
        assert second.get("k", "e") == [5]
        assert first.stats.stores == 5


class TestPace:
    """Turns at a server, shared by the processes of one machine through the cache file."""

    def test_turns_are_spaced_across_instances(self, tmp_path: Path) -> None:
        first, second = open_cache(tmp_path), open_cache(tmp_path)
        waits = [c.reserve("rate:rdap.example", 0.5) for c in (first, second, first, second)]
        assert waits[0] is not None and waits[0] <= 0.05
        for before, after in zip(waits, waits[1:], strict=False):
            assert after is not None and before is not None
            assert 0.4 <= after - before <= 0.6  # one interval apart, whoever asks
        assert first.reserve("rate:other.example", 0.5) == pytest.approx(0.0, abs=0.05)

    def test_a_turn_asked_late_is_caught_up_by_a_quarter_interval(self, tmp_path: Path) -> None:
        """A process asking after its turn was due (busy elsewhere) starts at once, and the
        next turn is due a quarter of an interval sooner than a whole one: lateness does not
        add up so fast, and no two turns come closer than three quarters of an interval."""
        import time

        first, second = open_cache(tmp_path), open_cache(tmp_path)
        assert first.reserve("rate:rdap.example", 0.4) == pytest.approx(0.0, abs=0.05)
        time.sleep(0.6)  # due after 0.4 s: asked 0.2 s late
        assert second.reserve("rate:rdap.example", 0.4) == pytest.approx(0.0, abs=0.05)
        wait = first.reserve("rate:rdap.example", 0.4)
        assert wait is not None and 0.25 <= wait <= 0.35  # 0.4 s less the 0.1 s caught up
        wait = second.reserve("rate:rdap.example", 0.4)
        assert wait is not None and 0.65 <= wait <= 0.75  # then whole intervals again

    def test_a_pause_holds_every_instance(self, tmp_path: Path) -> None:
        first, second = open_cache(tmp_path), open_cache(tmp_path)
        first.reserve("rate:rdap.example", 0.0, 30.0)  # HTTP 429, Retry-After: 30
        wait = second.reserve("rate:rdap.example", 0.5)
        assert wait is not None and 29 <= wait <= 30.5

    def test_without_a_database_the_process_paces_itself(self, tmp_path: Path) -> None:
        blocked = tmp_path / "not-a-dir"
        blocked.write_text("")
        cache = LookupCache(blocked / CACHE_FILE)
        assert cache.reserve("rate:rdap.example", 0.5) is None


async def test_two_limiters_sharing_a_cache_keep_one_rate(tmp_path: Path) -> None:
    """Two processes' limiters (here two instances, each with its own cache connection) asking
    one registry at once: together they keep to its rate, as one limiter would."""
    import asyncio
    import time

    from notifier.net import RateLimiter

    limiters = [RateLimiter(10, shared=open_cache(tmp_path)) for _ in range(2)]
    started = time.monotonic()
    times: list[float] = []

    async def ask(limiter: RateLimiter) -> None:
        await limiter.wait("rdap.example")
        times.append(time.monotonic() - started)

    await asyncio.gather(*(ask(limiters[n % 2]) for n in range(6)))
    times.sort()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.08, gaps  # 10 a second: a tenth of a second apart, not two at once
    assert times[-1] <= 0.5 + 0.2
