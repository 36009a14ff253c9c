"""The lookup cache in PostgreSQL: the same contract as the file store, shared by processes
(and machines) naming one database, with what is in flight visible to all of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.cache import LookupCache
from notifier.config import Settings
from notifier.ledger.pg import setup
from notifier.models import Contact, Role, SourceReport


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings.from_mapping({"state": {"dir": str(tmp_path / "state"), "url": url}})


@pytest.fixture
def db(pg_url: str) -> str:
    setup(pg_url, initial=True)
    return pg_url


def _open(db: str, tmp_path: Path, clock: Clock | None = None, **kw: Any) -> LookupCache:
    return LookupCache.from_settings(_settings(db, tmp_path), clock=clock or Clock(), **kw)


def _report(address: str) -> list[SourceReport]:
    return [SourceReport("rdap", contacts=[Contact(address, Role.NETWORK, ("rdap",), 0.9)])]


def test_from_settings_uses_the_database(db: str, tmp_path: Path) -> None:
    cache = _open(db, tmp_path)
    cache.put("k", "a", {"x": 1}, 60)
    cache.close()
    assert not (tmp_path / "state" / "cache.sqlite").exists()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM cache_entries").fetchone() == (1,)


def test_entries_and_ranges_are_shared_between_instances(db: str, tmp_path: Path) -> None:
    clock = Clock()
    first, second = _open(db, tmp_path, clock), _open(db, tmp_path, clock)
    first.put("ptr", "127.9.0.1", _report("a@example.net"), 60)
    first.store_range("registry", ["127.9.0.0/16"], _report("wide@example.net"), 60)
    first.store_range("registry", ["127.9.1.0/24"], _report("narrow@example.net"), 60)
    got = second.get("ptr", "127.9.0.1")
    assert got[0].contacts[0].address == "a@example.net"
    hit = second.lookup_range("registry", ip_address("127.9.1.7"))
    assert hit[0].contacts[0].address == "narrow@example.net"
    hit = second.lookup_range("registry", ip_address("127.9.2.7"))
    assert hit[0].contacts[0].address == "wide@example.net"
    assert second.lookup_range("registry", ip_address("127.10.0.1")) is None
    # storing a range again replaces its value for everyone
    first.store_range("registry", ["127.9.1.0/24"], _report("new@example.net"), 60)
    third = _open(db, tmp_path, clock)
    hit = third.lookup_range("registry", ip_address("127.9.1.7"))
    assert hit[0].contacts[0].address == "new@example.net"
    for cache in (first, second, third):
        cache.close()


def test_expiry_follows_the_clock_and_is_purged(db: str, tmp_path: Path) -> None:
    clock = Clock()
    cache = _open(db, tmp_path, clock)
    cache.put("k", "a", [1], 10)
    cache.store_range("registry", ["127.9.0.0/16"], _report("a@example.net"), 10)
    clock.now += 11
    assert cache.get("k", "a") is None
    assert cache.lookup_range("registry", ip_address("127.9.0.1")) is None
    cache.close()
    _open(db, tmp_path, clock).lookup_range("registry", ip_address("127.9.0.1"))
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM cache_entries").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM cache_values").fetchone() == (0,)


def test_undecodable_rows_are_misses_and_deleted(db: str, tmp_path: Path) -> None:
    cache = _open(db, tmp_path)
    cache.put("registry-entry", "x", [1], 60)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO cache_entries (kind, key, value, expires) VALUES "
            "('ptr', 'bad'::bytea, '{not json', 1e12)"
        )
    fresh = _open(db, tmp_path)
    assert fresh.get("ptr", "bad") is None
    assert fresh.stats.dropped == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM cache_entries WHERE kind = 'ptr'").fetchone() == (
            0,
        )


def test_an_unreachable_database_leaves_a_working_memory_cache(tmp_path: Path) -> None:
    seen: list[str] = []
    url = "postgresql://nobody@127.0.0.1:1/none"
    cache = LookupCache.from_settings(
        _settings(url, tmp_path), on_event=lambda name, fields: seen.append(name)
    )
    cache.store_range("registry", ["127.9.0.0/16"], _report("a@example.net"), 60)
    assert cache.lookup_range("registry", ip_address("127.9.0.1")) is not None
    assert cache.claim("registry:x", 60)
    assert seen[0] == "cache-unavailable"


_HOLD = """
import sys, time
from notifier.cache import LookupCache
from notifier.config import Settings
settings = Settings.from_mapping({"state": {"dir": sys.argv[2], "url": sys.argv[1]}})
cache = LookupCache.from_settings(settings)
assert cache.claim("registry:4:7f090000/16", 600)
print("held", flush=True)
time.sleep(600)
"""


def test_many_marks_let_go_at_once(db: str, tmp_path: Path) -> None:
    """``release_many`` on PostgreSQL: this process's marks, in more than one statement, and
    no other's."""
    first, second = _open(db, tmp_path), _open(db, tmp_path / "second")
    keys = [f"lookups:4:{n:x}/24" for n in range(1200)]
    assert all(first.claim(key, 600) for key in keys)
    assert second.claim("theirs", 600)
    assert not second.claim(keys[0], 600)
    first.release_many([*keys, "theirs"])
    assert all(second.claim(key, 600) for key in keys)
    assert not first.claim("theirs", 600)


