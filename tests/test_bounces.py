"""Bounces: RFC 3464 reports parsed, read from Maildir and mbox, matched, recorded, fallen back."""

from __future__ import annotations

import email
import json
import mailbox
from datetime import UTC, datetime
from email import policy
from email.message import Message
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.cases.bounces import BounceOutcome, process_bounces
from notifier.cases.dsn import BounceKind, parse_dsn, read_mailbox
from notifier.errors import ConfigError
from notifier.models import Finding
from notifier.pipeline import Notifier
from notifier.sandbox.smtp import ReceivedMessage
from notifier.testing import Sandbox

VERP = "bounce+{id}@research.test"
SILENT = "abuse@silent-isp.test"
CISA = "report@cisa.gov"
OWNER = "security@health-dept.test"
NETWORK = "abuse@telecom-in.test"
RETURNED = (
    "From: Security Research <disclosure@research.test>\n"
    "To: abuse@silent-isp.test\n"
    "Subject: [NTF-TEST] Exposed service on 127.4.0.40\n"
    "Message-ID: <ntf-test.0123456789abcdef@research.test>\n"
    "Date: Mon, 02 Nov 2026 09:00:00 +0000\n"
)


# --------------------------------------------------------------------------- realistic reports


def postfix_dsn(
    rcpt: str,
    *,
    to: str = "disclosure@research.test",
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str | None = None,
    returned: str | None = RETURNED,
    headers_only: bool = False,
    dsn_id: str = "20261102101503.4N1xYz2Q5Kz9rxM@mx.research.test",
) -> bytes:
    """A Postfix bounce (or delay notice): text, delivery-status, the returned message."""
    domain = rcpt.rpartition("@")[2]
    if diagnostic is None:
        diagnostic = (
            f"smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User\n"
            "    unknown in virtual mailbox table"
        )
    delayed = action == "delayed"
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    retry = "Will-Retry-Until: Fri,  6 Nov 2026 10:15:02 +0000 (UTC)\n" if delayed else ""
    boundary = "4N1xYz2Q5Kz9rxM.1793614503/mx.research.test"
    returned_part = ""
    if returned is not None:
        kind = "text/rfc822-headers" if headers_only else "message/rfc822"
        label = "Undelivered Message Headers" if headers_only else "Undelivered Message"
        body = "" if headers_only else "\nHello,\n\nthe notice body.\n"
        returned_part = (
            f"--{boundary}\n"
            f"Content-Description: {label}\n"
            f"Content-Type: {kind}\n"
            "\n"
            f"{returned}{body}\n"
        )
    text = f"""\
Return-Path: <>
Delivered-To: {to}
X-Original-To: {to}
Received: by mx.research.test (Postfix)
	id 4N1xYz2Q5Kz9rxM; Mon,  2 Nov 2026 10:15:03 +0000 (UTC)
Date: Mon,  2 Nov 2026 10:15:03 +0000 (UTC)
From: MAILER-DAEMON@mx.research.test (Mail Delivery System)
Subject: {subject}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <{dsn_id}>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.research.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{rcpt}>: host mx.{domain}[127.0.0.25] said: {diagnostic.partition("; ")[2]}

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.research.test
X-Postfix-Queue-ID: 4N1xYz2Q5Kz9rxM
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Mon,  2 Nov 2026 10:15:02 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.{domain}
Diagnostic-Code: {diagnostic}
{retry}
{returned_part}--{boundary}--
"""
    return text.encode()


