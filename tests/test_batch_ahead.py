"""A batch composes its messages while the lookups go on; a late address still reaches the
message its recipient gets, and what is sent is what the log says was sent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from ipaddress import ip_address
from pathlib import Path

import pytest
from desks import desk_hosts, desk_networks

from notifier import Finding, Notifier
from notifier.batch import Batch
from notifier.batch import ahead as ahead_module
from notifier.batch.states import Plan
from notifier.compose.pool import IN_PROCESS_FIRST
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox

NETWORKS = IN_PROCESS_FIRST + 2  # one recipient each: enough to start the compose workers
SHARED = "abuse@shared.test"  # the desk of network 0 and of the late network
LATE = "127.41.99.1"  # its registry answers slowly: the address resolves last
WORLD = World(
    networks=(
        *desk_networks(41, NETWORKS, SHARED),
        WorldNetwork("127.41.99.0/24", "afrinic", "NET-LATE", "NET-LATE", "ZA", "Late", SHARED),
    ),
    hosts=(*desk_hosts(41, NETWORKS), WorldHost(LATE)),
)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(WORLD, directory=tmp_path) as box:
        yield box


@pytest.mark.parametrize("budget", ["usual", "one recipient a look"])
async def test_messages_composed_ahead_are_sent_and_a_late_address_is_not_left_out(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, budget: str
) -> None:
    if budget != "usual":  # each look hands over one recipient's jobs, then lets the loop turn
        monkeypatch.setattr(ahead_module, "_LOOK_BUDGET", 0.0)
    sandbox.registries["afrinic"].slow(0.002)  # seconds per byte of its answer
    dropped: list[Hashable] = []
    given: dict[str, bool] = {}  # recipient -> whether its round took the findings built ahead
    give = ahead_module.Ahead.give

    def watched_give(self: ahead_module.Ahead, plans: dict[str, Plan]) -> None:
        give(self, plans)
        given.update({address: plan.findings is not None for address, plan in plans.items()})

    monkeypatch.setattr(ahead_module.Ahead, "give", watched_give)
    async with Notifier(sandbox.settings(rdap={"timeout": 20})) as notifier:
        drop = notifier._composer.drop

        def watched(keys: Sequence[Hashable] | None = None) -> None:
            dropped.extend(keys or ())
            drop(keys)

        notifier._composer.drop = watched  # type: ignore[method-assign]
        # the workers are up before the first address resolves, however busy the machine
        notifier.expect_messages(NETWORKS)
        assert await asyncio.to_thread(notifier._composer._ready.wait, 60)
        batch = Batch(notifier)
        started = time.monotonic()
        for n in range(NETWORKS):
            await batch.submit(Finding(ip_address(f"127.41.{n}.1"), "Redis open", port=6379))
        await batch.submit(Finding(ip_address(LATE), "Redis open", port=6379))
        await batch.flush()
        ahead = notifier.composed_ahead
    assert time.monotonic() - started > 1.0, "the late registry answered too soon to test"

    # network 0's desk had its message composed while the late address was still resolving,
    # then dropped when that address turned out to be theirs too, and composed again as the
    # lookups ended, before the round asked for it
    assert dropped
    # the others were sent as composed ahead (all of them, unless the machine is very busy)
    assert NETWORKS // 2 <= ahead <= NETWORKS
    # their findings, too, as composing built them (the shared desk's: with the late address)
    assert sum(given.values()) == ahead and given[SHARED]
    shared = [m for m in sandbox.smtp.messages if m.rcpt_tos == (SHARED,)]
    assert len(shared) == 1
    assert b"127.41.0.1" in shared[0].raw and LATE.encode() in shared[0].raw
    assert len(sandbox.smtp.messages) == NETWORKS  # one per recipient

    # every message on the wire is the one its intent record names
    log = sandbox.settings().state_dir / "audit.jsonl"
    intents = [json.loads(x) for x in log.read_text().splitlines() if '"intent"' in x]
    digests = {r["digest"] for r in intents}
    assert len(intents) == NETWORKS
    for message in sandbox.smtp.messages:
        assert hashlib.sha256(message.raw).hexdigest() in digests


async def test_the_mail_servers_connections_are_opened_while_the_lookups_go_on(
    tmp_path: Path,
) -> None:
    """As a batch learns its recipients it opens its SMTP connections (one per recipient, up to
    the pool's size): its messages find them open, and no other is made."""
    world = World(networks=desk_networks(43, 3, "abuse@org0.test"), hosts=desk_hosts(43, 3))
    async with Sandbox(world, directory=tmp_path) as box:
        box.registries["apnic"].slow(0.002)  # network 2's: its address resolves well after
        async with Notifier(box.settings()) as notifier:
            batch = Batch(notifier)
            for n in range(3):
                await batch.submit(Finding(ip_address(f"127.43.{n}.1"), "Redis open", port=6379))
            flushing = asyncio.ensure_future(batch.flush())
            async with asyncio.timeout(10):
                while box.smtp.connections < 2:
                    await asyncio.sleep(0.005)
            # opened while the slow address was still resolving, before any message
            assert batch.counts.resolved < 3 and not box.smtp.messages
            await flushing
        assert len(box.smtp.messages) == 3
        assert box.smtp.connections == 3
