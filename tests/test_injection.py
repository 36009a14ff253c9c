"""Hostile data in every source field cannot turn a disclosure into a weapon.

A registry, a WHOIS server, a web site, a PTR record, the operator's contacts.yaml and the
scanner's own output all feed text into the message. Each test serves hostile values through
the real loopback sandbox and reads the raw bytes the SMTP server received: no header, recipient
or MIME part appears that the data put there, template syntax in data is printed and never run,
and an address carrying control characters is never written to. The SSRF tests check that a
lookup is never made to connect to a non-public address.
"""

from __future__ import annotations

import asyncio
import csv
import email
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.utils import getaddresses
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import httpcore
import pytest
import yaml
from expected_headers import TOP_LEVEL_HEADERS
from rich.console import Console
from typer.testing import CliRunner

from notifier import net
from notifier.addresses import clean_address, header_text
from notifier.cli import app
from notifier.commands import resolve as resolve_command
from notifier.config import Settings, load_settings
from notifier.intake import read_findings
from notifier.models import Finding, IPAddress, Role
from notifier.pipeline import Notifier
from notifier.sandbox.dns import DNSServer
from notifier.sandbox.rdap import network_json
from notifier.sandbox.smtp import ReceivedMessage
from notifier.sandbox.web import Reply
from notifier.sandbox.whois import WhoisServer
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.sources import LookupContext, whois
from notifier.testing import Sandbox

runner = CliRunner()

VICTIM = "victim@x.test"
CLEAN_FINDING = "open Redis"
SENDER = "disclosure@research.test"

# what an attacker who controls one field would write into it
PAYLOADS = {
    "crlf-header": f"Evil\r\nBcc: {VICTIM}",
    "lf-header": f"Evil\nBcc: {VICTIM}",
    "cr-header": f"Evil\rBcc: {VICTIM}",
    "nul": f"Evil\x00Bcc: {VICTIM}",
    "controls": "Evil\x0b\x0c\x1b[2J\x7f\x85\x1c\x1d\x1e\u2028\u2029\u200e end",
    "smtp-smuggling": f"Evil\r\n\r\nbody\r\n.\r\nMAIL FROM:<{VICTIM}>\n.\nRCPT TO:<{VICTIM}>",
    # no control character at all: specials that turn a folded To header into a group
    "address-specials": f"Bcc: {VICTIM}, Cc: {VICTIM}; To: {VICTIM} <{VICTIM}> (padding the "
    "name out so that the header must be folded over several lines)",
    "mime-boundary": "Evil\r\n--===============0000000000000000000==\r\nContent-Type: "
    "text/html\r\n\r\n<b>injected</b>\r\n--===============0000000000000000000==--",
    "encoded-word": "=?utf-8?q?Evil=0D=0ABcc=3A_victim=40x=2Etest?=",
    "jinja-expression": "{{ 7*191 }}",
    "jinja-statement": "{% for i in range(3) %}LOOP{% endfor %}",
    "jinja-escape": "{{ cycler.__init__.__globals__.os.popen('id').read() }}{# hidden #}{% raw %}",
}

# e-mail values with a control character somewhere: never a recipient, never "repaired"
HOSTILE_EMAILS = (
    f"{VICTIM}\r\nBcc: {VICTIM}",
    f"Evil\r\nBcc: {VICTIM} <{VICTIM}>",
    f"mailto:{VICTIM}?\r\nBcc: {VICTIM}",
    f"mailto:{VICTIM}%0D%0ABcc:%20{VICTIM}",
    f"{VICTIM}\x00",
    "vic\x00tim@x.test",
    f"{VICTIM}\x1b[0m",
    f"Evil\x08 <{VICTIM}>",
    f"{VICTIM}\x85",
    f"{VICTIM}\u2028",
)
# the same for line-based formats (WHOIS, security.txt): a line break there starts a new line,
# which whoever writes the file could write anyway, so only the values without one
LINE_EMAILS = tuple(e for e in HOSTILE_EMAILS if not any(c in e for c in "\r\n\x85\u2028"))