def exchange_ndr(
    rcpt: str,
    *,
    returned_headers: str = RETURNED,
    to: str = "disclosure@research.test",
    dsn_id: str = "6c7e1f20-4a8b-4c1d-9f3e-2b5d8a7c9e10@AM0PR01MB1234.eurprd01.prod.outlook.com",
) -> bytes:
    """An Exchange non-delivery report: alternative text/HTML, delivery-status, the headers."""
    local, _, domain = rcpt.partition("@")
    outer = "d4d5b2c4-2f6c-4b0e-9a34-5b8a4c3f1e20"
    inner = "a1b2c3d4-0000-4b0e-9a34-5b8a4c3f1e20"
    text = f"""\
Received: from AM0PR01MB1234.eurprd01.prod.outlook.com (2603:10a6:208:1::1)
 by AM0PR01MB1234.eurprd01.prod.outlook.com with Microsoft SMTP Server id
 15.20.7000.0; Mon, 2 Nov 2026 10:20:11 +0000
MIME-Version: 1.0
From: Microsoft Outlook
	<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@{domain}>
To: <{to}>
Date: Mon, 2 Nov 2026 10:20:11 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{outer}"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <{dsn_id}>
Subject: Undeliverable: [NTF-TEST] Exposed service
Auto-Submitted: auto-replied

--{outer}
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="{inner}"

--{inner}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {rcpt} couldn't be delivered.
{local} wasn't found at {domain}.

--{inner}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Your message to {rcpt} couldn't be delivered.</p></body></html>

--{inner}--

--{outer}
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com
Received-From-MTA: dns;mx.research.test
Arrival-Date: Mon, 2 Nov 2026 10:20:10 +0000

Original-Recipient: rfc822;{rcpt}
Final-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {rcpt}
 not found by SMTP address lookup
X-Display-Name: Abuse Desk

--{outer}
Content-Type: text/rfc822-headers

{returned_headers}
--{outer}--
"""
    return text.encode()


def headers_of(received: ReceivedMessage) -> str:
    """The header block of a message the sandbox received, as a report quotes it back."""
    head = received.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    return head.decode("ascii") + "\n"


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=policy.compat32)


def write_maildir(folder: Path, *messages: bytes) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return folder


