"""Property tests for the parsers hostile data reaches, seeded with mutations of real captures.

Each parser is fed the corpus's real RDAP and WHOIS answers after random structural, line and
byte mutations (and the configuration and contacts parsers realistic files mutated the same
way). The property: the parser returns a value whose every address is clean, or raises only its
own error type, and does so quickly. The parsers that already have such a test elsewhere are
left to it: security.txt (test_sources_securitytxt), every scanner input format (test_inputs),
DSN bounce reports (test_bounces) and the audit log and timestamp replies (test_audit*).

The last class checks the composed message itself: whatever text a source or a scanner hands
in, the bytes for SMTP carry exactly the headers notifier writes and one recipient.
"""

from __future__ import annotations

import copy
import email
import functools
import json
import re
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from expected_headers import TOP_LEVEL_HEADERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.addresses import clean_address, header_text
from notifier.compose import compose
from notifier.config import Settings, load_settings, shipped_path
from notifier.contacts import parse_contacts
from notifier.errors import ConfigError, NotifierError, SourceProtocolError
from notifier.models import Contact, Finding, Network, Role
from notifier.sources.domain_rdap import parse_domain_rdap
from notifier.sources.rdap import decode_json, parse_bootstrap, parse_rdap
from notifier.sources.whois import decode_answer, parse_whois

# bounded runs: the whole file stays within seconds, each example within a fraction of one
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMIT = 1.0  # seconds any one parse may take

WHOIS_SERVERS = {
    "arin": "whois.arin.net",
    "ripencc": "whois.ripe.net",
    "apnic": "whois.apnic.net",
    "lacnic": "whois.lacnic.net",
    "afrinic": "whois.afrinic.net",
    "jpnic": "whois.nic.ad.jp",
    "krnic": "whois.nic.or.kr",
}

HOSTILE = (
    "abuse@example.org\r\nBcc: victim@x.test",
    "mailto:abuse@example.org?\r\nBcc: victim@x.test",
    "Evil\x00Name",
    "\x1b[2J\x1b[31m",
    "=?utf-8?q?Evil=0D=0ABcc=3A_victim=40x=2Etest?=",
    "{{ 7*191 }}{% for i in range(9) %}x{% endfor %}",
    "removed@lacnic.net",
    "a" * 5000,
    "999.999.999.999",
    "::ffff:10.0.0.1",
    "0.0.0.0/0",
    "\u202eevil\u2028line\u2029",
    "",
)
RDAP_KEYS = (
    "objectClassName",
    "handle",
    "name",
    "country",
    "startAddress",
    "endAddress",
    "cidr0_cidrs",
    "v4prefix",
    "v6prefix",
    "length",
    "entities",
    "roles",
    "vcardArray",
    "port43",
    "links",
    "href",
    "rel",
    "notices",
    "title",
    "arin_originas0_originautnums",
)

