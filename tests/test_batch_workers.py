"""Several `notify batch` workers on one input and one PostgreSQL database, each with a state
folder of its own (as on separate machines): they split the messages, each recipient gets one,
each network is asked once over all of them, and a killed worker's share is taken over."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from notifier.config import Settings
from notifier.ledger import open_ledger
from notifier.ledger.pg import setup
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox

REGISTRIES = ("ripe", "arin", "apnic", "lacnic")
# 24 networks with a desk each; a /16 block holds six /24 customer networks side by side, so the
# workers must agree on the width at which a network's lookup is marked in flight
NETWORKS = tuple(
    WorldNetwork(
        f"127.{30 + n // 6}.{n % 6}.0/24",
        REGISTRIES[n % 4],
        f"NET-{n}",
        f"NET-{n}",
        "NL",
        f"Org {n}",
        f"abuse@org{n}.test",
    )
    for n in range(24)
)
HOSTS = tuple(WorldHost(f"127.{30 + n // 6}.{n % 6}.{h}") for n in range(24) for h in (1, 2, 3))
WORLD = World(networks=NETWORKS, hosts=HOSTS)
PORTS = (9200, 6379)


@pytest.fixture
async def sandbox(tmp_path: Path) -> Any:
    async with Sandbox(WORLD, directory=tmp_path) as box:
        yield box


async def _run(argv: list[str], log: Path) -> tuple[int, str]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "notifier", *argv, stdout=out, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
    return proc.returncode or 0, log.read_text() + err.decode(errors="replace")


def _slow_smtp(box: Sandbox, delay: float) -> None:
    handler = box.smtp._handler
    accept = handler.handle_DATA

    async def handle_DATA(server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(delay)  # a message takes a while: the others take the next ones
        return await accept(server, session, envelope)

    handler.handle_DATA = handle_DATA  # type: ignore[method-assign]


async def test_workers_split_the_messages_and_the_lookups(
    sandbox: Sandbox, pg_url: str, tmp_path: Path
) -> None:
    setup(pg_url, initial=True)
    _slow_smtp(sandbox, 0.15)
    for key in REGISTRIES:  # each registry refuses (429) what comes faster than 10 a second
        sandbox.registries[key].rate_limit_per_second = 10
        sandbox.registries[key].rate_limit_burst = 2
    data = tmp_path / "findings.csv"
    data.write_text(
        "ip,port,finding\n"
        + "".join(f"{h.ip},{p},open service on {p}\n" for h in HOSTS for p in PORTS)
    )
    argvs = []
    for n in range(3):
        state = {"dir": str(tmp_path / f"machine-{n}"), "url": pg_url}
        # four messages at a time, 0.15 s each: no worker can send all 24 before the others
        # are done looking up, however far ahead it started
        config = sandbox.write_config(
            tmp_path / f"notify-{n}.toml",
            state=state,
            rdap={"rate_per_second": 10},
            limits={"concurrency": 4},
        )
        argvs.append(["batch", str(data), "--json", "--config", str(config)])
    runs = await asyncio.gather(
        *(_run(argv, tmp_path / f"worker-{n}.jsonl") for n, argv in enumerate(argvs))
    )
    assert [code for code, _ in runs] == [0, 0, 0], [out[-2000:] for _, out in runs]

    messages = sandbox.smtp.messages
    per_recipient = Counter(r for m in messages for r in m.rcpt_tos)
    assert set(per_recipient) == {n.abuse for n in NETWORKS}
    assert set(per_recipient.values()) == {1}, per_recipient  # messages ÷ recipients = 1.00
    # each network asked once over all workers together (RDAP requests ÷ networks = 1.00), and
    # each address's PTR once: a worker looks up the blocks it took, the others' from the cache
    asked = sum(sandbox.registries[k].request_count for k in REGISTRIES)
    assert asked == len(NETWORKS)
    # and the workers together kept to each registry's rate: they take turns in the database
    assert sum(sandbox.registries[k].throttled for k in REGISTRIES) == 0
    ptr = Counter(q.name for q in sandbox.dns.queries if q.rtype == "PTR")
    assert len(ptr) == len(HOSTS) and set(ptr.values()) == {1}, ptr

    # the work was shared: more than one worker sent messages, and every worker reports every
    # finding as sent (by itself) or already sent (by another), never in doubt
    sent_by: list[int] = []
    for _, out in runs:
        statuses = Counter(
            json.loads(line)["status"] for line in out.splitlines() if line.startswith("{")
        )
        assert set(statuses) <= {"sent", "already-sent"}, statuses
        assert sum(statuses.values()) == len(HOSTS) * len(PORTS)
        sent_by.append(statuses["sent"])
    assert sum(1 for n in sent_by if n) >= 2, sent_by

    settings = Settings.from_mapping({"state": {"dir": str(tmp_path / "x"), "url": pg_url}})
    ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
    try:
        assert ledger.verify().ok
        intents = [r for r in ledger.records() if r["event"] == "intent"]
        assert len(intents) == len(messages)
    finally:
        ledger.close()  # type: ignore[attr-defined]


async def test_a_killed_workers_units_are_taken_over(
    sandbox: Sandbox, pg_url: str, tmp_path: Path
) -> None:
    setup(pg_url, initial=True)
    _slow_smtp(sandbox, 0.3)
    data = tmp_path / "findings.csv"
    data.write_text("ip,port,finding\n" + "".join(f"{h.ip},9200,open service\n" for h in HOSTS))
    config = sandbox.write_config(state={"dir": str(tmp_path / "state"), "url": pg_url})
    argv = [sys.executable, "-m", "notifier", "batch", str(data), "--json"]
    argv += ["--config", str(config)]
    victim = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    for _ in range(400):  # until it is sending
        if sandbox.smtp.messages:
            break
        await asyncio.sleep(0.025)
    victim.kill()  # SIGKILL, holding units: the database drops its session and its marks
    await victim.wait()
    code, out = await _run(argv[3:], tmp_path / "after.jsonl")
    assert code == 0, out[-2000:]
    statuses = Counter(
        json.loads(line)["status"] for line in out.splitlines() if line.startswith("{")
    )
    # what the killed worker may have sent is in doubt; the rest was sent, once
    assert set(statuses) <= {"sent", "already-sent", "in-doubt"}, statuses
    assert statuses["sent"] > 0
    per_recipient = Counter(r for m in sandbox.smtp.messages for r in m.rcpt_tos)
    assert set(per_recipient.values()) == {1}, per_recipient
    assert set(per_recipient) | {
        json.loads(line)["recipients"][0]
        for line in out.splitlines()
        if line.startswith("{") and json.loads(line)["status"] == "in-doubt"
    } == {n.abuse for n in NETWORKS}