def test_in_flight_marks_across_processes_and_a_killed_holder(db: str, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLD), db, str(tmp_path / "other")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        cache = _open(db, tmp_path)
        assert not cache.claim("registry:4:7f090000/16", 600)  # another live process fetches
        assert cache.claim("registry:4:7f0a0000/16", 600)  # a different network is free
        assert cache.claim("registry:4:7f0a0000/16", 600)  # one's own mark
        holder.kill()  # SIGKILL: the server drops its session, and its lock with it
        holder.wait(10)
        for _ in range(100):
            if cache.claim("registry:4:7f090000/16", 600):
                break
            import time

            time.sleep(0.05)
        else:
            pytest.fail("a killed holder's mark was not taken over")
        cache.release("registry:4:7f090000/16")
        second = _open(db, tmp_path)
        assert second.claim("registry:4:7f090000/16", 600)
        assert not cache.claim("registry:4:7f090000/16", 600)
    finally:
        holder.kill()
        holder.wait(10)


def test_a_hung_holder_loses_its_mark_when_the_lease_ends(db: str, tmp_path: Path) -> None:
    clock = Clock()
    first, second = _open(db, tmp_path, clock), _open(db, tmp_path, clock)
    assert first.claim("k", 30)
    assert not second.claim("k", 30)
    clock.now += 31
    assert second.claim("k", 30)
    assert not first.claim("k", 30)


def test_stores_held_back_are_written_in_one_go(db: str, tmp_path: Path) -> None:
    first, second = _open(db, tmp_path), _open(db, tmp_path)
    first.write_behind = 100
    for n in range(50):
        first.put("ptr", f"127.9.0.{n}", _report(f"n{n}@example.net"), 60)
    assert second.get("ptr", "127.9.0.7") is None
    first.flush()
    got = second.get("ptr", "127.9.0.7")
    assert got is not None and got[0].contacts[0].address == "n7@example.net"


def test_answers_are_read_in_bulk(db: str, tmp_path: Path) -> None:
    first, second = _open(db, tmp_path), _open(db, tmp_path)
    for n in range(20):
        first.put("ptr", f"127.9.1.{n}", _report(f"b{n}@example.net"), 60)
    second.preload("ptr", [f"127.9.1.{n}" for n in range(25)])
    first.close()  # the answers come from what ``second`` read, and the misses too
    got = second.get("ptr", "127.9.1.13")
    assert got is not None and got[0].contacts[0].address == "b13@example.net"
    assert second.get("ptr", "127.9.1.22") is None
    assert second.stats.hits == 1 and second.stats.misses == 1


def test_turns_at_a_registry_are_shared_by_the_server_clock(db: str, tmp_path: Path) -> None:
    first, second = _open(db, tmp_path), _open(db, tmp_path)
    waits = [c.reserve("rate:rdap.example", 0.5) for c in (first, second, first)]
    assert all(w is not None for w in waits)
    assert 0.4 <= waits[1] - waits[0] <= 0.6 and 0.4 <= waits[2] - waits[1] <= 0.6  # type: ignore[operator]
    first.reserve("rate:whois.example", 0.0, 20.0)
    wait = second.reserve("rate:whois.example", 0.5)
    assert wait is not None and 19 <= wait <= 20.5
