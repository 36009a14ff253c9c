"""Who gets mail, on a loopback world of owners who published something, or nothing.

Each case is one host in one network whose abuse desk is ``abuse@hoster.test``: a security.txt
that lists only a web form, one that expired, one whose Canonical names another URL, one served
with a certificate that does not verify, one that never finishes arriving; a domain with an MX
and none; operator overrides that replace or add; scanner host names, confirmed or not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from notifier.batch import Batch, FindingOutcome
from notifier.cli import app
from notifier.models import ChannelKind, Finding, HostHint, Resolution, Role
from notifier.pipeline import Notifier
from notifier.sandbox.rdap import network_json
from notifier.sandbox.web import Reply
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.sources.hints import clean_hint
from notifier.testing import Sandbox

ABUSE = "abuse@hoster.test"
FUTURE = "{expires}"


def sectxt(*contacts: str, expires: str = FUTURE, extra: str = "") -> str:
    lines = [f"Contact: {c}" for c in contacts]
    return "\n".join([*lines, f"Expires: {expires}", *([extra] if extra else [])]) + "\n"


HOSTS = {
    # name: (address, security.txt or None)
    "app.formonly.test": (
        "127.20.1.1",
        sectxt("https://formonly.test/report", "tel:+1-201-555-0123", "javascript:alert(1)"),
    ),
    "app.expired.test": (
        "127.20.2.1",
        sectxt("mailto:sec@expired.test", expires="2020-01-01T00:00:00Z"),
    ),
    "app.miscanon.test": (
        "127.20.3.1",
        sectxt(
            "mailto:sec@miscanon.test",
            extra="Canonical: https://elsewhere.test/.well-known/security.txt",
        ),
    ),
    "cover.untrusted.test": ("127.20.4.1", None),  # a name the certificate covers; see below
    "app.slow.test": ("127.20.5.1", None),  # served by a dripping route, below
    "app.nomx.test": ("127.20.6.1", None),
    "app.mxonly.test": ("127.20.7.1", None),
    "app.ovr.test": ("127.20.8.1", None),
    "app.secure.test": ("127.20.10.1", sectxt("mailto:sec@secure.test")),
    "shop.hinted.test": ("127.20.9.1", sectxt("mailto:sec@hinted.test")),
    "app.many.test": (
        "127.20.11.1",
        sectxt(*(f"mailto:s{n}@many.test" for n in range(900)), "ftp://many.test/drop"),
    ),
}
MAIL_DOMAINS = (
    "formonly.test",
    "expired.test",
    "miscanon.test",
    "untrusted.test",
    "slow.test",
    "mxonly.test",
    "secure.test",
    "hinted.test",
    "many.test",
)


def world() -> World:
    return World(
        networks=(
            WorldNetwork("127.20.0.0/16", "ripe", "HOSTER", "HOSTER-NET", "DE", "Hoster", ABUSE),
        ),
        hosts=tuple(
            WorldHost(ip, name, ptr=name != "shop.hinted.test", security_txt=text)
            for name, (ip, text) in HOSTS.items()
        ),
        mail_domains=MAIL_DOMAINS,
    )


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(world(), directory=tmp_path) as sandbox:
        # a name the sandbox certificate does not cover: its TLS identity does not verify
        sandbox.dns.add_host("app.untrusted.test", "127.20.4.1", ptr=False)
        sandbox.dns.add_ptr("127.20.4.1", "app.untrusted.test")
        # a file that starts arriving and never finishes
        body = sectxt("mailto:sec@slow.test").replace("{expires}", "2099-01-01T00:00:00Z")
        sandbox.web.route(
            "/.well-known/security.txt",
            Reply(200, body.encode(), {"Content-Type": "text/plain"}, drip=0.5),
            host="app.slow.test",
        )
        # a domain with an address but no MX of its own
        sandbox.dns.add_host("nomx.test", "127.0.0.2", ptr=False)
        # a network with its own AS number, for an AS override
        sandbox.add_rdap(
            "ripe",
            "127.20.12.0/24",
            network_json("127.20.12.0/24", "ASNET", "AS-NET", "DE", "abuse@asnet.test", asn=64500),
        )
        yield sandbox


async def resolve(
    box: Sandbox,
    ip: str,
    *,
    hints: tuple[HostHint, ...] = (),
    contacts: dict[str, Any] | None = None,
    **sections: dict[str, Any],
) -> Resolution:
    if contacts is not None:
        path = box.directory / "contacts.yaml"
        path.write_text(yaml.safe_dump({"overrides": contacts}))
        sections["contacts"] = {"file": str(path)}
    settings = box.settings(http={"timeout": 1}, **sections)
    async with Notifier(settings) as notifier:
        return await notifier.resolve(ip, hints=hints)


def told(resolution: Resolution) -> list[str]:
    return sorted(c.address for c in resolution.recipients)


def notes(resolution: Resolution) -> str:
    return "\n".join(resolution.notes)


class TestOwnersWhoSpoke:
    async def test_web_form_only(self, box: Sandbox) -> None:
        """A file listing only a web form and a phone: no guess, the channels are shown."""
        res = await resolve(box, "127.20.1.1")
        assert told(res) == [ABUSE]
        kinds = [(c.kind, c.uri) for c in res.channels]
        assert kinds == [
            (ChannelKind.WEB, "https://formonly.test/report"),
            (ChannelKind.PHONE, "tel:+1-201-555-0123"),
        ]
        assert all(c.role is Role.OWNER and c.source == "security.txt" for c in res.channels)
        assert "a javascript: URI is never offered" in notes(res)
        assert "no role mailbox guessed: the owner published a security.txt" in notes(res)

    async def test_expired(self, box: Sandbox) -> None:
        """An expired file's contacts are not used, the reason is shown, nothing is guessed."""
        res = await resolve(box, "127.20.2.1")
        assert told(res) == [ABUSE]
        assert "expired on 2020-01-01" in notes(res)
        assert "sec@expired.test" in notes(res)

    async def test_mis_canonical(self, box: Sandbox) -> None:
        """A file whose Canonical names another URL is not trusted; nothing is guessed."""
        res = await resolve(box, "127.20.3.1")
        assert told(res) == [ABUSE]
        assert "do not list where it was fetched" in notes(res)

    async def test_untrusted_certificate(self, box: Sandbox) -> None:
        """A name whose HTTPS certificate does not verify: not read, nothing guessed."""
        res = await resolve(box, "127.20.4.1")
        assert told(res) == [ABUSE]
        assert "certificate not trusted" in notes(res)
        assert not any(c.address.endswith("@untrusted.test") for c in res.contacts)

    async def test_slow_file(self, box: Sandbox) -> None:
        """A file that never finishes arriving counts as published: nothing is guessed."""
        res = await resolve(box, "127.20.5.1")
        assert told(res) == [ABUSE]
        assert "did not arrive whole" in notes(res)

    async def test_thousands_of_contacts_are_bounded(self, box: Sandbox) -> None:
        """900 Contact lines: the first ten mailboxes are used, the rest named in a note."""
        res = await resolve(box, "127.20.11.1")
        owners = [c.address for c in res.recipients if c.role is Role.OWNER]
        assert owners == sorted(f"s{n}@many.test" for n in range(10))
        assert "890 more Contact fields ignored" in notes(res)
        assert [c.kind for c in res.channels] == [ChannelKind.OTHER]