text_values = st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE))
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text_values,
    st.sampled_from(["abuse", "ip network", "entity", "fn", "email", "vcard", "registrant"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.sampled_from(RDAP_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


def elapsed_within(started: float) -> None:
    assert time.monotonic() - started < LIMIT


def printable(text: str) -> bool:
    return not any(unicodedata.category(ch)[0] == "C" for ch in text)


def clean_contacts(contacts: Any) -> None:
    """Every address a parser hands on is one ``clean_address`` keeps exactly as it is."""
    for contact in contacts:
        assert clean_address(contact.address) == contact.address, contact.address
        assert printable(contact.name), contact.name


# --------------------------------------------------------------------------- corpus


@functools.cache
def _rdap_captures(folder: Path) -> tuple[tuple[str, bytes], ...]:
    return tuple((p.name, p.read_bytes()) for p in sorted((folder / "rdap" / "ip").glob("*.json")))


@functools.cache
def _whois_captures(folder: Path) -> tuple[tuple[str, str, bytes], ...]:
    found = []
    for path in sorted((folder / "whois" / "ip").iterdir()):
        registry = path.name.split("-", 1)[0]
        found.append((registry, path.name, path.read_bytes()))
    return tuple(found)


@pytest.fixture
def rdap_captures(corpus_dir: Path) -> tuple[tuple[str, bytes], ...]:
    captures = _rdap_captures(corpus_dir)
    if not captures:
        pytest.skip("no RDAP captures in the corpus")
    return captures


@pytest.fixture
def whois_captures(corpus_dir: Path) -> tuple[tuple[str, str, bytes], ...]:
    captures = _whois_captures(corpus_dir)
    if not captures:
        pytest.skip("no WHOIS captures in the corpus")
    return captures


# --------------------------------------------------------------------------- mutations


Path_ = tuple[str | int, ...]


def _paths(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _get(node: Any, path: Path_) -> Any:
    for step in path:
        node = node[step]
    return node


def _set(root: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def mutate_json(data: st.DataObject, document: Any) -> Any:
    """A few random structural edits: replace, delete, wrap, nest deeply, repeat widely."""
    doc = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="edits")):
        path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
        action = data.draw(
            st.sampled_from(["replace", "delete", "wrap", "deepen", "widen"]), label="action"
        )
        here = _get(doc, path)
        if action == "replace":
            doc = _set(doc, path, data.draw(json_values, label="value"))
        elif action == "delete" and path:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
        elif action == "wrap":
            doc = _set(doc, path, data.draw(st.sampled_from([[here], {"entities": [here]}])))
        elif action == "deepen" and isinstance(here, dict):
            nested: Any = here
            for _ in range(data.draw(st.integers(min_value=2, max_value=60), label="depth")):
                nested = {"roles": ["abuse"], "entities": [nested]}
            doc = _set(doc, path, nested)
        elif action == "widen" and isinstance(here, list) and here:
            doc = _set(doc, path, here * data.draw(st.integers(min_value=2, max_value=700)))
    return doc


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """Flipped, dropped and inserted bytes, and a cut."""
    buffer = bytearray(raw)
    for _ in range(data.draw(st.integers(min_value=1, max_value=8), label="byte edits")):
        if not buffer:
            break
        at = data.draw(st.integers(min_value=0, max_value=len(buffer) - 1), label="at")
        action = data.draw(st.sampled_from(["flip", "drop", "insert", "cut"]), label="byte op")
        if action == "flip":
            buffer[at] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "drop":
            del buffer[at]
        elif action == "insert":
            buffer[at:at] = data.draw(st.binary(min_size=1, max_size=12))
        else:
            del buffer[at:]
    return bytes(buffer)


WHOIS_LINES = (
    "abuse-mailbox:  abuse@example.org",
    "abuse-mailbox:  abuse@example.org\x00Bcc: victim@x.test",
    "OrgAbuseEmail:  abuse@example.org",
    "e-mail:         a@b",
    "ReferralServer: whois://whois.example.net:4321",
    "ReferralServer: rwhois://10.0.0.1:4321",
    "refer:          whois.example.net",
    "inetnum:        10.0.0.0 - 10.255.255.255",
    "inetnum:        999.1.1.1 - 1.1.1.1",
    "NetRange:       0.0.0.0 - 255.255.255.255",
    "CIDR:           1.2.3.0/24, ::/0",
    "abuse-c:        AB1-X",
    "nic-hdl:        AB1-X",
    "role:           Abuse",
    "country:        ZZ",
    "% Abuse contact for '1.2.3.0 - 1.2.3.255' is 'abuse@example.org'",
    "% Information related to '1.2.3.0 - 1.2.3.255'",
    "<html><body><pre>",
    "</pre></body></html>",
    "[ 네트워크 할당 정보 ]",
    "a. [ネットワーク番号]   1.2.3.0/24",
    "",
    "#",
)


def mutate_lines(data: st.DataObject, text: str, pool: tuple[str, ...]) -> str:
    """Lines deleted, repeated, swapped, inserted (from ``pool`` or random) or re-valued."""
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(min_value=1, max_value=6), label="line edits")):
        at = data.draw(st.integers(min_value=0, max_value=max(len(lines) - 1, 0)), label="line")
        action = data.draw(
            st.sampled_from(["delete", "repeat", "swap", "insert", "revalue", "cut"]),
            label="line op",
        )
        if not lines and action != "insert":
            continue
        if action == "delete":
            del lines[at]
        elif action == "repeat":
            lines[at:at] = [lines[at]] * data.draw(st.integers(min_value=1, max_value=50))
        elif action == "swap":
            other = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "insert":
            lines.insert(at, data.draw(st.sampled_from(pool) | st.text(max_size=80)))
        elif action == "revalue":
            key, sep, _ = lines[at].partition(":")
            lines[at] = key + (sep or ":") + " " + data.draw(text_values)
        else:
            del lines[at:]
    ending = data.draw(st.sampled_from(["\n", "\r\n", "\r"]), label="line end")
    return ending.join(lines)


# --------------------------------------------------------------------------- RDAP


class TestRdap:
    @FAST
    @given(data=st.data())
    def test_mutated_captures_parse_or_are_refused(
        self, rdap_captures: tuple[tuple[str, bytes], ...], data: st.DataObject
    ) -> None:
        """A real answer with random structural edits parses, or raises SourceProtocolError."""
        _, raw = data.draw(st.sampled_from(rdap_captures), label="capture")
        document = mutate_json(data, json.loads(raw))
        started = time.monotonic()
        try:
            record = parse_rdap(document)
        except SourceProtocolError:
            elapsed_within(started)
            return
        elapsed_within(started)
        clean_contacts(record.contacts)
        network = record.network
        for text in (network.handle, network.name, network.org, network.country):
            assert printable(text) and len(text) <= 200
        assert len(network.cidrs) <= 32

    @FAST
    @given(data=st.data())
    def test_damaged_bytes_decode_or_are_refused(
        self, rdap_captures: tuple[tuple[str, bytes], ...], data: st.DataObject
    ) -> None:
        """A real answer with damaged bytes is refused as JSON or parses; nothing else escapes."""
        _, raw = data.draw(st.sampled_from(rdap_captures), label="capture")
        damaged = mutate_bytes(data, raw)
        started = time.monotonic()
        try:
            record = parse_rdap(decode_json(damaged, "fuzz"))
        except SourceProtocolError:
            return
        finally:
            elapsed_within(started)
        clean_contacts(record.contacts)

    @FAST
    @given(data=st.data())
    def test_mutated_domain_answers(self, data: st.DataObject) -> None:
        """A domain answer (gTLD profile shape) with random edits parses or is refused."""
        from notifier.sandbox.rdap import domain_json

        base = data.draw(
            st.sampled_from(
                [
                    domain_json("example.org", registrar_abuse_email="abuse@registrar.test"),
                    domain_json("example.org", redacted=True, related="https://r.test/d/x"),
                    domain_json("example.org", registrant_email="owner@example.org"),
                ]
            ),
            label="answer",
        )
        document = mutate_json(data, base)
        started = time.monotonic()
        try:
            record = parse_domain_rdap(document, "example.org", server="rdap.test")
        except SourceProtocolError:
            return
        finally:
            elapsed_within(started)
        clean_contacts(record.contacts)

    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def test_mutated_bootstrap_files(self, data: st.DataObject) -> None:
        """The shipped IANA bootstrap files with random edits parse or are refused."""
        kind = data.draw(st.sampled_from(["ipv4", "ipv6", "asn", "dns"]), label="kind")
        document = mutate_json(data, _bootstrap(kind))
        try:
            bootstrap = parse_bootstrap(kind, document)
        except SourceProtocolError:
            return
        assert all(isinstance(e, str) for entries, _ in bootstrap.services for e in entries)


@functools.cache
def _bootstrap(kind: str) -> Any:
    return json.loads((shipped_path("bootstrap") / f"{kind}.json").read_text())


# --------------------------------------------------------------------------- WHOIS


class TestWhois:
    @pytest.mark.parametrize("registry", list(WHOIS_SERVERS))
    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def test_mutated_answers_never_raise(
        self,
        whois_captures: tuple[tuple[str, str, bytes], ...],
        registry: str,
        data: st.DataObject,
    ) -> None:
        """Each registry's real answer with random line edits parses, under its server or not."""
        mine = [c for c in whois_captures if c[0] == registry]
        if not mine:
            pytest.skip(f"no {registry} capture in the corpus")
        _, name, raw = data.draw(st.sampled_from(mine), label="capture")
        server = data.draw(
            st.sampled_from([WHOIS_SERVERS[registry]] * 3 + sorted(WHOIS_SERVERS.values())),
            label="server",
        )
        text = mutate_lines(data, decode_answer(raw, WHOIS_SERVERS[registry]), WHOIS_LINES)
        started = time.monotonic()
        record = parse_whois(text, server, query="192.0.2.1")
        elapsed_within(started)
        clean_contacts(record.contacts)
        if record.network is not None:
            assert printable(record.network.name) and printable(record.network.org)

    @FAST
    @given(data=st.data())
    def test_damaged_bytes_decode_and_parse(
        self, whois_captures: tuple[tuple[str, str, bytes], ...], data: st.DataObject
    ) -> None:
        """Damaged bytes in any charset decode without raising, and the text parses."""
        registry, _, raw = data.draw(st.sampled_from(whois_captures), label="capture")
        server = WHOIS_SERVERS.get(registry, "whois.example.net")
        damaged = mutate_bytes(data, raw)
        started = time.monotonic()
        record = parse_whois(decode_answer(damaged, server), server, query="192.0.2.1")
        elapsed_within(started)
        clean_contacts(record.contacts)


# --------------------------------------------------------------------------- configuration

BASE_CONFIG: dict[str, Any] = {
    "sender": {
        "address": "Security Research <disclosure@research.example>",
        "organisation": "Research Example",
    },
    "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none", "timeout": 10},
    "dns": {"nameservers": ["127.0.0.1:5353"], "timeout": 3},
    "rdap": {"bootstrap": "http://127.0.0.1:8080/bootstrap/", "timeout": 5},
    "whois": {"servers": {"whois.ripe.net": "127.0.0.1:4301"}, "timeout": 5},
    "http": {"https_port": 443, "ca_bundle": "", "allow_private": False, "timeout": 5},
    "targets": {"allow_nonpublic": False, "exclude": ["10.0.0.0/8"]},
    "state": {"dir": "notify-state"},
    "contacts": {"file": "contacts.yaml"},
    "limits": {"per_recipient_per_day": 50, "max_messages_per_run": 500},
    "batch": {"max_findings_per_message": 500},
}
DEEP_TOML = ("a = " + "[" * 3000, "a = " + "{b=" * 3000, "[" * 3000 + "x]")
toml_leaves = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    text_values,
    st.sampled_from(["127.0.0.1:53", "[::1]:53", "host:notaport", "::1", "tls", "10.0.0.0/33"]),
)
toml_values = st.recursive(
    toml_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


def _toml_string(value: str) -> str:
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ch in '"\\' or unicodedata.category(ch) == "Cc" else ch
        for ch in value
        if not 0xD800 <= ord(ch) <= 0xDFFF
    )
    return f'"{escaped}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) == float("inf"):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(mapping: dict[str, Any]) -> str:
    lines = []
    for section, values in mapping.items():
        if not isinstance(values, dict):
            lines.append(f"{_toml_string(section)} = {_toml_value(values)}")
            continue
        lines.append(f"[{_toml_string(section)}]")
        lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def mutate_config(data: st.DataObject) -> dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="config edits")):
        section = data.draw(st.sampled_from([*config, "unknown", "audit", "followup"]))
        action = data.draw(st.sampled_from(["value", "key", "section", "drop"]), label="op")
        current = config.get(section)
        if action == "section" or not isinstance(current, dict):
            config[section] = data.draw(toml_values | st.just({}), label="section value")
        elif action == "drop":
            config.pop(section, None)
        elif action == "key" or not current:
            current[data.draw(st.text(max_size=12), label="key")] = data.draw(toml_values)
        else:
            key = data.draw(st.sampled_from(sorted(current)), label="key")
            current[key] = data.draw(toml_values, label="value")
    return config


