"""Lookup workers: a large batch's per-address work in other processes, on a loopback internet."""

from __future__ import annotations

import asyncio
import multiprocessing.forkserver
import os
import signal
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

import pytest
from processes import kill_when_ready, running, survivors

from notifier import Finding, Notifier
from notifier.batch import Batch, BatchCounts, FindingOutcome
from notifier.batch import stages as batch_stages
from notifier.batch.stages import Lookups
from notifier.cache import LookupCache
from notifier.models import Resolution, Target
from notifier.resolve import registry
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox
from notifier.workers import forkserver

NETS = World(
    networks=(
        WorldNetwork("127.40.0.0/24", "ripe", "NET-R", "NET-R", "NL", "R BV", "abuse@r.test"),
        WorldNetwork("127.41.0.0/24", "arin", "NET-A", "NET-A", "US", "A Inc", "abuse@a.test"),
        WorldNetwork("127.42.0.0/24", "apnic", "NET-P", "NET-P", "JP", "P KK", "abuse@p.test"),
    ),
    hosts=(
        WorldHost(
            "127.40.0.7",
            "www.owner.test",
            security_txt="Contact: mailto:security@owner.test\nExpires: {expires}\n",
        ),
        WorldHost("127.41.0.9", "db.customer.test"),
    ),
)
ADDRESSES = [f"127.{net}.0.{host}" for net in (40, 41, 42) for host in range(1, 61)]


async def _run(
    box: Sandbox,
    workers: int,
    on_progress: Callable[[Batch, BatchCounts], None] | None = None,
) -> tuple[dict[str, tuple[str, tuple[str, ...]]], float]:
    """Every finding's status and recipients, and the CPU the workers said they used."""
    settings = box.settings(limits={"lookup_workers": workers, "dns_concurrency": 32})
    box.dns.latency = 0.1  # the sending process alone takes long enough for a worker to help
    outcomes: list[FindingOutcome] = []
    with LookupCache.from_settings(settings) as cache:
        async with Notifier(settings, cache=cache) as notifier:
            batch = Batch(notifier, dry_run=True, on_outcome=outcomes.append)
            if on_progress is not None:
                batch._on_progress = lambda counts: on_progress(batch, counts)
            for ip in ADDRESSES:
                await batch.submit(Finding(ip_address(ip), "open Elasticsearch", port=9200))
            await batch.flush()
            assert notifier.ctx.bulk_dns is None
    seen = {o.ip: (o.status, tuple(sorted(o.recipients))) for o in outcomes}
    return seen, batch.lookup_workers_cpu


