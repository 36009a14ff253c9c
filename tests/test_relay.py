"""The relay: a second sending process takes part of a batch's SMTP. What goes out, and what the
log says, is the same as from one process; a relay that dies leaves nothing sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from desks import desk_hosts, desk_networks

from notifier import Finding, Notifier
from notifier.batch import Batch, FindingOutcome
from notifier.compose.mime import ComposedMessage
from notifier.config import Settings
from notifier.dispatch import Handover
from notifier.ledger import verify
from notifier.models import Contact, Role
from notifier.relay import LOST, Relay, _frame, _receive
from notifier.sandbox.world import World
from notifier.testing import Sandbox
from notifier.workers import other_cores

NETWORKS = 24  # one desk each, at 24 different domains
WORLD = World(
    networks=desk_networks(43, NETWORKS, "abuse@org0.test"), hosts=desk_hosts(43, NETWORKS)
)

needs_a_core = pytest.mark.skipif(other_cores() < 1, reason="a relay needs a second core")


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(WORLD, directory=tmp_path) as box:
        box.smtp.delay = 0.003  # every reply: messages are in the relay's hands for a while
        yield box


def _findings() -> list[Finding]:
    return [
        Finding(ip_address(f"127.43.{n}.1"), "Redis without a password", port=port)
        for n in range(NETWORKS)
        for port in (6379, 6380)
    ]


def _records(sandbox: Sandbox) -> list[dict[str, object]]:
    log = sandbox.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _run(sandbox: Sandbox, **limits: object) -> tuple[Notifier, list[FindingOutcome]]:
    outcomes: list[FindingOutcome] = []
    async with Notifier(sandbox.settings(limits={"relay_from": 1, **limits})) as notifier:
        batch = Batch(notifier, on_outcome=outcomes.append)
        for finding in _findings():
            await batch.submit(finding)
        await batch.flush()
    return notifier, outcomes


@needs_a_core
async def test_a_relay_sends_part_of_a_batch_and_the_log_says_exactly_what_went(
    sandbox: Sandbox,
) -> None:
    notifier, outcomes = await _run(sandbox)

    assert 0 < notifier.sending.relayed < NETWORKS  # both processes sent some
    assert {o.status for o in outcomes} == {"sent"}
    messages = sandbox.smtp.messages
    assert sorted(m.rcpt_tos[0] for m in messages) == sorted(
        ["abuse@org0.test", *(f"abuse@org{n}.test" for n in range(1, NETWORKS))]
    )
    records = _records(sandbox)
    intents = [r for r in records if r["event"] == "intent"]
    outcomes_logged = [r for r in records if r["event"] == "outcome"]
    assert len(intents) == len(outcomes_logged) == NETWORKS
    # two writers on one chain: the relay's intents name a worker of their own
    assert len({r["worker"] for r in intents}) == 2
    assert {r["status"] for r in outcomes_logged} == {"delivered"}
    _verified(sandbox)

    # a second run finds everything sent, by either process
    notifier, outcomes = await _run(sandbox)
    assert {o.status for o in outcomes} == {"already-sent"}
    assert len(sandbox.smtp.messages) == NETWORKS


@needs_a_core
async def test_the_relay_is_told_to_end_before_the_outcomes_are_written(
    sandbox: Sandbox,
) -> None:
    """Once the last message is handed over the relay ends while the batch writes its
    per-finding outcomes; the run's close then only waits for that end."""
    told: list[bool] = []
    async with Notifier(sandbox.settings(limits={"relay_from": 1})) as notifier:

        def seen(outcome: FindingOutcome) -> None:
            relay = notifier.sending._relay
            told.append(relay is not None and relay._ending is not None)

        batch = Batch(notifier, on_outcome=seen)
        for finding in _findings():
            await batch.submit(finding)
        await batch.flush()
        assert notifier.sending.relayed > 0
    assert told and all(told)
    relay = notifier.sending._relay
    assert relay is not None and relay._ending is not None and relay._ending.done()


@needs_a_core
async def test_a_second_batch_of_one_run_gets_a_relay_of_its_own(sandbox: Sandbox) -> None:
    """The relay of a run's first batch ends with it; the next batch on the same ``Notifier``
    starts another, which takes part of its messages too."""
    async with Notifier(sandbox.settings(limits={"relay_from": 1})) as notifier:
        for port in (6379, 6381):
            batch = Batch(notifier)
            for n in range(NETWORKS):
                await batch.submit(Finding(ip_address(f"127.43.{n}.1"), "Redis open", port=port))
            await batch.flush()
            if port == 6379:
                first = notifier.sending.relayed
        assert 0 < first < notifier.sending.relayed
    assert len(sandbox.smtp.messages) == 2 * NETWORKS
    _verified(sandbox)


async def test_without_a_relay_one_process_sends_everything(sandbox: Sandbox) -> None:
    notifier, outcomes = await _run(sandbox, relay_from=0)
    assert notifier.sending.relayed == 0
    assert len(sandbox.smtp.messages) == NETWORKS
    intents = [r for r in _records(sandbox) if r["event"] == "intent"]
    assert len({r["worker"] for r in intents}) == 1


