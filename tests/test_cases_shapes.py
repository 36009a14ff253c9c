"""Follow-ups and bounce fallbacks over the two record shapes a case's read model must rebuild:
a batch's shared resolution record (one record, many addresses in ``ips``) and an older intent
that carries its findings only as ``finding_texts`` lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from test_bounces import headers_of, postfix_dsn, write_maildir
from typer.testing import CliRunner

from notifier.batch import Batch
from notifier.cases.bounces import BounceOutcome, process_bounces
from notifier.cases.followup import FollowupStatus, followup
from notifier.cli import app
from notifier.ledger import AuditLog, ReadModel, verify
from notifier.models import Finding
from notifier.pipeline import Notifier
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.testing import Sandbox

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TEXT = "Elasticsearch on 9200 without authentication"
DESK = "abuse@multi.test"
CERT = "cert@ncsc.nl"
HOSTS = ("127.10.0.1", "127.10.0.2", "127.10.0.3")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def records(box: Sandbox) -> list[dict[str, Any]]:
    path = box.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def finding(ip: str) -> Finding:
    return Finding(ip_address(ip), TEXT, port=9200, observed_at=T0 - timedelta(days=1))


# --------------------------------------------------------------------------- shared resolutions


@pytest.fixture
async def batched(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, Clock]]:
    """Three hosts of one Dutch network sent by batch: one message to its desk."""
    world = World(
        networks=(WorldNetwork("127.10.0.0/16", "ripe", "NET-NL", "NL-NET", "NL", "Multi", DESK),),
        hosts=tuple(WorldHost(ip) for ip in HOSTS),
    )
    clock = Clock()
    async with Sandbox(world, directory=tmp_path, clock=clock) as box:
        async with Notifier(box.settings(), clock=clock) as notifier:
            batch = Batch(notifier)
            for ip in HOSTS:
                await batch.submit(finding(ip))
            await batch.flush()
        yield box, clock


def _shared(box: Sandbox) -> dict[str, Any]:
    [resolution] = [r for r in records(box) if r["event"] == "resolution"]
    assert resolution["ip"] == HOSTS[0] and resolution["ips"] == list(HOSTS[1:])
    return resolution


async def test_a_shared_resolution_answers_for_every_address_it_names(
    batched: tuple[Sandbox, Clock],
) -> None:
    box, clock = batched
    _shared(box)
    model = ReadModel.of(records(box))
    [case] = model.cases.values()
    assert case.ips == list(HOSTS)
    assert [c.address for c in model.contacts_at(case, "network")] == [DESK]
    [cert] = model.contacts_at(case, "cert")
    assert cert.address == CERT
    assert sorted(str(f.ip) for f in model.findings_for(case, cert)) == list(HOSTS)
    # the follow-up two weeks on tells the CERT about all three, from the one record
    clock.now = T0 + timedelta(days=14)
    async with Notifier(box.settings(), clock=clock) as notifier:
        [action] = await followup(notifier, now=clock.now)
    assert (action.status, action.level, action.recipients) == (
        FollowupStatus.SENT,
        "cert",
        (CERT,),
    )
    sent = box.smtp.messages[-1]
    assert sent.rcpt_tos == (CERT,)
    assert all(ip.encode() in sent.raw for ip in HOSTS)


async def test_a_bounce_falls_back_through_a_shared_resolution(
    batched: tuple[Sandbox, Clock], tmp_path: Path
) -> None:
    box, clock = batched
    _shared(box)
    [first] = box.smtp.messages
    report = postfix_dsn(DESK, returned=headers_of(first))
    async with Notifier(box.settings(), clock=clock) as notifier:
        [action] = await process_bounces(notifier, write_maildir(tmp_path / "Maildir", report))
    assert (action.outcome, action.recipient) == (BounceOutcome.FALLBACK, DESK)
    assert [(d.recipient, d.status) for d in action.deliveries] == [(CERT, "delivered")]
    assert all(ip.encode() in box.smtp.messages[-1].raw for ip in HOSTS)


# --------------------------------------------------------------------------- older intents

OWNER = "security@old-owner.test"
NETWORK = "abuse@old-net.test"
OLD_CERT = "cert@old-cert.test"
OLD_IPS = ("127.1.0.10", "::1")
TEXTS = [f"127.1.0.10:9200 {TEXT}", "::1: Open FTP without a password"]


def _old_log(box: Sandbox) -> Path:
    """A case as an earlier version wrote it: the intent holds only ``finding_texts``."""
    path = box.settings().state_dir / "audit.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    log = AuditLog(path, clock=Clock())
    log.append(
        "resolution",
        ip=OLD_IPS[0],
        ips=[OLD_IPS[1]],
        hostnames=[],
        network={"registry": "ripe", "handle": "OLD-NET", "country": "NL"},
        recipients=[
            {"address": OWNER, "role": "owner"},
            {"address": NETWORK, "role": "network"},
        ],
        fallbacks=[{"address": OLD_CERT, "role": "national-cert"}],
        errors=[],
        evidence=[],
    )
    log.append(
        "intent",
        attempt_id="old-1",
        ip=OLD_IPS[0],
        recipient=OWNER,
        role="owner",
        message_id="<ntf-old.1@research.test>",
        digest="0" * 64,
        case="NTF-OLDCASE",
        finding_keys=["k-es", "k-ftp"],
        finding_texts=TEXTS,
    )
    log.append(
        "outcome",
        attempt_id="old-1",
        ip=OLD_IPS[0],
        recipient=OWNER,
        message_id="<ntf-old.1@research.test>",
        status="delivered",
        smtp_code=250,
        smtp_reply="250 ok",
        attempts=1,
        finding_keys=["k-es", "k-ftp"],
    )
    return path


@pytest.fixture
async def old(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, Clock]]:
    clock = Clock()
    async with Sandbox(directory=tmp_path, clock=clock) as box:
        _old_log(box)
        yield box, clock


async def test_an_older_intent_loads_verifies_and_is_reviewed(
    old: tuple[Sandbox, Clock], tmp_path: Path
) -> None:
    box, _ = old
    path = box.settings().state_dir / "audit.jsonl"
    assert verify(path).ok
    model = ReadModel.of(records(box))
    case = model.case("ntf-oldcase")
    assert case is not None and case.state == "delivered"
    assert case.ips == list(OLD_IPS)
    assert [(str(f.ip), f.port, f.text) for f in case.rebuilt.values()] == [
        ("127.1.0.10", 9200, TEXT),
        ("::1", None, "Open FTP without a password"),
    ]
    assert list(case.findings) == ["k-es", "k-ftp"]
    config = str(box.write_config())
    shown = CliRunner().invoke(app, ["case", "NTF-OLDCASE", "--json", "--config", config])
    assert shown.exit_code == 0, shown.output
    told = json.loads(shown.output)
    assert (told["state"], told["ips"]) == ("delivered", list(OLD_IPS))
    assert [r["address"] for r in told["recipients"]] == [OWNER]
    page = tmp_path / "case.html"
    written = CliRunner().invoke(
        app, ["case", "NTF-OLDCASE", "--html", str(page), "--config", config]
    )
    assert written.exit_code == 0, written.output
    assert "Open FTP without a password" in page.read_text()


async def test_an_older_intent_is_followed_up_with_its_findings(
    old: tuple[Sandbox, Clock],
) -> None:
    box, clock = old
    clock.now = T0 + timedelta(days=30)
    async with Notifier(box.settings(), clock=clock) as notifier:
        [action] = await followup(notifier, now=clock.now)
    assert (action.status, action.level, action.ips) == (FollowupStatus.SENT, "network", OLD_IPS)
    sent = box.smtp.messages[-1]
    assert sent.rcpt_tos == (NETWORK,)
    assert b"127.1.0.10" in sent.raw and b"Open FTP without a password" in sent.raw
    assert b"<ntf-old.1@research.test>" in sent.raw  # threaded to the old message


async def test_an_older_intent_falls_back_when_its_contact_bounces(
    old: tuple[Sandbox, Clock], tmp_path: Path
) -> None:
    box, clock = old
    returned = (
        f"From: disclosure@research.test\nTo: {OWNER}\nSubject: [NTF-OLDCASE] notice\n"
        "Message-ID: <ntf-old.1@research.test>\n"
    )
    report = postfix_dsn(OWNER, returned=returned)
    async with Notifier(box.settings(), clock=clock) as notifier:
        [action] = await process_bounces(notifier, write_maildir(tmp_path / "Maildir", report))
    # the owner was the only one told: the ladder's fallback gets the old findings
    assert (action.outcome, action.case) == (BounceOutcome.FALLBACK, "NTF-OLDCASE")
    assert [d.recipient for d in action.deliveries] == [OLD_CERT]
    assert b"Open FTP without a password" in box.smtp.messages[-1].raw