class TestConfig:
    @FAST
    @given(data=st.data())
    def test_mapping_is_settings_or_config_error(self, data: st.DataObject) -> None:
        """A realistic configuration with random edits loads, or is refused with ConfigError."""
        mapping = mutate_config(data)
        try:
            loaded = Settings.from_mapping(mapping)
        except ConfigError as exc:
            assert "\n" not in str(exc).strip() or str(exc).count("\n") < 3
            return
        assert isinstance(loaded, Settings)

    @FAST
    @given(data=st.data())
    def test_toml_text_is_settings_or_config_error(
        self, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Any file text (mutated TOML, garbage, deep nesting) loads or raises ConfigError."""
        text = data.draw(
            st.one_of(
                st.builds(to_toml, st.builds(mutate_config, st.just(data))),
                st.text(max_size=400),
                st.sampled_from(DEEP_TOML),
            ),
            label="text",
        )
        if data.draw(st.booleans(), label="damage"):
            text = mutate_bytes(data, text.encode("utf-8")).decode("utf-8", "replace")
        path = tmp_path_factory.getbasetemp() / "fuzz-notify.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        started = time.monotonic()
        try:
            load_settings(path)
        except ConfigError:
            pass
        elapsed_within(started)


# --------------------------------------------------------------------------- contacts.yaml

CONTACTS_EXAMPLE = """\
certs:
  IN: {name: "CERT-In", email: "incident@cert-in.org.in"}
  NO: {name: "NorCERT", email: [cert@cert.no, "post@cert.no"], confidence: medium}
overrides:
  "198.51.100.0/24": {name: "Example SOC", email: "soc@example.com"}
  "AS64500": {name: "Example NOC", email: "noc@example.net", updated: 2024-06-06}
  "example.org": {name: "Example Security", email: "security@example.org"}
"""
YAML_LINES = (
    "  XX: {name: x, email: a@b}",
    "  ZZ: {email: [victim@x.test\u0085]}",
    "  &anchor AA: {email: a@example.org}",
    "  BB: *anchor",
    "  <<: *anchor",
    "  CC: !!python/object/apply:os.system [id]",
    "  DD: {email: ~}",
    '  "10.0.0.0/8": {name: "{{ 7*191 }}", email: "soc@example.com"}',
    "  AS99999999999: {email: a@example.org}",
    "%YAML 1.1",
    "---",
    "...",
    "certs: []",
    "overrides:",
    "\t- tab",
    "  EE: {" + "[" * 200,
)


@functools.cache
def _shipped_sample() -> str:
    """The first entries of the shipped registry: real layout, comments, lists, quoting."""
    lines = shipped_path("contacts.yaml").read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[:160]) + "\n"


class TestContacts:
    @FAST
    @given(data=st.data())
    def test_mutated_files_report_problems_never_raise(self, data: st.DataObject) -> None:
        """A contacts file with random edits yields entries and problems, never an exception."""
        base = data.draw(st.sampled_from([CONTACTS_EXAMPLE, _shipped_sample()]), label="file")
        text = mutate_lines(data, base, YAML_LINES)
        if data.draw(st.booleans(), label="damage"):
            text = mutate_bytes(data, text.encode("utf-8")).decode("utf-8", "replace")
        started = time.monotonic()
        certs, overrides, problems = parse_contacts(text)
        elapsed_within(started)
        for entry in [*certs.values(), *overrides.values()]:
            assert entry.addresses
            assert all(clean_address(a) == a for a in entry.addresses if "@example." not in a)
            assert printable(entry.name)
        assert all(p.line >= 0 and p.message for p in problems)


# --------------------------------------------------------------------------- addresses

ADDRESS_RE = re.compile(r"^[!#-'*+/-9=?A-Z^-~.-]+@[a-z0-9.-]+$")


class TestAddresses:
    @settings(max_examples=400, deadline=None)
    @given(
        st.one_of(
            st.text(max_size=80),
            st.builds(
                lambda a, b, c: f"{a}{b}@{c}",
                st.sampled_from(["", "mailto:", "Name <", " ", "\t"]),
                st.text(max_size=20),
                st.text(max_size=30),
            ),
            st.sampled_from(HOSTILE),
        )
    )
    def test_clean_address_keeps_only_clean_addresses(self, raw: str) -> None:
        """clean_address returns None or a bare address without control characters, stably."""
        cleaned = clean_address(raw)
        if cleaned is None:
            return
        assert ADDRESS_RE.match(cleaned), cleaned
        assert printable(cleaned) and " " not in cleaned
        assert clean_address(cleaned) == cleaned
        if any(unicodedata.category(ch)[0] == "C" for ch in raw.strip(" \t")):
            raise AssertionError(f"accepted a value with a control character: {raw!r}")

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=300), st.integers(min_value=1, max_value=250))
    def test_header_text_is_one_clean_line(self, raw: str, limit: int) -> None:
        """header_text leaves no control character and respects its length limit."""
        text = header_text(raw, limit)
        assert printable(text) and len(text) <= limit
        assert text == " ".join(text.split())


# --------------------------------------------------------------------------- the message

COMPOSE_SETTINGS = Settings.from_mapping(
    {"sender": {"address": "Research <disclosure@research.test>", "organisation": "Research"}}
)
WRITTEN = TOP_LEVEL_HEADERS
hostile_text = st.one_of(
    st.text(max_size=120),
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(HOSTILE) | st.text(max_size=20), max_size=5).map(" ".join),
)


def _header_block(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode("ascii").lower()
        for line in head.split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    ]


class TestComposedMessage:
    @settings(max_examples=120, deadline=None)
    @given(
        texts=st.lists(hostile_text, min_size=1, max_size=3),
        name=hostile_text,
        network=st.tuples(hostile_text, hostile_text, hostile_text, hostile_text),
        hostname=st.none() | hostile_text,
    )
    def test_any_text_leaves_the_headers_alone(
        self,
        texts: list[str],
        name: str,
        network: tuple[str, str, str, str],
        hostname: str | None,
    ) -> None:
        """Whatever the findings, names and network say, the bytes carry only our headers."""
        findings = [
            Finding(ip_address("127.0.0.9"), text or "x", port=80 + i, hostname=hostname)
            for i, text in enumerate(texts)
        ]
        contact = Contact("abuse@x.test", Role.NETWORK, ("rdap",), 0.9, (network[0],), name)
        handle, net_name, org, country = network
        try:
            composed = compose(
                findings,
                contact,
                settings=COMPOSE_SETTINGS,
                template=None,
                case_ref="NTF-FUZZ000001",
                now=datetime(2026, 11, 1, tzinfo=UTC),
                log_head="1:" + "0" * 64,
                network=Network(
                    "RIPE NCC", handle, net_name, ("127.0.0.0/8",), "", "", country, org
                ),
            )
        except NotifierError as exc:  # refusing to send is allowed; sending injected bytes is not
            assert "headers" in str(exc)
            return
        raw = composed.raw
        assert raw.isascii() and re.search(rb"\r(?!\n)|(?<!\r)\n", raw) is None
        assert sorted(_header_block(raw)) == sorted(WRITTEN)
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert [a.addr_spec for a in parsed["To"].addresses] == ["abuse@x.test"]  # type: ignore[union-attr]
        assert parsed.get_all("Bcc") is None and parsed.get_all("Cc") is None