def _every_address_resolved(seen: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """The batch finished every address, with its recipients, whatever became of the worker."""
    assert len(seen) == len(ADDRESSES)
    assert {status for status, _ in seen.values()} == {"dry-run"}
    assert all(recipients for _, recipients in seen.values())


def _signal_worker(
    sig: signal.Signals, signalled: list[int]
) -> Callable[[Batch, BatchCounts], None]:
    """A progress callback sending ``sig`` once to the first worker, as soon as it holds
    addresses; its pid goes into ``signalled``."""

    def send(batch: Batch, counts: BatchCounts) -> None:
        remotes = batch._lookups._remotes
        if signalled or not remotes or not remotes[0].held:
            return
        process = remotes[0]._process
        if process is not None and process.pid is not None:
            os.kill(process.pid, sig)
            signalled.append(process.pid)

    return send


@pytest.fixture
def early_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers start once 20 addresses wait for reverse DNS, not a thousand, from a fork
    server already up (as a batch large enough for workers has it)."""
    monkeypatch.setattr(batch_stages, "REMOTE_AFTER", 20)
    forkserver()
    multiprocessing.forkserver.ensure_running()


@pytest.mark.usefixtures("early_workers")
class TestLookupWorkers:
    async def test_workers_resolve_as_the_sending_process_does(self, tmp_path: Path) -> None:
        async with Sandbox(NETS, directory=tmp_path / "alone") as box:
            alone, _ = await _run(box, 0)
        async with Sandbox(NETS, directory=tmp_path / "shared") as box:
            shared, cpu = await _run(box, 1)
            # the registry stage stays in one process: each network asked once
            assert [box.registries[k].request_count for k in ("ripe", "arin", "apnic")] == [1, 1, 1]
            ptr = [q for q in box.dns.queries if q.rtype == "PTR"]
            assert len(ptr) == len(ADDRESSES)  # each address asked once, by one process
        assert shared == alone
        assert {status for status, _ in shared.values()} == {"dry-run"}
        assert shared["127.40.0.7"][1] != shared["127.40.0.8"][1]  # the owner's own contact
        assert cpu > 0  # the worker said what it used

    async def test_a_killed_worker_leaves_its_addresses_to_the_batch(self, tmp_path: Path) -> None:
        killed: list[int] = []
        async with Sandbox(NETS, directory=tmp_path) as box:
            seen, _ = await _run(box, 1, _signal_worker(signal.SIGKILL, killed))
        assert killed
        _every_address_resolved(seen)

    async def test_a_stuck_worker_is_killed_and_its_addresses_taken_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker that stops answering (SIGSTOP: alive, silent) while it has work it could
        finish: after the silence limit it is killed and the batch finishes without it."""
        from notifier.batch import remote

        monkeypatch.setattr(remote, "SILENCE", 1.0)
        monkeypatch.setattr(remote, "_WATCH_EVERY", 0.2)
        stopped: list[int] = []
        async with Sandbox(NETS, directory=tmp_path) as box:
            seen, _ = await _run(box, 1, _signal_worker(signal.SIGSTOP, stopped))
        assert stopped and not running(stopped[0])
        _every_address_resolved(seen)

    async def test_small_batches_start_no_worker(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(batch_stages, "REMOTE_AFTER", 10_000)
        async with Sandbox(NETS, directory=tmp_path) as box:
            seen, cpu = await _run(box, 1)
        assert len(seen) == len(ADDRESSES) and cpu == 0


WAITING_SENDER = """
import asyncio, sys, time
from notifier.config import Settings
from notifier.batch.remote import Remote

async def main():
    settings = Settings.from_mapping({{"state": {{"dir": {state!r}}}}})

    async def result(_):
        return None

    remote = Remote(settings, 4, result, lambda _: None)
    while not remote.ready:
        assert not remote.lost, "the worker did not start"
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    time.sleep(60)

asyncio.run(main())
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_ends_with_a_sender_killed_outright(tmp_path: Path) -> None:
    script = tmp_path / "sender.py"
    script.write_text(WAITING_SENDER.format(state=str(tmp_path / "state")))
    helpers = kill_when_ready(script)
    assert helpers  # the fork server and the worker
    assert not survivors(helpers)


async def test_lookups_by_name_start_before_the_networks_answer(tmp_path: Path) -> None:
    """A worker's address with an owner's host name: its security.txt is fetched while the
    address still waits for its registry answer, and used (once) when it comes."""
    target = Target(ip_address("127.40.0.7"))
    resolved: list[Resolution] = []

    async def finish(_: int, resolution: Resolution) -> None:
        resolved.append(resolution)

    async with Sandbox(NETS, directory=tmp_path) as box:
        async with Notifier(box.settings()) as notifier:
            answer = await registry(target, notifier.ctx)
            lookups = Lookups(
                notifier.ctx, {0: target}.__getitem__, finish, lambda *_: None, own_registry=False
            )
            lookups.add(0)
            for _ in range(100):
                if any(r.path.endswith("security.txt") for r in box.web.requests):
                    break
                await asyncio.sleep(0.05)
            assert not resolved  # still waiting for its network
            fetched = [r for r in box.web.requests if r.path.endswith("security.txt")]
            assert fetched
            lookups.answer(0, answer)
            await lookups.wait()
        assert [r for r in box.web.requests if r.path.endswith("security.txt")] == fetched
    assert "security@owner.test" in [c.address for c in resolved[0].recipients]