class TestGuessing:
    async def test_no_mx_no_guess(self, box: Sandbox) -> None:
        """A domain with an address record but no MX of its own gets no guess."""
        res = await resolve(box, "127.20.6.1")
        assert told(res) == [ABUSE]
        assert "nomx.test has no MX record of its own" in notes(res)

    async def test_mx_gives_one_low_guess(self, box: Sandbox) -> None:
        """Nobody spoke, the domain has an MX: one guess, security@, low, marked guessed."""
        res = await resolve(box, "127.20.7.1")
        assert told(res) == [ABUSE, "security@mxonly.test"]
        guess = next(c for c in res.recipients if c.address == "security@mxonly.test")
        assert guess.confidence == 0.3 and guess.role is Role.OWNER
        assert guess.provenance[0] == "guessed"

    async def test_guessing_off(self, box: Sandbox) -> None:
        """``[resolve] guess_role_mailbox = false`` turns the guess off, and says so."""
        res = await resolve(box, "127.20.7.1", resolve={"guess_role_mailbox": False})
        assert told(res) == [ABUSE]
        assert "guessing is off" in notes(res)


class TestOverrides:
    async def test_cidr_override_replaces_the_abuse_desk(self, box: Sandbox) -> None:
        """An override for the network stands in for the registry's abuse desk."""
        res = await resolve(
            box, "127.20.8.1", contacts={"127.20.8.0/24": {"email": "soc@ops.test"}}
        )
        assert told(res) == ["soc@ops.test"]
        assert ABUSE not in [c.address for c in res.contacts]
        assert f"{ABUSE} (network) replaced by an operator override" in notes(res)

    async def test_cidr_override_add(self, box: Sandbox) -> None:
        """``mode: add`` keeps the abuse desk beside the override."""
        entry = {"email": "soc@ops.test", "mode": "add"}
        res = await resolve(box, "127.20.8.1", contacts={"127.20.8.0/24": entry})
        assert told(res) == [ABUSE, "soc@ops.test"]

    async def test_asn_override_replaces(self, box: Sandbox) -> None:
        """An override for the network's AS number replaces its abuse desk too."""
        res = await resolve(box, "127.20.12.5", contacts={"AS64500": {"email": "noc@ops.test"}})
        assert told(res) == ["noc@ops.test"], (res.network, res.errors, notes(res))
        plain = await resolve(box, "127.20.12.5")
        assert told(plain) == ["abuse@asnet.test"]

    async def test_domain_override_replaces_the_owner(self, box: Sandbox) -> None:
        """An override for a domain replaces the owner's contacts; the network keeps its own."""
        res = await resolve(box, "127.20.10.1", contacts={"secure.test": {"email": "o@ops.test"}})
        assert told(res) == [ABUSE, "o@ops.test"]
        plain = await resolve(box, "127.20.10.1")
        assert told(plain) == [ABUSE, "sec@secure.test"]

    async def test_domain_override_add(self, box: Sandbox) -> None:
        entry = {"email": "o@ops.test", "mode": "add"}
        res = await resolve(box, "127.20.10.1", contacts={"secure.test": entry})
        assert told(res) == [ABUSE, "o@ops.test", "sec@secure.test"]

    async def test_network_override_stops_the_guess(self, box: Sandbox) -> None:
        """With an override for the network, the operator's contact alone is told: no guess."""
        res = await resolve(box, "127.20.7.1", contacts={"127.20.7.0/24": {"email": "s@ops.test"}})
        assert told(res) == ["s@ops.test"]

    async def test_domain_override_stops_the_guess(self, box: Sandbox) -> None:
        """A domain the operator spoke for gets no guessed mailbox beside the override."""
        res = await resolve(box, "127.20.7.1", contacts={"mxonly.test": {"email": "o@ops.test"}})
        assert told(res) == [ABUSE, "o@ops.test"]


