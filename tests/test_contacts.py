"""The contacts registry (shipped national CERTs, user overrides) and the shipped RDAP bootstrap."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from notifier.config import shipped_path
from notifier.contacts import ContactRegistry, Problem, check_file, parse_contacts
from notifier.errors import ConfigError
from notifier.models import Role

NATIONAL_CERTS = Path(
    os.environ.get(
        "NOTIFY_NATIONAL_CERTS",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "national-certs.yaml",
    )
)
BOOTSTRAP = Path(__file__).resolve().parents[1] / "notifier" / "data" / "bootstrap"


@pytest.fixture
def national_certs() -> dict[str, dict[str, object]]:
    """The national-CERT survey the shipped file was compiled from, read in place."""
    if not NATIONAL_CERTS.is_file():
        pytest.skip(
            f"national-CERT survey not found at {NATIONAL_CERTS} (set NOTIFY_NATIONAL_CERTS)"
        )
    # BaseLoader keeps every scalar as written: `NO` stays Norway, dates stay text
    data: dict[str, dict[str, object]] = yaml.load(
        NATIONAL_CERTS.read_text(encoding="utf-8"), Loader=yaml.BaseLoader
    )
    return data


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(text: str) -> list[Problem]:
    return parse_contacts(text)[2]


class TestShippedFile:
    def test_is_valid(self) -> None:
        """The shipped contacts.yaml passes its own check with no problems."""
        assert check_file(shipped_path("contacts.yaml")) == []

    def test_covers_every_surveyed_country(
        self, national_certs: dict[str, dict[str, object]]
    ) -> None:
        """Every surveyed country is shipped, with the same address, confidence and sources."""
        registry = ContactRegistry.load()
        assert len(national_certs) == 57
        assert set(registry.certs) >= set(national_certs)
        for code, survey in national_certs.items():
            entry = registry.certs[code]
            emails = survey["email"] if isinstance(survey["email"], list) else [survey["email"]]
            assert list(entry.addresses) == emails, code
            assert entry.name == survey["name"], code
            assert entry.url == survey["url"], code
            assert entry.confidence == survey["confidence"], code
            # the survey's `checked` is the date its source carries: `published` here
            assert entry.published == survey["checked"], code
            assert list(entry.sources) == survey["sources"], code
            assert entry.note == survey.get("note", ""), code
            also = survey.get("also", [])
            assert isinstance(also, list)
            assert len(entry.also) == len(also), code
            pairs = zip(entry.also, also, strict=True)
            assert all(mine.startswith(str(theirs)) for mine, theirs in pairs), code

    def test_covers_a_hundred_countries_each_with_its_evidence(self) -> None:
        """At least 100 countries, each with sources, the day it was checked and a confidence."""
        certs = ContactRegistry.load().certs
        assert len(certs) >= 100
        today = datetime.now(UTC).date()
        for code, entry in certs.items():
            assert entry.sources and all(entry.sources), code
            checked = date.fromisoformat(entry.checked)  # a whole day, not just a year
            assert date(2026, 1, 1) <= checked <= today, code
            assert entry.published, code
            assert entry.confidence in ("high", "medium", "low"), code
            assert "en" in entry.languages, code
            assert entry.name and entry.addresses, code

    def test_territories_repeat_their_states_team(self) -> None:
        """A territory entry names its state, repeats that team and address, and is never high."""
        certs = ContactRegistry.load().certs
        territories = [entry for entry in certs.values() if entry.part_of]
        assert territories
        for entry in territories:
            state = certs[entry.part_of]
            assert not state.part_of, entry.key
            assert (entry.name, entry.addresses) == (state.name, state.addresses), entry.key
            assert entry.sources == state.sources, entry.key
            assert entry.confidence in ("medium", "low"), entry.key
            assert not (state.confidence == "low" and entry.confidence != "low"), entry.key
        # most of the registry is countries with a team of their own
        assert len(certs) - len(territories) > len(territories) * 3

    def test_high_entries_cite_the_teams_own_page(self) -> None:
        """A high-confidence entry names at least one page (title and address) among its sources."""
        for code, entry in ContactRegistry.load().certs.items():
            if entry.confidence == "high":
                assert any("<http" in source for source in entry.sources), code

    def test_has_the_interface_shape(self) -> None:
        """Top level: certs keyed by ISO code (each with name and email) and empty overrides."""
        data = yaml.load(shipped_path("contacts.yaml").read_text("utf-8"), Loader=yaml.BaseLoader)
        assert set(data) == {"certs", "overrides"}
        assert data["overrides"] == {}
        for code, entry in data["certs"].items():
            assert len(code) == 2 and code.isupper()
            assert entry["name"] and entry["email"]
            assert entry["confidence"] in ("high", "medium", "low")

    def test_norway_is_not_a_boolean(self) -> None:
        """The key NO is read as Norway, not as YAML's false."""
        cert = ContactRegistry.load().national_cert("NO")
        assert cert is not None and cert.address == "norcert@cert.no"


