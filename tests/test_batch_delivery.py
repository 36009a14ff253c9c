"""A batch's delivery gets ready while its lookups run: compose workers started and the
recipients' OpenPGP keys looked up as soon as enough recipients are known."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from desks import desk_hosts, desk_networks
from pgp_helpers import OWNER, Keys, make_keys, stop_agent

from notifier import Finding, Notifier
from notifier.batch import Batch, BatchCounts
from notifier.compose.pool import IN_PROCESS_FIRST
from notifier.sandbox.keys import publish_wkd
from notifier.sandbox.world import World, WorldNetwork
from notifier.testing import Sandbox

NETWORKS = IN_PROCESS_FIRST + 2  # one recipient each: enough to start the workers
WORLD = World(
    networks=desk_networks(40, NETWORKS, OWNER),
    hosts=desk_hosts(40, NETWORKS),
    mail_domains=("health-dept.test",),
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    made = make_keys(tmp_path_factory.mktemp("pgp"), refused=False)
    yield made
    stop_agent(made.home)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(WORLD, directory=tmp_path) as box:
        yield box


async def test_workers_and_keys_are_under_way_before_the_first_message(
    sandbox: Sandbox, keys: Keys
) -> None:
    publish_wkd(sandbox.web, OWNER, keys.owner)
    started: list[bool] = []  # whether the workers were starting at the first message
    looked_up: set[str] = set()  # whose keys were being looked up by then
    async with Notifier(sandbox.settings()) as notifier:

        def on_progress(counts: BatchCounts) -> None:
            if counts.queued and not started:  # the lookups are done: the first message
                started.append(notifier._composer._starter is not None)
                assert notifier._guard is not None
                looked_up.update(notifier._guard._lookups)

        batch = Batch(notifier, on_progress=on_progress)
        for n in range(NETWORKS):
            await batch.submit(Finding(ip_address(f"127.40.{n}.1"), "Redis open", port=6379))
        await batch.flush()
        assert notifier._composer.composed == NETWORKS
    assert started == [True]
    # every recipient's lookup started while the addresses were being resolved
    assert looked_up == {OWNER} | {f"abuse@org{n}.test" for n in range(1, NETWORKS)}
    assert sorted(m.rcpt_tos for m in sandbox.smtp.messages) == sorted(
        (address,) for address in looked_up
    )
    log = sandbox.settings().state_dir / "audit.jsonl"
    intents = [json.loads(x) for x in log.read_text().splitlines() if '"intent"' in x]
    protection = next(r["protection"] for r in intents if r["recipient"] == OWNER)
    assert protection["encrypted_to"] == keys.owner_fpr


async def test_a_rehearsal_looks_up_no_recipients_keys_ahead(sandbox: Sandbox) -> None:
    async with Notifier(sandbox.settings()) as notifier:
        batch = Batch(notifier, test_recipient="me@research.test")
        for n in range(3):
            await batch.submit(Finding(ip_address(f"127.40.{n}.1"), "Redis open", port=6379))
        await batch.flush()
        assert notifier._guard is not None
        # only the tester's key: the messages went to the tester, encrypted to them if at all
        assert set(notifier._guard._lookups) == {"me@research.test"}
    assert {m.rcpt_tos for m in sandbox.smtp.messages} == {("me@research.test",)}


async def test_many_networks_with_one_desk_start_no_workers(tmp_path: Path) -> None:
    """52 networks, one abuse desk for all: one message, composed here, no process started."""
    one_desk = World(
        networks=tuple(
            WorldNetwork(n.cidr, n.registry, n.handle, n.name, n.country, n.org, "abuse@one.test")
            for n in WORLD.networks
        ),
        hosts=WORLD.hosts,
    )
    async with Sandbox(one_desk, directory=tmp_path) as box:
        async with Notifier(box.settings()) as notifier:
            batch = Batch(notifier)
            for n in range(NETWORKS):
                await batch.submit(Finding(ip_address(f"127.40.{n}.1"), "Redis open", port=6379))
            await batch.flush()
            assert notifier._composer._starter is None
            assert notifier._composer.in_process == 1
        assert [m.rcpt_tos for m in box.smtp.messages] == [("abuse@one.test",)]


@pytest.mark.parametrize("seed", range(4))
def test_outcomes_remembered_per_route_are_those_worked_out_per_row(seed: int) -> None:
    """``Reach`` remembers a route's answer only where every row alike went the same way: the
    outcomes it gives are those worked out afresh for each row, plans of several messages and
    findings an earlier run had dealt with included."""
    import random
    from array import array

    from notifier.batch.states import Plan, Reach, Route
    from notifier.models import Contact, Role

    rng = random.Random(seed)
    desks = [Contact(f"abuse@org{n}.test", Role.NETWORK, ("rdap",), 0.9) for n in range(40)]
    cert = Contact("cert@cert.test", Role.NATIONAL_CERT, ("contacts",), 0.5)
    # most desks one route's (a plan of a message or two), some shared by two routes
    routes = [
        Route((desks[n],) if rng.random() < 0.7 else (desks[n], desks[(n + 1) % 40]), (cert,), None)
        for n in range(40)
    ]
    row_route = [rng.randrange(len(routes)) for _ in range(120)]
    limit = 4
    first: dict[str, Plan] = {}
    for index, route_id in enumerate(row_route):
        for contact in routes[route_id].recipients:
            first.setdefault(contact.address, Plan(contact)).rows.append(index)
    for plan in first.values():
        plan.priors = bytearray(rng.random() < 0.05 for _ in plan.rows)
        plan.message_ids = [f"<{plan.contact.address}.{n}@x>" for n in range(len(plan.rows))]
    states = [rng.randrange(4) for _ in row_route]
    climbed = Plan(cert, rows=array("I", [i for i, s in enumerate(states) if s == 3]))
    climbed.priors = bytearray(len(climbed.rows))
    climbed.message_ids = ["<cert@x>"]
    rounds = [first, {cert.address: climbed}]
    remembered = Reach(rounds, limit)
    for index, route_id in enumerate(row_route):
        route, state = routes[route_id], states[index]
        fresh = Reach(rounds, limit)(index, route_id + 1, route, state)
        assert remembered(index, route_id + 1, route, state) == fresh
    assert remembered._known  # some were remembered


def test_a_findings_key_is_worked_out_once_and_left_out_of_its_identity() -> None:
    """``Finding.key`` is remembered on the finding (a batch asks it several times); the copy
    that crosses to another process, equality, hashing and ``replace`` all ignore it."""
    import copy
    import dataclasses
    import pickle

    finding = Finding(ip_address("127.44.0.1"), "Redis  open", port=6379)
    fresh = Finding(ip_address("127.44.0.1"), "Redis  open", port=6379)
    key = finding.key
    assert finding.key is key and finding == fresh and hash(finding) == hash(fresh)
    crossed = pickle.loads(pickle.dumps(finding))
    assert crossed == finding and crossed.key == key
    assert copy.copy(finding).key == key
    moved = dataclasses.replace(finding, port=6380)
    assert moved.key != key and moved.key == Finding(moved.ip, moved.text, port=6380).key
    assert "_key" not in repr(finding)
    from notifier.ledger.chain import normalise_fields

    assert "_key" not in normalise_fields({"finding": finding})["finding"]  # nor in a record