# the fields each payload is served through (counted for the report of cases tried)
FIELDS = (
    "rdap network name",
    "rdap network handle",
    "rdap network country",
    "rdap registrant org",
    "rdap entity fn",
    "rdap entity email",
    "whois netname",
    "whois descr",
    "whois country",
    "whois role name",
    "whois abuse-mailbox",
    "security.txt Contact",
    "security.txt Policy",
    "security.txt Preferred-Languages",
    "ptr name",
    "contacts.yaml name",
    "csv finding",
    "csv hostname",
    "cli --finding",
    "cli --hostname",
)

HEADERS = TOP_LEVEL_HEADERS
PART_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition", "mime-version"}


def cases_tried() -> int:
    """Payload x field combinations served (the e-mail fields also get every hostile e-mail)."""
    return len(PAYLOADS) * len(FIELDS) + len(HOSTILE_EMAILS) + 2 * len(LINE_EMAILS)


# --------------------------------------------------------------------------- the hostile world


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one payload lives in the hostile world: its networks, hosts and clean mailboxes.

    Every payload gets networks and mailboxes of its own (numbered), so one sandbox and one
    batch carry them all and each received message says by its recipient which payload it met.
    """

    number: int
    name: str
    payload: str

    def net(self, first: int) -> str:
        return f"127.{first + self.number}.0.0/16"

    @property
    def rdap_net(self) -> str:
        return self.net(100)

    @property
    def hostile_rdap_net(self) -> str:
        # more specific than the world's own network, so the registry answers with this one
        return f"127.{100 + self.number}.0.0/17"

    @property
    def whois_net(self) -> str:
        return self.net(130)

    @property
    def override_net(self) -> str:
        return self.net(160)

    @property
    def security_host(self) -> str:
        return f"127.{100 + self.number}.0.10"

    @property
    def ptr_host(self) -> str:
        return f"127.{100 + self.number}.0.20"

    @property
    def whois_host(self) -> str:
        return f"127.{130 + self.number}.0.1"

    @property
    def override_host(self) -> str:
        return f"127.{160 + self.number}.0.1"

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.security_host, self.ptr_host, self.whois_host, self.override_host)

    @property
    def site(self) -> str:
        return f"www.sec{self.number}.test"

    @property
    def recipients(self) -> dict[str, str]:
        """The clean mailbox each source publishes beside the hostile values."""
        n = self.number
        return {
            "rdap": f"abuse@rdap{n}.test",
            "security.txt": f"security@sec{n}.test",
            "whois": f"abuse@whois{n}.test",
            "override": f"soc@override{n}.test",
            "override network": f"abuse@override-net{n}.test",
        }


SLOTS = tuple(Slot(n, name, text) for n, (name, text) in enumerate(PAYLOADS.items()))
ALL_RECIPIENTS = {address: slot for slot in SLOTS for address in slot.recipients.values()}


def whois_answer(slot: Slot) -> str:
    """An AFRINIC-style port-43 answer with the payload in every free-text field."""
    payload, desk = slot.payload, slot.recipients["whois"]
    block = slot.whois_net.replace(".0.0/16", "")
    mailboxes = "".join(f"abuse-mailbox:  {e}\n" for e in LINE_EMAILS)
    return (
        "% This is the AfriNIC Whois server.\n\n"
        f"% Abuse contact for '{block}.0.0 - {block}.255.255' is '{desk}'\n\n"
        f"inetnum:        {block}.0.0 - {block}.255.255\n"
        f"netname:        N {payload}\n"
        f"descr:          D {payload}\n"
        f"country:        {payload}\n"
        "abuse-c:        AR1-AFRINIC\n"
        "status:         ASSIGNED PA\n\n"
        f"role:           R {payload}\n"
        "nic-hdl:        AR1-AFRINIC\n"
        f"{mailboxes}"
        f"abuse-mailbox:  {desk}\n"
    )


def security_txt(slot: Slot) -> str:
    payload, mailbox = slot.payload, slot.recipients["security.txt"]
    return (
        f"Contact: mailto:{mailbox}\n"
        f"Contact: mailto:{mailbox}?subject={payload}\n"
        f"Contact: {payload}\n"
        + "".join(f"Contact: {e}\n" for e in LINE_EMAILS)
        + "Expires: {expires}\n"
        f"Policy: https://{slot.site}/policy?{payload}\n"
        f"Preferred-Languages: en, {payload}\n"
    )


def hostile_world() -> World:
    networks: list[WorldNetwork] = []
    hosts: list[WorldHost] = []
    for slot in SLOTS:
        n = slot.number
        networks += [
            WorldNetwork(slot.rdap_net, "ripe", f"R{n}", f"R{n}", "NL", "R BV", f"abuse@r{n}"),
            WorldNetwork(
                slot.whois_net, "afrinic", f"W{n}", f"W{n}", "KE", "W Ltd", None, rdap_roles=False
            ),
            WorldNetwork(
                slot.override_net,
                "ripe",
                f"O{n}",
                f"O{n}",
                "NL",
                "O BV",
                slot.recipients["override network"],
            ),
        ]
        hosts += [
            WorldHost(slot.security_host, slot.site, security_txt=security_txt(slot)),
            WorldHost(slot.ptr_host),
            WorldHost(slot.whois_host),
            WorldHost(slot.override_host),
        ]
    return World(networks=tuple(networks), hosts=tuple(hosts))


def ptr_name(payload: str) -> str:
    """The payload as a PTR target: DNS labels carry any bytes, up to 63 of them each.

    The DNS library writes names from text through IDNA, which refuses the non-ASCII controls,
    so those become "?"; the ASCII ones (CR, LF, NUL, ESC...) go out as they are.
    """
    text = payload.encode("ascii", "replace").decode("ascii")
    labels = [label[:63] or "x" for label in text.split(".")] + ["ptr", "test"]
    return ".".join(labels)


def serve(box: Sandbox, tmp: Path) -> Path:
    """Put each payload into every answer of its slot; return the contacts.yaml written."""
    overrides = {}
    for slot in SLOTS:
        payload = slot.payload
        box.add_rdap(
            "ripe",
            slot.hostile_rdap_net,
            network_json(
                slot.hostile_rdap_net,
                handle=payload,
                name=payload,
                country=payload,
                abuse_email=[*HOSTILE_EMAILS, slot.recipients["rdap"]],
                registry="RIPE NCC",
                org=payload,
            ),
        )
        box.add_whois("afrinic", slot.whois_host, whois_answer(slot))
        box.dns.add_ptr(slot.ptr_host, ptr_name(payload))
        # added to the network's own desk, which must be reached too (mode: add)
        overrides[slot.override_net] = {
            "name": payload,
            "email": slot.recipients["override"],
            "mode": "add",
        }
    contacts = tmp / "contacts.yaml"
    contacts.write_text(yaml.safe_dump({"overrides": overrides}, allow_unicode=False))
    return contacts


def findings_csv() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ip", "port", "finding", "hostname"])
    for slot in SLOTS:
        for ip in slot.hosts:
            writer.writerow([ip, 9200, f"open {slot.payload}", slot.payload])
            # a plain row too: every source is reached whatever the reader makes of the other
            writer.writerow([ip, 6379, CLEAN_FINDING, ""])
    return out.getvalue()


# --------------------------------------------------------------------------- checking the wire


def header_names(block: bytes) -> list[str]:
    return [
        line.split(b":", 1)[0].decode("ascii").lower()
        for line in block.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


def decoded_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            return str(part.get_content())  # type: ignore[attr-defined]
    raise AssertionError("no text/plain body")


def assert_clean(received: ReceivedMessage) -> Message:
    """The raw bytes hold one message, to one recipient, with only the headers we write."""
    raw = received.raw
    recipient = received.rcpt_tos[0]
    assert len(received.rcpt_tos) == 1 and recipient in ALL_RECIPIENTS, received.rcpt_tos
    assert VICTIM not in received.mail_from

    # the wire: 7-bit, CRLF only, no NUL or other control byte, no over-long line
    assert raw.isascii()
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", raw) is None, "bare CR or LF on the wire"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", line), line

    # the top-level header block: only our headers, each once; none of them names the victim
    head, _, _ = raw.partition(b"\r\n\r\n")
    names = Counter(header_names(head))
    assert set(names) <= HEADERS, set(names) - HEADERS
    assert all(count == 1 for count in names.values()), names
    assert {"from", "to", "subject", "message-id", "content-type"} <= set(names)

    parsed = email.message_from_bytes(raw, policy=policy.default)
    for name in ("to", "cc", "bcc", "reply-to", "sender", "resent-to", "resent-cc"):
        values = parsed.get_all(name) or []
        for _, address in getaddresses([str(v) for v in values]):
            assert address.lower() in ({recipient} if name == "to" else set()), (name, address)
    to = parsed["To"].addresses  # type: ignore[union-attr]
    assert [a.addr_spec.lower() for a in to] == [recipient]
    assert [a.addr_spec for a in parsed["From"].addresses] == [SENDER]  # type: ignore[union-attr]

    # MIME: exactly the parts we build, parsed without a defect
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert kinds in (
        ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/json"],
        ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/csv"],
    ), kinds
    html = parsed.get_body(("html",))
    assert html is not None and "<script" not in html.get_content().lower()  # type: ignore[attr-defined]
    for part in parsed.walk():
        assert not part.defects, part.defects
        if part is not parsed:
            assert set(k.lower() for k in part.keys()) <= PART_HEADERS, part.keys()
    return parsed


def assert_literal(parsed: Message, text: str) -> None:
    """The finding ``text`` is printed as written: template syntax in it is never evaluated."""
    body = decoded_text(parsed)
    shown = header_text(text, 500)
    assert shown in body, (shown, body)
    assert "1337" not in body  # 7*191
    assert "LOOPLOOP" not in body
    assert "uid=" not in body
    for part in parsed.walk():
        if part.get_filename() == "xarf.json":
            report = json.loads(part.get_content())  # type: ignore[attr-defined]
            assert report["description"] == header_text(text, 1000)
        elif part.get_filename() == "findings.csv":
            rows = csv.DictReader(io.StringIO(part.get_content()))  # type: ignore[attr-defined]
            assert shown in [row["finding"] for row in rows]


def assert_printable(output: str) -> None:
    """What the CLI printed holds no terminal escape or other control character."""
    bad = [ch for ch in output if unicodedata.category(ch)[0] == "C" and ch != "\n"]
    assert not bad, sorted(set(bad))


async def invoke(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


# --------------------------------------------------------------------------- the tests


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[tuple[Sandbox, str]]:
    async with Sandbox(hostile_world(), directory=tmp_path) as box:
        contacts = serve(box, tmp_path)
        # dozens of networks at two registries: no politeness delay between their answers
        config = box.write_config(
            contacts={"file": str(contacts)},
            rdap={"rate_per_second": 10_000},
            whois={"rate_per_second": 10_000},
        )
        yield box, str(config)


def slot_of(received: ReceivedMessage) -> Slot:
    return ALL_RECIPIENTS[received.rcpt_tos[0]]


class TestEverySourceField:
    async def test_batch_carries_no_injection(
        self, hostile: tuple[Sandbox, str], tmp_path: Path
    ) -> None:
        """A batch over hostile registries, web, DNS, contacts and CSV sends only clean mail."""
        box, config = hostile
        data = tmp_path / "findings.csv"
        data.write_text(findings_csv(), encoding="utf-8")
        with data.open("rb") as stream:
            read = [f for f in read_findings(stream) if isinstance(f, Finding)]
        code, stdout, stderr = await invoke("batch", str(data), "--json", "--config", config)
        assert code == 0, stderr
        for received in box.smtp.messages:
            parsed = assert_clean(received)
            slot = slot_of(received)
            # each finding is there as the reader cleaned it (a bare CR ends a CSV row, so a
            # cell may be gone), on one line, printed and not evaluated
            texts = {f.text for f in read if str(f.ip) in slot.hosts}
            assert CLEAN_FINDING in texts
            for text in texts:
                assert_literal(parsed, text)
        # every source of every slot reached its clean mailbox, and only that
        reached = {m.rcpt_tos[0] for m in box.smtp.messages}
        assert reached == set(ALL_RECIPIENTS), set(ALL_RECIPIENTS) ^ reached
        assert_printable(stdout + stderr)

    async def test_send_with_hostile_finding(self, hostile: tuple[Sandbox, str]) -> None:
        """`notify send --finding` with each payload: clean mail, template syntax printed."""
        box, config = hostile
        for slot in SLOTS:
            before = len(box.smtp.messages)
            code, stdout, stderr = await invoke(
                "send",
                slot.security_host,
                "--finding",
                f"open {slot.payload}",
                "--hostname",
                slot.site,
                "--port",
                "9200",
                "--config",
                config,
            )
            assert code == 0, (slot.name, stderr)
            sent = box.smtp.messages[before:]
            recipients = slot.recipients
            assert {m.rcpt_tos[0] for m in sent} == {recipients["rdap"], recipients["security.txt"]}
            for received in sent:
                assert_literal(assert_clean(received), f"open {slot.payload}")
            assert_printable(stdout + stderr)

    async def test_send_refuses_a_hostile_hostname(self, hostile: tuple[Sandbox, str]) -> None:
        """`notify send --hostname` with any payload is bad input: exit 2, nothing sent."""
        box, config = hostile
        for slot in SLOTS:
            code, stdout, stderr = await invoke(
                "send", slot.security_host, "--hostname", slot.payload, "--config", config
            )
            assert code == 2 and "not a host name" in stderr, slot.name
            assert_printable(stdout + stderr.rstrip("\n"))
        assert box.smtp.messages == []

    async def test_resolve_output_is_printable(
        self, hostile: tuple[Sandbox, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What `notify resolve` prints of hostile notes and names has no control character."""
        _, config = hostile
        screen = io.StringIO()
        monkeypatch.setattr(
            resolve_command, "out", Console(file=screen, width=100, highlight=False)
        )
        async with Notifier(load_settings(config)) as notifier:
            ips = [ip for slot in SLOTS for ip in slot.hosts]
            resolutions = await asyncio.gather(*(notifier.resolve(ip) for ip in ips))
        for resolution in resolutions:
            resolve_command.print_resolution(resolution)
            for contact in resolution.contacts:
                assert contact.address in ALL_RECIPIENTS or contact.role == Role.NATIONAL_CERT
        assert_printable(screen.getvalue())
        # the notes did carry the payloads (the check above had something to look at)
        assert "Evil" in screen.getvalue()


