"""Messages composed in worker processes are the ones composed in the sending process."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from notifier.compose import ComposedMessage
from notifier.compose.pool import IN_PROCESS_FIRST, Composer, Job
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
    for future in composer._warm:
        await asyncio.wrap_future(future)


async def test_workers_compose_the_same_bytes() -> None:
    composer = Composer(SETTINGS, workers=1)
    try:
        await _pool_ready(composer)
        assert composer._pool is not None
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


_KILLED_RUN = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from test_compose_pool import SETTINGS, _pool_ready, job
from notifier.compose.pool import Composer
async def main():
    composer = Composer(SETTINGS, workers=2)
    await _pool_ready(composer)
    print(" ".join(str(p) for p in composer._pool._processes), flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_killed_run_leaves_no_workers_behind() -> None:
    """A worker holds its own end of the job queue, so it cannot hear its run die; it watches
    the run's process instead, and ends (and the fork server with it) once the run is gone."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    run = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    workers = [int(p) for p in run.stdout.readline().split()]
    assert len(workers) == 2

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a finished child of the fork server is a zombie until the server reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"

    assert all(alive(p) for p in workers)
    run.kill()  # SIGKILL: no shutdown, no atexit
    run.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