def write_mbox(path: Path, *messages: bytes) -> Path:
    box = mailbox.mbox(path, create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return path


def write_box(kind: str, where: Path, *messages: bytes) -> Path:
    if kind == "maildir":
        return write_maildir(where / "Maildir", *messages)
    return write_mbox(where / "bounces.mbox", *messages)


# --------------------------------------------------------------------------- parsing


class TestParseDsn:
    def test_postfix_bounce(self) -> None:
        """A Postfix 5.1.1: recipient, action, status, diagnostic and the returned Message-ID."""
        raw = postfix_dsn(SILENT, to="bounce+0123456789ab@research.test")
        [bounce] = parse_dsn(parse(raw))
        assert bounce.recipient == SILENT and bounce.original_recipient == SILENT
        assert (bounce.action, bounce.status, bounce.kind) == ("failed", "5.1.1", "permanent")
        assert bounce.diagnostic.startswith("smtp; 550 5.1.1 <abuse@silent-isp.test>")
        assert "\n" not in bounce.diagnostic
        assert bounce.reporting_mta == "mx.research.test"
        assert bounce.remote_mta == "mx.silent-isp.test"
        assert bounce.message_id == "<ntf-test.0123456789abcdef@research.test>"
        assert bounce.dsn_id == "<20261102101503.4N1xYz2Q5Kz9rxM@mx.research.test>"
        assert (bounce.verp_address, bounce.verp_id) == (
            "bounce+0123456789ab@research.test",
            "0123456789ab",
        )

    def test_exchange_ndr(self) -> None:
        """An Exchange NDR (report after a multipart/alternative, headers-only return)."""
        [bounce] = parse_dsn(parse(exchange_ndr(NETWORK)))
        assert (bounce.recipient, bounce.status, bounce.kind) == (
            NETWORK,
            "5.1.10",
            BounceKind.PERMANENT,
        )
        assert "RESOLVER.ADR.RecipientNotFound" in bounce.diagnostic
        assert bounce.message_id == "<ntf-test.0123456789abcdef@research.test>"
        assert bounce.reporting_mta == "AM0PR01MB1234.eurprd01.prod.outlook.com"
        assert bounce.verp_id == ""

    def test_delayed_is_not_a_failure(self) -> None:
        """Action: delayed with 4.4.1 is a delay, whatever follows."""
        raw = postfix_dsn(
            SILENT,
            action="delayed",
            status="4.4.1",
            diagnostic="X-Postfix; connect to mx.silent-isp.test[127.0.0.25]:25: timed out",
            headers_only=True,
        )
        [bounce] = parse_dsn(parse(raw))
        assert (bounce.kind, bounce.status) == (BounceKind.DELAYED, "4.4.1")
        assert bounce.message_id == "<ntf-test.0123456789abcdef@research.test>"

    def test_mailbox_full_is_transient(self) -> None:
        """5.2.2 (over quota) is temporary even though the server used a 5xx."""
        raw = postfix_dsn(
            SILENT,
            status="5.2.2",
            diagnostic="smtp; 552-5.2.2 The email account that you tried to reach is over quota",
        )
        [bounce] = parse_dsn(parse(raw))
        assert (bounce.kind, bounce.status) == (BounceKind.TRANSIENT, "5.2.2")

    def test_status_comes_from_the_diagnostic_when_missing(self) -> None:
        """A report without Status: the enhanced code in Diagnostic-Code is used."""
        raw = postfix_dsn(SILENT).replace(b"Status: 5.1.1\n", b"")
        [bounce] = parse_dsn(parse(raw))
        assert bounce.status == "5.1.1"

    def test_not_a_report_gives_nothing(self) -> None:
        """An auto-reply or a plain message is not a DSN."""
        reply = b"From: a@b.test\nSubject: Out of office\nAuto-Submitted: auto-replied\n\nAway.\n"
        other = (
            b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n"
            b"\n--x\nContent-Type: text/plain\n\nread\n--x--\n"
        )
        assert parse_dsn(parse(reply)) == []
        assert parse_dsn(parse(other)) == []

    def test_hostile_report_is_bounded(self) -> None:
        """Thousands of recipient blocks and control characters: capped and cleaned, no crash."""
        blocks = "".join(
            f"Final-Recipient: rfc822; u{i}@x.test\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 \x00\x1b[31mred\n\n"
            for i in range(1000)
        )
        raw = (
            "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
            "--b\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; mx.x.test\n\n{blocks}--b--\n"
        ).encode()
        bounces = parse_dsn(parse(raw))
        assert len(bounces) == 100
        assert all("\x00" not in b.diagnostic and "\x1b" not in b.diagnostic for b in bounces)
        assert bounces[0].dsn_id.startswith("sha256:")

    @settings(max_examples=150, deadline=None)
    @given(
        st.sampled_from([b"", b"Message-ID: <x@y>\n", b"To: bounce+1@r.test\n"]),
        st.binary(max_size=1500),
        st.sampled_from(
            [b"message/delivery-status", b"message/global-delivery-status", b"text/rfc822-headers"]
        ),
    )
    def test_arbitrary_report_bytes_never_crash(
        self, head: bytes, noise: bytes, kind: bytes
    ) -> None:
        """Whatever bytes a report carries, parsing returns bounces or nothing and never raises."""
        raw = (
            head
            + b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n"
            + b"Content-Type: "
            + kind
            + b"\n\n"
            + noise
            + b"\n--b\nContent-Type: message/delivery-status\n\n"
            + noise
            + b"\n--b--\n"
        )
        bounces = parse_dsn(parse(raw))
        assert all(len(b.diagnostic) <= 500 and "\n" not in b.recipient for b in bounces)

    def test_global_delivery_status_is_read_from_its_text(self) -> None:
        """RFC 6533 message/global-delivery-status (not split by the parser) is parsed too."""
        raw = (
            b"Content-Type: multipart/report; report-type=global-delivery-status; boundary=b\n\n"
            b"--b\nContent-Type: message/global-delivery-status\n\n"
            b"Reporting-MTA: dns; mx.x.test\n\n"
            b"Final-Recipient: utf-8; abuse@x.test\nAction: failed\nStatus: 5.1.2\n\n"
            b"--b--\n"
        )
        [bounce] = parse_dsn(parse(raw))
        assert (bounce.recipient, bounce.status, bounce.kind) == (
            "abuse@x.test",
            "5.1.2",
            BounceKind.PERMANENT,
        )


# --------------------------------------------------------------------------- mailboxes


class TestReadMailbox:
    @pytest.mark.parametrize("kind", ["maildir", "mbox"])
    def test_reads_every_message(self, tmp_path: Path, kind: str) -> None:
        """Both mailbox formats give back every message, unchanged on disk."""
        path = write_box(kind, tmp_path, postfix_dsn(SILENT), exchange_ndr(NETWORK))
        before = sorted(p.name for p in path.rglob("*")) if kind == "maildir" else None
        subjects = sorted(str(m["Subject"]) for m in read_mailbox(path))
        assert subjects == [
            "Undeliverable: [NTF-TEST] Exposed service",
            "Undelivered Mail Returned to Sender",
        ]
        if before is not None:
            assert sorted(p.name for p in path.rglob("*")) == before

    @pytest.mark.parametrize("kind", ["maildir", "mbox"])
    def test_oversized_messages_are_skipped(self, tmp_path: Path, kind: str) -> None:
        """A message over the size cap is reported to on_skip and not parsed."""
        huge = postfix_dsn(SILENT) + b"x" * 5000 + b"\n"
        path = write_box(kind, tmp_path, huge, exchange_ndr(NETWORK))
        skipped: list[tuple[str, str]] = []
        got = list(read_mailbox(path, max_bytes=4000, on_skip=lambda k, r: skipped.append((k, r))))
        assert [str(m["Subject"]) for m in got] == ["Undeliverable: [NTF-TEST] Exposed service"]
        assert len(skipped) == 1 and "larger than 4000 bytes" in skipped[0][1]

    def test_an_empty_mbox_is_empty(self, tmp_path: Path) -> None:
        """A fresh, empty mbox file has no messages (not an error)."""
        path = tmp_path / "empty.mbox"
        path.write_bytes(b"")
        assert list(read_mailbox(path)) == []

    @pytest.mark.parametrize(
        ("name", "match"),
        [
            ("notes.txt", "not an mbox file"),
            ("folder", "not a Maildir"),
            ("missing", "no such mailbox"),
        ],
    )
    def test_not_a_mailbox_is_a_config_error(self, tmp_path: Path, name: str, match: str) -> None:
        """A text file, a plain folder or a missing path fails at once with one line."""
        (tmp_path / "notes.txt").write_text("hello\n")
        (tmp_path / "folder").mkdir()
        with pytest.raises(ConfigError, match=match) as info:
            read_mailbox(tmp_path / name)
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- processing


def settings_for(box: Sandbox) -> Any:
    return box.settings(smtp={"envelope_from": VERP}, limits={"per_domain_per_minute": 60_000})


def records(box: Sandbox) -> list[dict[str, Any]]:
    path = box.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def finding(ip: str) -> Finding:
    return Finding(
        ip_address(ip),
        "Elasticsearch on 9200 without authentication",
        port=9200,
        observed_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


async def send(box: Sandbox, ip: str) -> dict[str, ReceivedMessage]:
    """Send a finding; return what the SMTP server received, by recipient."""
    async with Notifier(settings_for(box)) as notifier:
        await notifier.send([finding(ip)])
    return {m.rcpt_tos[0]: m for m in box.smtp.messages}


@pytest.fixture
async def reachable(sandbox: Sandbox) -> dict[str, ReceivedMessage]:
    """127.4.0.40, whose only contact (the network's abuse desk) accepts the notice."""
    sandbox.smtp.script.pop(SILENT, None)
    return await send(sandbox, "127.4.0.40")


async def process(box: Sandbox, path: Path, **options: Any) -> list[Any]:
    async with Notifier(settings_for(box)) as notifier:
        return await process_bounces(notifier, path, **options)


class TestFallback:
    @pytest.mark.parametrize("kind", ["maildir", "mbox"])
    async def test_every_contact_bounced_falls_back_to_the_national_cert(
        self, sandbox: Sandbox, reachable: dict[str, ReceivedMessage], tmp_path: Path, kind: str
    ) -> None:
        """The only contact bounces (Exchange 5.1.10): the case goes to the country's CERT."""
        sent = reachable[SILENT]
        path = write_box(kind, tmp_path, exchange_ndr(SILENT, returned_headers=headers_of(sent)))
        [action] = await process(sandbox, path)
        assert (action.outcome, action.matched_by, action.recipient) == (
            BounceOutcome.FALLBACK,
            "message-id",
            SILENT,
        )
        assert [(d.recipient, d.status) for d in action.deliveries] == [(CISA, "delivered")]
        assert sandbox.smtp.messages[-1].rcpt_tos == (CISA,)
        log = records(sandbox)
        bounce = next(r for r in log if r["event"] == "bounce")
        assert bounce["message_id"] == sent.message_id
        assert (bounce["status"], bounce["kind"], bounce["contact_gone"]) == (
            "5.1.10",
            "permanent",
            True,
        )
        fallback = next(r for r in log if r["event"] == "fallback" and r.get("dsn_id"))
        assert (fallback["to"], fallback["reason"]) == (CISA, "every contact bounced")
        intent = next(r for r in log if r["event"] == "intent" and r["recipient"] == CISA)
        assert intent["case"] == action.case

    async def test_matched_by_verp_alone(
        self, sandbox: Sandbox, reachable: dict[str, ReceivedMessage], tmp_path: Path
    ) -> None:
        """A report without the returned message is matched by the VERP return path."""
        verp = reachable[SILENT].mail_from
        assert verp.startswith("bounce+") and verp.endswith("@research.test")
        path = write_maildir(tmp_path / "Maildir", postfix_dsn(SILENT, to=verp, returned=None))
        [action] = await process(sandbox, path)
        assert (action.outcome, action.matched_by) == (BounceOutcome.FALLBACK, "verp")
        assert action.message_id == reachable[SILENT].message_id

    async def test_one_contact_bouncing_while_another_stands(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """The owner's 5.1.1 is recorded; the abuse desk still has the case: no fallback."""
        got = await send(sandbox, "127.1.0.10")
        count = len(sandbox.smtp.messages)
        owner = postfix_dsn(OWNER, returned=headers_of(got[OWNER]))
        path = write_mbox(tmp_path / "bounces.mbox", owner)
        [action] = await process(sandbox, path)
        assert action.outcome == BounceOutcome.RECORDED
        assert NETWORK in action.reason
        assert len(sandbox.smtp.messages) == count
        # then the abuse desk bounces too (another report): now the ladder is climbed
        network = exchange_ndr(NETWORK, returned_headers=headers_of(got[NETWORK]))
        write_mbox(tmp_path / "bounces.mbox", network)
        actions = await process(sandbox, path)
        assert [a.outcome for a in actions] == [BounceOutcome.DUPLICATE, BounceOutcome.FALLBACK]
        # the registrar comes before the national CERT on the ladder, as at send time
        assert sandbox.smtp.messages[-1].rcpt_tos == ("abuse@registrar.test",)

    async def test_a_bounced_fallback_exhausts_the_ladder(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """The abuse desk refused at send time and the CERT's copy bounces: nobody is left."""
        got = await send(sandbox, "127.4.0.40")  # 550 at send time: the CERT got it then
        path = write_maildir(
            tmp_path / "Maildir", postfix_dsn(CISA, returned=headers_of(got[CISA]))
        )
        count = len(sandbox.smtp.messages)
        [action] = await process(sandbox, path)
        assert action.outcome == BounceOutcome.EXHAUSTED and action.failed
        assert len(sandbox.smtp.messages) == count


class TestRecordedOnly:
    @pytest.mark.parametrize(
        ("status", "action", "kind"),
        [("4.4.1", "delayed", "delayed"), ("5.2.2", "failed", "transient")],
    )
    async def test_temporary_reports_are_recorded_without_fallback(
        self,
        sandbox: Sandbox,
        reachable: dict[str, ReceivedMessage],
        tmp_path: Path,
        status: str,
        action: str,
        kind: str,
    ) -> None:
        """A delay or a full mailbox is evidence, not a dead contact."""
        sent = reachable[SILENT]
        raw = postfix_dsn(
            SILENT,
            status=status,
            action=action,
            diagnostic=f"smtp; 452 {status} try later",
            returned=headers_of(sent),
            headers_only=True,
        )
        count = len(sandbox.smtp.messages)
        [done] = await process(sandbox, write_mbox(tmp_path / "b.mbox", raw))
        assert (done.outcome, done.kind) == (BounceOutcome.RECORDED, kind)
        bounce = next(r for r in records(sandbox) if r["event"] == "bounce")
        assert (bounce["status"], bounce["kind"], bounce["contact_gone"]) == (status, kind, False)
        assert len(sandbox.smtp.messages) == count

    async def test_a_forward_behind_the_contact_failing_keeps_the_contact(
        self, sandbox: Sandbox, reachable: dict[str, ReceivedMessage], tmp_path: Path
    ) -> None:
        """A 5.1.1 for another address (the desk forwards to a dead mailbox) is only recorded."""
        raw = postfix_dsn("old-admin@silent-isp.test", returned=headers_of(reachable[SILENT]))
        [done] = await process(sandbox, write_mbox(tmp_path / "b.mbox", raw))
        assert done.outcome == BounceOutcome.RECORDED
        assert "old-admin@silent-isp.test" in done.reason
        assert not [r for r in records(sandbox) if r["event"] == "fallback"]


class TestOnce:
    async def test_the_same_report_is_not_processed_twice(
        self, sandbox: Sandbox, reachable: dict[str, ReceivedMessage], tmp_path: Path
    ) -> None:
        """A second run over the same mailbox (and a copy in the same run) changes nothing."""
        raw = exchange_ndr(SILENT, returned_headers=headers_of(reachable[SILENT]))
        path = write_maildir(tmp_path / "Maildir", raw, raw)
        first = await process(sandbox, path)
        second = await process(sandbox, path)
        assert [a.outcome for a in first] == [BounceOutcome.FALLBACK, BounceOutcome.DUPLICATE]
        assert [a.outcome for a in second] == [BounceOutcome.DUPLICATE] * 2
        assert len([r for r in records(sandbox) if r["event"] == "bounce"]) == 1
        assert [m.rcpt_tos for m in sandbox.smtp.messages].count((CISA,)) == 1

    async def test_unmatched_reports_are_not_recorded(
        self, sandbox: Sandbox, reachable: dict[str, ReceivedMessage], tmp_path: Path
    ) -> None:
        """A report about a message we never sent (backscatter) is reported only."""
        path = write_mbox(tmp_path / "b.mbox", postfix_dsn("someone@else.test"))
        before = len(records(sandbox))
        [done] = await process(sandbox, path)
        assert done.outcome == BounceOutcome.UNMATCHED
        assert len(records(sandbox)) == before

    async def test_dry_run_records_and_sends_nothing(
        self, sandbox: Sandbox, reachable: dict[str, ReceivedMessage], tmp_path: Path
    ) -> None:
        """--dry-run says what would happen and leaves log and mail server alone."""
        raw = exchange_ndr(SILENT, returned_headers=headers_of(reachable[SILENT]))
        path = write_maildir(tmp_path / "Maildir", raw)
        before = (len(records(sandbox)), len(sandbox.smtp.messages))
        [done] = await process(sandbox, path, dry_run=True)
        assert done.outcome == BounceOutcome.FALLBACK
        assert [d.status for d in done.deliveries] == ["dry-run"]
        assert (len(records(sandbox)), len(sandbox.smtp.messages)) == before
        [real] = await process(sandbox, path)
        assert real.outcome == BounceOutcome.FALLBACK
