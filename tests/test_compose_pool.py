"""Messages composed in worker processes are the ones composed in the sending process."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from processes import kill_when_ready, survivors

from notifier.compose import ComposedMessage
from notifier.compose.pool import AHEAD_IN_FLIGHT_PER_WORKER, IN_PROCESS_FIRST, Composer, Job
from notifier.config import Settings
from notifier.errors import TemplateError
from notifier.models import Contact, Finding, Network, Role

SETTINGS = Settings.from_mapping(
    {
        "sender": {
            "address": "Example Research <disclosure@research.example>",
            "organisation": "Example Research",
            "website": "https://research.example/scanning",
        }
    }
)
NOW = datetime(2025, 1, 13, 10, 0, tzinfo=UTC)
SERVICES = [(9200, "Elasticsearch without authentication"), (6379, "Redis without auth")]


def job(number: int, template: str | None = None) -> Job:
    findings = [
        Finding(
            ip_address(f"192.0.2.{10 + i}"),
            SERVICES[i % 2][1],
            port=SERVICES[i % 2][0],
            hostname="db.example.org" if i % 3 == 0 else None,
            observed_at=NOW if i % 2 else None,
        )
        for i in range(2 + number % 5)  # one finding would carry an X-ARF report with a random ID
    ]
    contact = Contact(
        "abuse@isp-one.net",
        Role.NETWORK,
        ("rdap",),
        0.9,
        ("RDAP abuse contact",),
        name="Ünï NOC",
        languages=("de",) if number % 2 else (),
    )
    network = Network("ripe", "EX-NET", "EX-NET", ("192.0.2.0/24",), country="NL")
    return Job(findings, contact, template, f"NTF-POOL{number:04d}", NOW, "3:abc", network=network)


def _same(composed: ComposedMessage) -> bytes:
    """The bytes with what is random in every message (its ID, MIME boundaries) blanked."""
    raw = composed.raw.replace(composed.message_id.encode(), b"<id>")
    return re.sub(rb"={15}\d+==", b"=boundary=", raw)


async def _pool_ready(composer: Composer) -> None:
    for number in range(IN_PROCESS_FIRST + 1):
        # the first after the few starts the workers, and is composed here while they start
        assert (await composer.compose(job(number))).built is not None
    assert composer._starter is not None
    await asyncio.to_thread(composer._starter.join)
    assert composer._ready.is_set()


async def test_workers_compose_the_same_bytes() -> None:
    composer = Composer(SETTINGS, workers=1)
    try:
        await _pool_ready(composer)
        for number in range(6):
            remote = await composer.compose(job(number))
            assert remote.built is None  # the bytes came back, not the object
            local = job(number).run(SETTINGS)
            assert _same(remote) == _same(local)
            assert remote.digest != local.digest and remote.guides == local.guides
            assert remote.language == local.language == ("de" if number % 2 else "en")
            # the object is read back from the bytes when asked for
            body = remote.message.get_body(("plain",))
            assert body is not None and "Elasticsearch" in str(body.get_content())
    finally:
        composer.close()


async def test_a_failure_in_a_worker_is_raised_as_here() -> None:
    composer = Composer(SETTINGS, workers=1)
    try:
        await _pool_ready(composer)
        with pytest.raises(TemplateError, match="no template"):
            await composer.compose(job(1, template="nonexistent"))
        # the pool goes on after a message that could not be composed
        assert (await composer.compose(job(2))).built is None
    finally:
        composer.close()


async def test_few_messages_or_no_workers_stay_in_process() -> None:
    few = Composer(SETTINGS)
    none = Composer(SETTINGS, workers=0)
    for number in range(IN_PROCESS_FIRST):
        assert (await few.compose(job(number))).built is not None
    for number in range(IN_PROCESS_FIRST + 3):
        assert (await none.compose(job(number))).built is not None
    assert few._pool is None and none._pool is None


SENDER = """
import asyncio, sys, time
sys.path.insert(0, {tests!r})
from test_compose_pool import SETTINGS, job
from notifier.compose.pool import IN_PROCESS_FIRST, Composer

async def main():
    composer = Composer(SETTINGS, workers=1)
    for number in range(IN_PROCESS_FIRST + 1):
        await composer.compose(job(number))
    await asyncio.to_thread(composer._starter.join)
    await composer.compose(job(1))
    print("ready", flush=True)
    time.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_with_a_sender_killed_outright(tmp_path: Path) -> None:
    script = tmp_path / "sender.py"
    script.write_text(SENDER.format(tests=str(Path(__file__).parent)))
    helpers = kill_when_ready(script)
    assert helpers  # the workers' server and a worker (and the resource tracker)
    assert not survivors(helpers)


async def test_a_run_expecting_many_messages_composes_every_one_in_a_worker() -> None:
    composer = Composer(SETTINGS, workers=1)
    try:
        composer.expect(IN_PROCESS_FIRST - 1)  # too few to pay for a process
        assert composer._starter is None
        composer.expect(IN_PROCESS_FIRST)
        assert composer._starter is not None
        await asyncio.to_thread(composer._starter.join)
        for number in range(3):
            assert (await composer.compose(job(number))).built is None
        assert composer.in_process == 0
    finally:
        composer.close()


async def test_a_message_composed_ahead_is_the_one_asked_for_later() -> None:
    composer = Composer(SETTINGS, workers=1)
    try:
        assert composer.ahead(job(7)) is None  # no workers yet: composed when asked, as always
        await _pool_ready(composer)
        key = composer.ahead(job(7))
        assert key is not None and composer.ahead(job(7)) == key  # started once
        # asked for later, with a later moment and log head: the same message
        later = replace(job(7), now=NOW + timedelta(seconds=5), log_head="9:def")
        sent = await composer.compose(later)
        assert composer.ahead_used == 1
        assert sent.built is None and f"{NOW:%d %b %Y %H:%M}" in sent.raw.decode()
        assert not composer._ahead and composer._ahead_bytes == 0

        # another message is composed afresh; what was composed ahead and not asked for is
        # dropped, and nothing is kept
        key = composer.ahead(job(8))
        other = await composer.compose(job(9))
        assert composer.ahead_used == 1 and other.case_ref == "NTF-POOL0009"
        assert key is not None
        composer.drop([key])
        assert not composer._ahead and composer._ahead_bytes == 0
    finally:
        composer.close()


@pytest.fixture
async def pool() -> AsyncIterator[Composer]:
    """A composer whose worker is up."""
    composer = Composer(SETTINGS, workers=1)
    try:
        await _pool_ready(composer)
        yield composer
    finally:
        composer.close()


async def test_composing_ahead_keeps_few_in_a_worker_and_a_bounded_store(pool: Composer) -> None:
    keys = [pool.ahead(job(100 + number)) for number in range(20)]
    started = [k for k in keys if k is not None]
    # a message asked for now waits behind at most these
    assert len(started) == AHEAD_IN_FLIGHT_PER_WORKER
    for key in started:
        await pool._ahead[key]
    assert pool._ahead_bytes > 0
    pool.drop()
    assert not pool._ahead and pool._ahead_bytes == 0