class TestMerge:
    def test_user_entry_wins(self, tmp_path: Path) -> None:
        """A user's entry for a country replaces the shipped one; other countries stay."""
        path = write(
            tmp_path, "certs:\n  IN: {name: Own desk, email: cert-desk@mail.example.org}\n"
        )
        registry = ContactRegistry.load(path)
        cert = registry.national_cert("IN")
        assert cert is not None and cert.address == "cert-desk@mail.example.org"
        assert cert.name == "Own desk"
        assert "mine.yaml" in cert.provenance[0]
        at = registry.national_cert("AT")
        assert at is not None and at.address == "reports@cert.at"

    def test_user_file_extends(self, tmp_path: Path) -> None:
        """A user's file adds countries and overrides to the shipped registry."""
        path = write(
            tmp_path,
            "certs:\n  AQ: {name: Station desk, email: cert@aq.example.org}\n"
            "overrides:\n  AS15169: {name: NOC, email: noc@mail.example.org}\n",
        )
        registry = ContactRegistry.load(path)
        assert set(registry.certs) == set(ContactRegistry.load().certs) | {"AQ"}
        assert set(registry.overrides) == {"AS15169"}

    def test_empty_user_file_name_means_shipped_only(self) -> None:
        """An empty `file` setting loads only the shipped registry."""
        shipped = parse_contacts(shipped_path("contacts.yaml").read_text("utf-8"))[0]
        assert set(ContactRegistry.load("").certs) == set(shipped)

    def test_missing_user_file_is_config_error(self, tmp_path: Path) -> None:
        """A configured contacts file that does not exist stops the run with ConfigError."""
        with pytest.raises(ConfigError, match="not found"):
            ContactRegistry.load(tmp_path / "absent.yaml")

    def test_bad_user_file_is_one_line_with_line_number(self, tmp_path: Path) -> None:
        """Loading a bad user file raises ConfigError "FILE:LINE: message" on one line."""
        path = write(tmp_path, "certs:\n  IN: {email: ok@cert.example.org}\n  FR: {email: nope}\n")
        with pytest.raises(ConfigError) as info:
            ContactRegistry.load(path)
        message = str(info.value)
        assert message.startswith(f"{path}:3: ")
        assert "nope" in message and "\n" not in message

    def test_several_problems_are_counted(self, tmp_path: Path) -> None:
        """The ConfigError names the first problem and says how many more there are."""
        path = write(tmp_path, "certs:\n  FR: {email: nope}\n  DE: {email: nope}\n")
        with pytest.raises(ConfigError, match=r":2: .*1 more"):
            ContactRegistry.load(path)

    def test_from_settings_uses_contacts_file(self, tmp_path: Path) -> None:
        """from_settings loads the file named by [contacts] file."""
        from notifier.config import Settings

        path = write(tmp_path, "certs:\n  IN: {email: own@cert.example.org}\n")
        settings = Settings.from_mapping({"contacts": {"file": str(path)}})
        cert = ContactRegistry.from_settings(settings).national_cert("IN")
        assert cert is not None and cert.address == "own@cert.example.org"