class TestScannerHints:
    async def test_confirmed_hint_is_used(self, box: Sandbox) -> None:
        """A scanner's name that resolves to the address leads to the owner's security.txt."""
        hint = HostHint("shop.hinted.test", "tls certificate")
        res = await resolve(box, "127.20.9.1", hints=(hint,))
        assert told(res) == [ABUSE, "sec@hinted.test"]
        [check] = res.hints
        assert (check.name, check.source, check.confirmed) == (
            "shop.hinted.test",
            "tls certificate",
            True,
        )

    async def test_unconfirmed_hint_is_shown_not_used(self, box: Sandbox) -> None:
        """A name that resolves elsewhere is shown with its reason and never looked up."""
        hint = HostHint("app.secure.test", "http host")  # 127.20.10.1, not this address
        res = await resolve(box, "127.20.9.1", hints=(hint,))
        assert told(res) == [ABUSE]
        [check] = res.hints
        assert not check.confirmed and "point elsewhere (127.20.10.1)" in check.reason
        assert "sec@secure.test" not in [c.address for c in res.contacts]

    async def test_hostile_hints_are_refused_with_the_reason(self, box: Sandbox) -> None:
        """Control characters, a megabyte name, a homograph, a wildcard: refused, run goes on."""
        hostile = (
            HostHint("shop.hinted.test\r\nBcc: x@evil.test", "csv hostname"),
            HostHint("a" * 1_000_000, "nmap hostname"),
            HostHint("p\u0430ypal.hinted.test", "tls certificate"),  # Cyrillic a
            HostHint("*.hinted.test", "tls certificate"),
            HostHint("shop.hinted.test", "tls certificate"),
        )
        res = await resolve(box, "127.20.9.1", hints=hostile)
        assert told(res) == [ABUSE, "sec@hinted.test"]
        reasons = [h.reason for h in res.hints if not h.confirmed]
        assert reasons[0] == "refused: control or invisible characters"
        assert reasons[1].startswith("refused: 1000000 characters")
        assert "mixes scripts" in reasons[2] and "xn--" in reasons[2]
        assert "wildcard" in reasons[3]
        assert all(len(h.name) <= 80 for h in res.hints)

    async def test_ten_thousand_certificate_names_are_bounded(self, box: Sandbox) -> None:
        """A certificate with 10,000 names: ten are checked, the rest counted in a note."""
        names = tuple(HostHint(f"n{n}.hinted.test", "tls certificate") for n in range(10_000))
        res = await resolve(box, "127.20.9.1", hints=(HostHint("shop.hinted.test", "x"), *names))
        assert len(res.hints) == 10
        assert "9991 more host name hints not checked" in notes(res)
        assert "sec@hinted.test" in told(res)

    async def test_batch_carries_the_scanner_hints(self, box: Sandbox) -> None:
        """In a batch too, a finding's confirmed scanner name reaches the owner; an
        unconfirmed one does not."""
        seen = datetime(2026, 11, 1, tzinfo=UTC)
        findings = [
            Finding(
                ip_address("127.20.9.1"),
                "open database",
                observed_at=seen,
                hints=(HostHint("shop.hinted.test", "tls certificate"),),
            ),
            Finding(
                ip_address("127.20.9.2"),
                "open database",
                observed_at=seen,
                hints=(HostHint("shop.hinted.test", "tls certificate"),),  # not this address
            ),
        ]
        outcomes: list[FindingOutcome] = []
        async with Notifier(box.settings(http={"timeout": 1})) as notifier:
            batch = Batch(notifier, dry_run=True, on_outcome=outcomes.append)
            for item in findings:
                await batch.submit(item)
            await batch.flush()
        told_for = {o.ip: sorted(o.recipients) for o in outcomes}
        assert told_for == {"127.20.9.1": [ABUSE, "sec@hinted.test"], "127.20.9.2": [ABUSE]}