@needs_a_core
async def test_a_relay_killed_mid_batch_leaves_nothing_sent_twice(sandbox: Sandbox) -> None:
    killed = asyncio.Event()
    outcomes: list[FindingOutcome] = []
    async with Notifier(sandbox.settings(limits={"relay_from": 1})) as notifier:
        batch = Batch(notifier, on_outcome=outcomes.append)
        for finding in _findings():
            await batch.submit(finding)

        async def kill_once_it_holds_some() -> None:
            while (relay := notifier.sending._relay) is None or relay.handed < 2:
                await asyncio.sleep(0.001)
            assert relay._process is not None and relay._process.pid is not None
            os.kill(relay._process.pid, signal.SIGKILL)
            killed.set()

        killer = asyncio.get_running_loop().create_task(kill_once_it_holds_some())
        await batch.flush()
        await killer
    assert killed.is_set()

    # no recipient got a finding twice; each finding is sent or (the relay may have sent it)
    # in doubt, never lost without a word
    seen: dict[str, int] = {}
    for message in sandbox.smtp.messages:
        seen[message.rcpt_tos[0]] = seen.get(message.rcpt_tos[0], 0) + 1
    assert max(seen.values()) == 1
    assert {o.status for o in outcomes} <= {"sent", "in-doubt"}
    assert sum(o.status == "sent" for o in outcomes) >= len(outcomes) // 2
    _verified(sandbox)


KILLED_SENDER = """
import asyncio, os, signal, sys
from ipaddress import ip_address
from notifier import Finding, Notifier
from notifier.batch import Batch
from notifier.config import load_settings

async def main():
    async with Notifier(load_settings(sys.argv[1])) as notifier:
        batch = Batch(notifier)
        for n in range(int(sys.argv[2])):
            for port in (6379, 6380):
                await batch.submit(Finding(ip_address(f"127.43.{n}.1"), sys.argv[3], port=port))

        async def die_once_the_relay_holds_some():
            while (relay := notifier.sending._relay) is None or relay.handed < 3:
                await asyncio.sleep(0.001)
            print(relay._process.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.get_running_loop().create_task(die_once_the_relay_holds_some())
        await batch.flush()

asyncio.run(main())
"""


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended; only its parent is gone


@needs_a_core
async def test_a_sending_process_killed_leaves_its_relay_to_finish_and_end(
    sandbox: Sandbox,
) -> None:
    config = sandbox.write_config(limits={"relay_from": 1})
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_SENDER,
        str(config),
        str(NETWORKS),
        "Redis without a password",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == -signal.SIGKILL
    relay = int(out.split()[-1])
    # the relay sees its sending process gone: it drops what it had not claimed, finishes what
    # it had (so its outcome is on record) and ends
    for _ in range(200):
        if not _running(relay):
            break
        await asyncio.sleep(0.05)
    assert not _running(relay)
    before = len(sandbox.smtp.messages)

    notifier, outcomes = await _run(sandbox)  # the run again, to the end
    statuses = {o.status for o in outcomes}
    assert statuses <= {"sent", "already-sent", "in-doubt"} and "sent" in statuses
    per_recipient: dict[str, int] = {}
    for message in sandbox.smtp.messages:
        per_recipient[message.rcpt_tos[0]] = per_recipient.get(message.rcpt_tos[0], 0) + 1
    assert max(per_recipient.values()) == 1  # nobody got a finding twice
    in_doubt = {o.ip for o in outcomes if o.status == "in-doubt"}
    assert len(per_recipient) + len(in_doubt) == NETWORKS  # the rest was sent, once
    assert before < len(sandbox.smtp.messages)
    _verified(sandbox)


async def test_the_sending_process_decides_again_when_the_relay_fails_or_ends() -> None:
    """The protocol, with the test playing the relay: a failure stops the handing over and the
    message comes back as LOST; so does every message held when the relay's end closes."""
    events: list[tuple[str, dict[str, object]]] = []
    relay = Relay(Settings(), lambda event, fields: events.append((event, fields)))
    ours, theirs = socket.socketpair()
    relay._reading = asyncio.get_running_loop().create_task(relay._read(ours))
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    writer.write(_frame(("ready", 0, None)))
    while not relay._ready:
        await asyncio.sleep(0.001)
    assert relay.takes("first.test")
    item = _handover()

    first = asyncio.get_running_loop().create_task(relay.hand_over(item))
    kind, number, handed = await _receive(reader)
    assert kind == "hand-over" and handed.contact == item.contact
    writer.write(_frame(("failed", number, "AuditError: disk full")))
    assert await first == LOST
    assert not relay.takes("first.test") and not relay.takes("second.test")
    assert "disk full" in relay.failure
    assert await relay.hand_over(item) == LOST  # nothing more is handed over

    writer.close()  # the relay's end, gone while this process still had use for it
    await relay._reading
    assert events == [("relay-ended", {"reason": "AuditError: disk full"})]
    await relay.close()


def _verified(sandbox: Sandbox) -> None:
    state = sandbox.settings().state_dir
    report = verify(state / "audit.jsonl", messages_dir=state / "messages")
    assert report.ok, report


def _handover() -> Handover:
    composed = ComposedMessage(
        "<m@x>", b"Subject: x\r\n\r\nbody\r\n", "0" * 64, "C-1", "a@first.test"
    )
    contact = Contact("a@first.test", Role.NETWORK, ("test",), 0.9)
    return Handover(composed, contact, [Finding(ip_address("127.43.0.1"), "open", port=1)])