class TestValidation:
    @pytest.mark.parametrize(
        ("text", "line", "column", "fragment"),
        [
            ("certs:\n  IN: {email: not-an-address}\n", 2, 15, "not a usable e-mail address"),
            (
                'certs:\n  IN:\n    email: "a@cert.example.org\\r\\nBcc: x@evil.example"\n',
                3,
                12,
                "usable",
            ),
            ("certs:\n  IN:\n    email: [ok@cert.example.org, 'bad address']\n", 3, 34, "usable"),
            ("overrides:\n  10.0.0.300/24: {email: a@b.example}\n", 2, 3, "not a network"),
            ("overrides:\n  62.239.237.1/24: {email: a@b.example}\n", 2, 3, "62.239.237.0/24"),
            ("overrides:\n  AS99999999999: {email: a@b.example}\n", 2, 3, "AS number out of range"),
            ("overrides:\n  AS-15169: {email: a@b.example}\n", 2, 3, "AS<number>"),
            ("overrides:\n  localhost: {email: a@b.example}\n", 2, 3, "domain name"),
            ("certs:\n  IND: {email: a@b.example}\n", 2, 3, "two-letter"),
            ("certs:\n  I1: {email: a@b.example}\n", 2, 3, "two-letter"),
            ("certs: {}\nnational: {}\n", 2, 1, "unknown section 'national'"),
            ("certs:\n  IN: incident@cert-in.org.in\n", 2, 7, "must be a mapping"),
            ("certs:\n  IN: [incident@cert-in.org.in]\n", 2, 7, "must be a mapping"),
            ("- certs\n", 1, 1, "must be a mapping"),
            ("certs: [IN]\n", 1, 8, "certs must be a mapping"),
            ("certs:\n  IN: {name: CERT-In}\n", 2, 7, "no email"),
            ("certs:\n  IN: {email: a@b.example, confidence: sure}\n", 2, 7, "confidence"),
            ("certs:\n  IN: {email: a@b.example}\n  IN: {email: c@d.example}\n", 3, 3, "duplicate"),
            ("certs:\n  IN: {email: a@b.example, email: c@d.example}\n", 2, 28, "duplicate"),
            (
                "overrides:\n  example.org: {email: a@b.example}\n"
                "  Example.ORG.: {email: a@b.example}\n",
                3,
                3,
                "",
            ),
            (
                "overrides:\n  10.0.0.1: {email: a@b.example}\n"
                "  10.0.0.1/32: {email: a@b.example}\n",
                3,
                3,
                "same as line 2",
            ),
            ("certs:\n  IN: {email: a@b.example\n", 3, 1, "not valid YAML"),
            (
                "certs:\n  IN:\n    email: [a@b.example]\n    name: {x: 1}\n",
                4,
                11,
                "name must be text",
            ),
        ],
    )
    def test_problem_is_reported_at_its_line(
        self, text: str, line: int, column: int, fragment: str
    ) -> None:
        """Each kind of bad entry is reported with the line and column where it is."""
        problems = problems_of(text)
        assert problems, text
        first = problems[0]
        assert (first.line, first.column) == (line, column), problems
        assert fragment in first.message

    def test_check_file_names_every_problem(self, tmp_path: Path) -> None:
        """check_file returns one problem per bad entry, in file order."""
        path = write(
            tmp_path,
            "certs:\n  IN: {email: bad}\n  XYZ: {email: a@b.example}\n"
            "overrides:\n  AS-1: {email: a@b.example}\nextra: 1\n",
        )
        assert [p.line for p in check_file(path)] == [2, 3, 5, 6]

    def test_interface_example_is_valid(self) -> None:
        """The example from the interface documentation loads, documentation mailboxes included."""
        text = (
            "certs:\n"
            '  IN: {name: "CERT-In", email: "incident@cert-in.org.in"}\n'
            "overrides:\n"
            '  "198.51.100.0/24": {name: "Example SOC", email: "soc@example.com"}\n'
            '  "AS64500": {name: "Example NOC", email: "noc@example.net"}\n'
            '  "example.org": {name: "Example Security", email: "security@example.org"}\n'
        )
        certs, overrides, problems = parse_contacts(text)
        assert problems == []
        assert set(certs) == {"IN"}
        assert set(overrides) == {"198.51.100.0/24", "AS64500", "example.org"}

    def test_keys_are_normalised(self) -> None:
        """Country codes, AS numbers, networks and domains are stored in one canonical form."""
        certs, overrides, problems = parse_contacts(
            "certs:\n  in: {email: a@b.example}\n"
            "overrides:\n  as64500: {email: a@b.example}\n  2001:DB8::/32: {email: a@b.example}\n"
            "  10.1.2.3: {email: a@b.example}\n  Bücher.Example.: {email: a@b.example}\n"
        )
        assert problems == []
        assert set(certs) == {"IN"}
        assert set(overrides) == {
            "AS64500",
            "2001:db8::/32",
            "10.1.2.3/32",
            "xn--bcher-kva.example",
        }

    def test_survey_spelling_and_extra_keys_are_accepted(self) -> None:
        """`checked`, `sources`, `also`, `languages` and unknown keys do not fail a file."""
        certs, _, problems = parse_contacts(
            "certs:\n  AT:\n    email: reports@cert.at\n    checked: 2024-06-06\n"
            "    sources: [page]\n    also: [team@cert.at]\n    languages: [de, en]\n    note:\n"
        )
        assert problems == []
        entry = certs["AT"]
        assert entry.checked == "2024-06-06" and entry.sources == ("page",)
        assert entry.also == ("team@cert.at",) and entry.languages == ("de", "en")

    def test_older_spellings_are_accepted(self) -> None:
        """`source`, `updated` and `language` read as `sources`, `published` and `languages`."""
        certs, _, problems = parse_contacts(
            "certs:\n  AT:\n    email: reports@cert.at\n    source: page\n"
            "    updated: undated\n    language: DE\n"
        )
        assert problems == []
        entry = certs["AT"]
        assert (entry.sources, entry.published, entry.languages) == (("page",), "undated", ("de",))

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("checked", "yesterday", "checked must be a date"),
            ("checked", "2024-13-01", "checked must be a date"),
            ("checked", "undated", "checked must be a date"),
            ("published", "June 2024", "published must be a date or undated"),
            ("languages", "[en, 'x y']", "not a language tag: 'x y'"),
            ("languages", "[{a: b}]", "languages must be text or a list of text"),
            ("part_of", "France", "part_of must be a country code"),
        ],
    )
    def test_bad_dates_and_languages_are_reported(
        self, field: str, value: str, message: str
    ) -> None:
        """A date that is not one, or a language that is not a tag, is a problem at its entry."""
        problems = problems_of(f"certs:\n  AT:\n    email: reports@cert.at\n    {field}: {value}\n")
        assert len(problems) == 1 and message in problems[0].message, problems
        assert problems[0].line == 4

    @pytest.mark.parametrize("value", ["2024", "2024-06", "2024-06-06", "undated"])
    def test_published_may_be_as_precise_as_the_source(self, value: str) -> None:
        """A source dated only by year or month, or not at all, is recorded as it is."""
        certs, _, problems = parse_contacts(
            f"certs:\n  AT:\n    email: reports@cert.at\n    published: {value}\n"
        )
        assert problems == [] and certs["AT"].published == value

    def test_empty_file_is_valid(self) -> None:
        """An empty file or empty sections have nothing wrong with them."""
        assert problems_of("") == []
        assert problems_of("# nothing yet\n") == []
        assert problems_of("certs:\noverrides:\n") == []

    def test_unreadable_files_are_config_errors(self, tmp_path: Path) -> None:
        """A file that is not UTF-8, or too large, is refused as a whole."""
        latin = tmp_path / "latin.yaml"
        latin.write_bytes("certs:\n  IN: {name: Café, email: a@b.example}\n".encode("latin-1"))
        with pytest.raises(ConfigError, match="UTF-8"):
            check_file(latin)
        huge = tmp_path / "huge.yaml"
        huge.write_bytes(b"#" * 4_000_001)
        with pytest.raises(ConfigError, match="larger"):
            check_file(huge)

    def test_alias_bomb_is_bounded(self) -> None:
        """A file that expands through aliases is stopped by a node budget, not walked forever."""
        addresses = "[" + ", ".join(["*m"] * 1000) + "]"
        entries = "\n".join(f"  host{i}.example.org: {{email: *list}}" for i in range(1, 250))
        text = f"certs:\n  IN: {{email: &m a@b.example}}\n  FR: {{email: &list {addresses}}}\n"
        problems = problems_of(f"{text}overrides:\n{entries}\n")
        assert any("too many" in p.message for p in problems)

    def test_control_characters_in_names_are_neutralised(self) -> None:
        """A name with CR/LF cannot reach a header: control characters become spaces."""
        certs, _, problems = parse_contacts(
            'certs:\n  IN: {name: "A\\r\\nBcc: x", email: a@b.example}\n'
        )
        assert problems == []
        assert certs["IN"].name == "A Bcc: x"