class TestShown:
    async def test_resolve_json_and_text_show_channels_hints_and_guesses(
        self, box: Sandbox
    ) -> None:
        """``resolve`` prints channels as manual steps and guesses as guesses; --json has both."""
        config = str(box.write_config(http={"timeout": 1}))

        async def cli(*args: str) -> str:
            # the command runs its own event loop: in a thread, beside the sandbox's
            result = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--config", config])
            return result.stdout

        text = await cli("resolve", "127.20.1.1")
        assert "the owner asks for reports at https://formonly.test/report" in text
        guessed = await cli("resolve", "127.20.7.1")
        assert "security@mxonly.test  [owner, confidence 0.30, guessed" in guessed
        data = json.loads(
            await cli("resolve", "127.20.9.1", "--hostname", "www.nowhere.test", "--json")
        )
        assert data["channels"] == []
        assert data["hints"] == [
            {
                "name": "www.nowhere.test",
                "source": "given host name",
                "confirmed": False,
                "confidence": "low",
                "reason": "not forward-confirmed: the name does not exist; not used",
            }
        ]
        guess = json.loads(await cli("resolve", "127.20.7.1", "--json"))
        flags = {c["address"]: c["guessed"] for c in guess["contacts"] if c["use"] == "notify"}
        assert flags == {"security@mxonly.test": True, "abuse@hoster.test": False}
        form = json.loads(await cli("resolve", "127.20.1.1", "--json"))
        assert form["channels"][0]["uri"] == "https://formonly.test/report"
        assert form["channels"][0]["kind"] == "web"

    async def test_send_logs_the_channels(self, box: Sandbox) -> None:
        """The audit log's resolution record carries the channels and the hints."""
        finding = Finding(
            ip_address("127.20.1.1"), "open database", observed_at=datetime(2026, 11, 1, tzinfo=UTC)
        )
        async with Notifier(box.settings(http={"timeout": 1})) as notifier:
            result = await notifier.send([finding])
        assert [d.recipient for d in result.deliveries] == [ABUSE]
        log = box.settings().state_dir / "audit.jsonl"
        [record] = [
            json.loads(line)
            for line in log.read_text().splitlines()
            if json.loads(line)["event"] == "resolution"
        ]
        assert [c["uri"] for c in record["channels"]] == [
            "https://formonly.test/report",
            "tel:+1-201-555-0123",
        ]


class TestCleanHint:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Shop.Example.ORG.", "shop.example.org"),
            ("bücher.example", "xn--bcher-kva.example"),  # an IDN: used in punycode
            ("日本語ドメイン.example", "xn--eckwd4c7c5976acvb2w6i.example"),  # Han + Katakana
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ],
    )
    def test_accepted(self, raw: str, expected: str) -> None:
        """Names are lower-cased ASCII; IDNs in one script (or Japanese's usual mix) pass."""
        assert clean_hint(raw) == (expected, "")

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("p\u0430ypal.example", "mixes scripts"),  # Latin p, Cyrillic a
            ("xn--pypal-4ve.example", "mixes scripts"),  # the same, already in punycode
            ("shop\u200b.example", "control or invisible"),  # zero-width space
            ("shop.example\x00", "control or invisible"),
            ("x" * 300, "300 characters"),
            ("*.example.org", "wildcard"),
            ("127.0.0.1", "not a host name"),
            ("under_score..example", "not a host name"),
        ],
    )
    def test_refused(self, raw: str, reason: str) -> None:
        """Hostile or malformed names are refused, each with the reason."""
        name, why = clean_hint(raw)
        assert name is None and reason in why