class TestAddresses:
    @pytest.mark.parametrize("raw", HOSTILE_EMAILS)
    def test_control_characters_refuse_the_whole_value(self, raw: str) -> None:
        """An e-mail value holding a control character anywhere is refused, never repaired."""
        assert clean_address(raw) is None

    async def test_hostile_rdap_emails_never_become_recipients(
        self, hostile: tuple[Sandbox, str]
    ) -> None:
        """A network whose abuse entity lists hostile values is left with only the clean one."""
        _, config = hostile
        slot = SLOTS[0]
        async with Notifier(load_settings(config)) as notifier:
            resolution = await notifier.resolve(slot.ptr_host)
        assert [c.address for c in resolution.recipients] == [slot.recipients["rdap"]]
        assert any("control characters" in n for n in resolution.notes)


# --------------------------------------------------------------------------- SSRF

PUBLIC_STAND_IN = ip_address("127.0.0.1")
PRIVATE_FORMS = (
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.169.254",
    "100.64.0.1",
    "127.0.0.2",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "64:ff9b::a00:1",
)


@pytest.fixture
def tripped(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Hosts outside loopback a connection was attempted to (stopped); none, or the test fails.

    These tests serve redirects and referrals to internal addresses: should the address policy
    ever let one through, no packet may leave loopback all the same.
    """
    trips: list[str] = []
    tripwire(monkeypatch, trips)
    yield trips
    assert not trips, f"connections outside loopback were attempted: {trips}"


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch, tripped: list[str]) -> list[IPAddress]:
    """127.0.0.1 stands in for a public address; every other address keeps its real verdict.

    With ``http.allow_private = false`` nothing on loopback would be reachable at all, so the
    registry (on 127.0.0.1) plays a public server and the tests check where it may send us.
    Returns the addresses the policy was asked about.
    """
    asked: list[IPAddress] = []
    real = net.is_public_address

    def is_public(addr: IPAddress) -> bool:
        asked.append(addr)
        return addr == PUBLIC_STAND_IN or real(addr)

    monkeypatch.setattr(net, "is_public_address", is_public)
    return asked


def tripwire(monkeypatch: pytest.MonkeyPatch, trips: list[str]) -> None:
    """Refuse, and note in ``trips``, every connection about to leave loopback."""

    def loopback_only(host: str) -> None:
        try:
            if ip_address(host.strip("[]")).is_loopback:
                return
        except ValueError:
            pass
        trips.append(host)
        raise OSError(f"test tripwire: no connection outside loopback ({host})")

    http_connect = httpcore.AnyIOBackend.connect_tcp
    tcp_connect = asyncio.open_connection

    async def guarded_http(self: Any, host: str, port: int, **kwargs: Any) -> Any:
        loopback_only(host)
        return await http_connect(self, host, port, **kwargs)

    async def guarded_tcp(host: str, port: int, **kwargs: Any) -> Any:
        loopback_only(host)
        return await tcp_connect(host, port, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", guarded_http)
    monkeypatch.setattr(asyncio, "open_connection", guarded_tcp)


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    world = World(
        networks=(
            WorldNetwork(
                "127.1.0.0/16", "apnic", "ST-IN", "ST-NET", "IN", "State", "abuse@telecom-in.test"
            ),
        ),
        hosts=(
            WorldHost(
                "127.1.0.10",
                "records.health-dept.test",
                security_txt="Contact: mailto:security@health-dept.test\nExpires: {expires}\n",
            ),
        ),
        # a web site on the stand-in public address (every sandbox web site answers there too)
        mail_domains=("pub.test",),
    )
    async with Sandbox(world, directory=tmp_path) as sandbox:
        sandbox.dns.add_ptr("127.0.0.1", "pub.test")
        yield sandbox


def private_settings(box: Sandbox) -> Any:
    return box.settings(http={"allow_private": False})


def requests_to(box: Sandbox, host: str) -> list[str]:
    return [r.path for r in box.web.requests if r.host.split(":")[0] == host]


class TestSSRF:
    async def test_security_txt_host_on_a_private_address_is_not_fetched(
        self, box: Sandbox, judged: list[IPAddress]
    ) -> None:
        """A host name resolving to a non-public address gets no request; RDAP still answers."""
        async with Notifier(private_settings(box)) as notifier:
            resolution = await notifier.resolve("127.1.0.10")
        assert requests_to(box, "records.health-dept.test") == []
        assert ip_address("127.1.0.10") in judged
        assert [c.address for c in resolution.recipients] == ["abuse@telecom-in.test"]
        notes = " ".join(resolution.notes)
        assert "non-public" in notes

    @pytest.mark.parametrize(
        "location",
        [
            "https://10.11.12.13/rdap/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]:{port}/rdap/",
            "https://[::ffff:10.0.0.1]/rdap/",
            "https://internal.sandbox:{port}/rdap/",
            # IPv6 forms that lead to a private IPv4 address: 6to4, NAT64, Teredo
            "https://[2002:a9fe:a9fe::1]/latest/meta-data/",
            "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "https://[2001:0:a9fe:a9fe::1]/rdap/",
            "https://[fec0::1]/rdap/",
        ],
    )
    async def test_rdap_redirect_to_a_private_address_is_refused(
        self, box: Sandbox, judged: list[IPAddress], location: str
    ) -> None:
        """The registry's redirect to an internal address is refused before connecting."""
        box.dns.add("internal.sandbox", "A", "192.168.7.7")
        box.registries["apnic"].redirect(location.format(port=box.web.port))
        async with Notifier(private_settings(box)) as notifier:
            resolution = await notifier.resolve("127.1.0.10")
        rdap_errors = [e for s, e in resolution.errors if s == "rdap"]
        assert rdap_errors and "non-public" in rdap_errors[0], resolution.errors
        # only the first hop was asked; the redirect's target never was
        assert len(box.registries["apnic"].requests) == 1
        # and the policy was asked about it (for [::1], a loopback address, too)
        assert (
            any(a != PUBLIC_STAND_IN and not a.is_loopback for a in judged) or "[::1]" in location
        )
        assert ip_address("::1") in judged or "[::1]" not in location

    @pytest.mark.parametrize("inside", ["10.20.30.40", "2002:a9fe:a9fe::1", "192.0.0.8"])
    async def test_security_txt_redirect_to_a_private_address_is_refused(
        self, box: Sandbox, judged: list[IPAddress], inside: str
    ) -> None:
        """A public host's security.txt redirecting inside the network is not followed.

        2002:a9fe:a9fe::1 is 169.254.169.254 (cloud metadata) inside 6to4.
        """
        host = f"[{inside}]" if ":" in inside else inside
        for path in ("/.well-known/security.txt", "/security.txt"):
            box.web.route(
                path,
                Reply(301, b"", {"Location": f"https://{host}/.well-known/security.txt"}),
                host="pub.test",
            )
        async with Notifier(private_settings(box)) as notifier:
            resolution = await notifier.resolve("127.0.0.1")
        assert requests_to(box, "pub.test")  # the public host was asked
        assert ip_address(inside) in judged
        assert all("security.txt" not in c.sources for c in resolution.contacts)
        assert "non-public" in " ".join(resolution.notes)

    async def test_whois_referral_host_is_connected_to_as_checked(
        self, judged: list[IPAddress]
    ) -> None:
        """A referral name that re-resolves to a private address (DNS rebinding) gets nothing."""

        class Rebinding(DNSServer):
            """Answers the first question about the name publicly, every later one privately."""

            def answer(self, request: Any) -> Any:
                reply = super().answer(request)
                if str(request.q.qname).rstrip(".").lower() == "rebind.sandbox":
                    self.remove("rebind.sandbox", "A")
                    self.add("rebind.sandbox", "A", "127.0.0.2")
                return reply

        dns = Rebinding(ttl=0)
        dns.add("rebind.sandbox", "A", "127.0.0.1")
        public = WhoisServer(lambda q: "% public answer\n")
        await public.start()
        private = WhoisServer(lambda q: "% internal answer\n", host="127.0.0.2", port=public.port)
        await private.start()
        await dns.start()
        try:
            settings = Settings.from_mapping(
                {
                    "dns": {"nameservers": [dns.nameserver], "timeout": 1},
                    "http": {"allow_private": False},
                    "whois": {"timeout": 2},
                }
            )
            resolver = net.make_resolver(settings.dns)
            async with net.make_http_client(settings.http, resolver, user_agent="t") as http:
                ctx = LookupContext(
                    settings=settings, resolver=resolver, http=http, limiter=net.RateLimiter(100)
                )
                text = await whois.query_whois("rebind.sandbox", "127.9.0.1", ctx, port=public.port)
        finally:
            for server in (public, private):
                await server.stop()
            await dns.stop()
        assert private.queries == []
        assert public.queries and "public answer" in text

    async def test_domain_whois_server_on_a_private_address_is_refused(
        self, box: Sandbox, judged: list[IPAddress]
    ) -> None:
        """A host name under an internal TLD does not make us connect to its whois.nic host."""
        box.dns.add("whois.nic.corp-internal", "A", "127.0.0.2")
        # forward-confirmed, so that the name is used for domain lookups at all
        box.dns.add("db.corp-internal", "A", "127.1.0.10")
        async with Notifier(private_settings(box)) as notifier:
            resolution = await notifier.resolve("127.1.0.10", ["db.corp-internal"])
        assert ip_address("127.0.0.2") in judged
        assert any(
            "whois.nic.corp-internal" in note and "non-public" in note for note in resolution.notes
        ), resolution.notes

    def test_every_non_public_form_is_refused(self) -> None:
        """With allow_private false, the policy refuses each non-public address form."""
        policy = net.AddressPolicy(allow_private=False)
        for text in PRIVATE_FORMS:
            addr: IPv4Address | IPv6Address = ip_address(text)
            assert not policy.allows(addr), text