class TestNationalCert:
    def test_by_country(self) -> None:
        """A country's CERT comes back as a NATIONAL_CERT contact sourced from contacts.yaml."""
        cert = ContactRegistry.load().national_cert("IN")
        assert cert is not None
        assert cert.address == "incident@cert-in.org.in"
        assert cert.role is Role.NATIONAL_CERT
        assert cert.sources == ("contacts.yaml",)
        assert cert.provenance[0].startswith("national CERT for IN (CERT-In")
        assert "contacts.yaml" in cert.provenance[0]

    def test_provenance_has_the_checked_date(self) -> None:
        """The provenance names the day the entry was checked and the date of its source."""
        cert = ContactRegistry.load().national_cert("AT")
        assert cert is not None
        assert cert.provenance[0] == (
            "national CERT for AT (CERT.at (Computer Emergency Response Team Austria)), "
            "contacts.yaml, checked 2026-11-24, source dated 2024-06-06"
        )
        assert "working languages: de, en" in cert.provenance

    def test_provenance_names_the_state_of_a_territory(self) -> None:
        """A territory's CERT says which state's team it is."""
        cert = ContactRegistry.load().national_cert("RE")
        assert cert is not None and cert.address == "cert-fr.cossi@ssi.gouv.fr"
        assert "RE is served by the national CERT of FR" in cert.provenance
        assert cert.confidence == 0.6

    def test_provenance_says_when_the_source_is_undated(self) -> None:
        """An undated source is named as such, never shown as a date."""
        cert = ContactRegistry.load().national_cert("BE")
        assert cert is not None and cert.provenance[0].endswith(
            "checked 2026-11-24, source undated"
        )

    @pytest.mark.parametrize(("country", "confidence"), [("AT", 0.8), ("BA", 0.6), ("AM", 0.4)])
    def test_confidence_follows_the_entry(self, country: str, confidence: float) -> None:
        """high, medium and low entries give confidence 0.8, 0.6 and 0.4."""
        cert = ContactRegistry.load().national_cert(country)
        assert cert is not None and cert.confidence == confidence

    def test_country_is_case_insensitive(self) -> None:
        """A lower-case country code finds the same CERT."""
        cert = ContactRegistry.load().national_cert(" in ")
        assert cert is not None and cert.address == "incident@cert-in.org.in"

    @pytest.mark.parametrize("country", ["XX", "", "EU1", "India"])
    def test_unknown_country_is_none(self, country: str) -> None:
        """No entry, or no ISO code, means no national CERT."""
        assert ContactRegistry.load().national_cert(country) is None

    def test_list_of_addresses(self, tmp_path: Path) -> None:
        """A CERT with several addresses yields all of them, the first as primary."""
        path = write(
            tmp_path, "certs:\n  IN: {email: [one@cert.example.org, two@cert.example.org]}\n"
        )
        registry = ContactRegistry.load(path)
        found = registry.national_cert_contacts("IN")
        assert [c.address for c in found] == ["one@cert.example.org", "two@cert.example.org"]
        primary = registry.national_cert("IN")
        assert primary is not None and primary.address == "one@cert.example.org"
        assert primary.confidence == 0.8  # no confidence given: the operator vouches for it


OVERRIDES = """\
overrides:
  "62.239.0.0/16": {name: Wide, email: wide@noc.example.org}
  "62.239.237.0/24": {name: Narrow, email: narrow@noc.example.org}
  "2001:4860::/32": {name: Six, email: six@noc.example.org}
  AS15169: {name: ASN, email: [asn@noc.example.org, wide@noc.example.org]}
  example.org: {name: Org, email: org@sec.example.org}
  shop.example.org: {name: Shop, email: shop@sec.example.org}
"""


@pytest.fixture
def registry(tmp_path: Path) -> ContactRegistry:
    return ContactRegistry.load(write(tmp_path, OVERRIDES))


class TestOverrides:
    def test_longest_network_match_wins(self, registry: ContactRegistry) -> None:
        """Of two networks holding the address only the most specific one is used."""
        found = registry.overrides_for("62.239.237.1")
        assert [c.address for c in found] == ["narrow@noc.example.org"]
        assert found[0].role is Role.OVERRIDE
        assert found[0].confidence == 1.0
        assert found[0].sources == ("contacts.yaml",)
        assert found[0].provenance[0] == "operator override for 62.239.237.0/24 (Narrow), mine.yaml"

    def test_wider_network_when_narrow_does_not_hold(self, registry: ContactRegistry) -> None:
        """An address outside the /24 but inside the /16 gets the /16's contact."""
        found = registry.overrides_for(ipaddress.ip_address("62.239.1.1"))
        assert [c.address for c in found] == ["wide@noc.example.org"]

    def test_ipv6_network(self, registry: ContactRegistry) -> None:
        """IPv6 networks match IPv6 addresses only."""
        assert [c.address for c in registry.overrides_for("2001:4860:4860::8888")] == [
            "six@noc.example.org"
        ]
        assert registry.overrides_for("74.125.225.229") == []

    def test_asn_exact(self, registry: ContactRegistry) -> None:
        """An AS number matches its override exactly, every address of it."""
        assert [c.address for c in registry.overrides_for(asn=15169)] == [
            "asn@noc.example.org",
            "wide@noc.example.org",
        ]
        assert registry.overrides_for(asn=15170) == []

    def test_domain_exact_and_parent(self, registry: ContactRegistry) -> None:
        """A domain matches itself and its subdomains; the closest listed parent wins."""
        assert [c.address for c in registry.overrides_for(domains=["example.org"])] == [
            "org@sec.example.org"
        ]
        assert [c.address for c in registry.overrides_for(domains=["db.example.org."])] == [
            "org@sec.example.org"
        ]
        assert [c.address for c in registry.overrides_for(domains=["a.shop.example.org"])] == [
            "shop@sec.example.org"
        ]

    def test_lookalike_domains_do_not_match(self, registry: ContactRegistry) -> None:
        """A name that merely ends with the same text, or contains it, is not a subdomain."""
        assert registry.overrides_for(domains=["notexample.org", "example.org.evil.example"]) == []
        assert registry.overrides_for(domains=["not a name", "", "62.239.237.1"]) == []

    def test_matches_are_combined_once_per_address(self, registry: ContactRegistry) -> None:
        """Network, ASN and domain matches are joined; an address found twice appears once."""
        found = registry.overrides_for("62.239.1.1", 15169, ["db.example.org"])
        assert [c.address for c in found] == [
            "wide@noc.example.org",
            "asn@noc.example.org",
            "org@sec.example.org",
        ]
        assert len([p for p in found[0].provenance if p.startswith("operator override")]) == 2

    def test_mode_replace_is_the_default_and_add_is_kept(self, tmp_path: Path) -> None:
        """An override replaces in its scope unless its entry says ``mode: add``."""
        text = (
            "overrides:\n"
            '  "62.239.0.0/16": {email: "soc@noc.example.org"}\n'
            '  "example.org": {email: "sec@example.org", mode: add}\n'
        )
        registry = ContactRegistry.load(write(tmp_path, text))
        net = registry.overrides["62.239.0.0/16"]
        dom = registry.overrides["example.org"]
        assert (net.mode, net.network_scope) == ("replace", True)
        assert (dom.mode, dom.network_scope) == ("add", False)
        assert (
            "replaces the automatic network contacts"
            in registry.overrides_for("62.239.1.1")[0].provenance
        )

    def test_bad_mode_is_a_problem(self, tmp_path: Path) -> None:
        """A mode other than replace or add is refused with its line."""
        problems = check_file(
            write(tmp_path, 'overrides:\n  "AS1": {email: "a@b.example", mode: merge}\n')
        )
        assert any("mode must be replace or add" in str(p) for p in problems)

    def test_nothing_for_unrelated_target(self, registry: ContactRegistry) -> None:
        """An address, AS number and domain with no override give nothing."""
        assert registry.overrides_for("196.11.240.215", 36924, ["example.net"]) == []
        assert registry.overrides_for("not an address") == []


def _bootstrap(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((BOOTSTRAP / name).read_text(encoding="utf-8"))
    return data


def _longest_prefix(name: str, address: str) -> str | None:
    target = ipaddress.ip_address(address)
    best: tuple[int, str] | None = None
    services = _bootstrap(name)["services"]
    assert isinstance(services, list)
    for prefixes, urls in services:
        for prefix in prefixes:
            network = ipaddress.ip_network(prefix)
            if target in network and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, urls[0])
    return best[1] if best else None


class TestShippedBootstrap:
    @pytest.mark.parametrize("name", ["ipv4.json", "ipv6.json", "asn.json", "dns.json"])
    def test_is_rfc9224_shaped(self, name: str) -> None:
        """Each registry has version 1.0, a publication time and [[entries], [URLs]] services."""
        data = _bootstrap(name)
        assert data["version"] == "1.0"
        assert isinstance(data["publication"], str)
        datetime.fromisoformat(data["publication"].replace("Z", "+00:00"))
        services = data["services"]
        assert isinstance(services, list) and services
        for entries, urls in services:
            assert entries and all(isinstance(e, str) and e for e in entries)
            assert urls and all(url.startswith(("https://", "http://")) for url in urls)
            assert all(url.endswith("/") for url in urls)
            if name != "dns.json":  # a few ccTLD registries publish plain HTTP only
                assert urls[0].startswith("https://")

    @pytest.mark.parametrize(
        ("address", "registry"),
        [
            ("62.239.237.1", "https://rdap.db.ripe.net/"),
            ("74.125.225.229", "https://rdap.arin.net/registry/"),
            ("200.57.141.161", "https://rdap.lacnic.net/rdap/"),
            ("196.11.240.215", "https://rdap.afrinic.net/rdap/"),
            ("210.107.73.73", "https://rdap.apnic.net/"),
        ],
    )
    def test_ipv4_longest_prefix(self, address: str, registry: str) -> None:
        """Addresses of each RIR map to that RIR's RDAP service."""
        assert _longest_prefix("ipv4.json", address) == registry

    @pytest.mark.parametrize(
        ("address", "registry"),
        [
            ("2001:4860:4860::8888", "https://rdap.arin.net/registry/"),
            ("2a00:1450:4001::1", "https://rdap.db.ripe.net/"),
            ("2001:df0::1", "https://rdap.apnic.net/"),
        ],
    )
    def test_ipv6_longest_prefix(self, address: str, registry: str) -> None:
        """IPv6 addresses map to their RIR too."""
        assert _longest_prefix("ipv6.json", address) == registry

    def test_unallocated_space_has_no_service(self) -> None:
        """Private space is in no registry."""
        assert _longest_prefix("ipv4.json", "10.1.2.3") is None

    def test_asn_ranges(self) -> None:
        """AS numbers fall in exactly one range: 15169 at ARIN, 3333 at RIPE, 36924 at AFRINIC."""
        services = _bootstrap("asn.json")["services"]
        assert isinstance(services, list)

        def owner(asn: int) -> list[str]:
            hits = []
            for ranges, urls in services:
                for item in ranges:
                    low, _, high = item.partition("-")
                    if int(low) <= asn <= int(high or low):
                        hits.append(urls[0])
            return hits

        assert owner(15169) == ["https://rdap.arin.net/registry/"]
        assert owner(3333) == ["https://rdap.db.ripe.net/"]
        assert owner(36924) == ["https://rdap.afrinic.net/rdap/"]

    def test_dns_registry(self) -> None:
        """Each TLD appears once, lower-case; com goes to Verisign, uk to Nominet."""
        services = _bootstrap("dns.json")["services"]
        assert isinstance(services, list)
        seen: dict[str, str] = {}
        for tlds, urls in services:
            for tld in tlds:
                assert tld == tld.lower() and tld not in seen
                seen[tld] = urls[0]
        assert seen["com"] == "https://rdap.verisign.com/com/v1/"
        assert seen["uk"] == "https://rdap.nominet.uk/uk/"
        assert len(seen) > 1000

    def test_source_record_matches_the_files(self) -> None:
        """SOURCE.md records the digest of each file exactly as shipped."""
        record = (BOOTSTRAP / "SOURCE.md").read_text(encoding="utf-8")
        for name in ("ipv4.json", "ipv6.json", "asn.json", "dns.json"):
            digest = hashlib.sha256((BOOTSTRAP / name).read_bytes()).hexdigest()
            assert f"`{name}`" in record and digest in record, name
