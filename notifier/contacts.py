"""The contacts registry: national CERTs by country and operator overrides, from ``contacts.yaml``.

Two files feed it: the copy shipped with notifier (the national CERTs) and the user's own
(``[contacts] file``), which extends it; an entry the user names wins over the shipped one. Each
file is validated before use, and every problem carries the line and column it was found at::

    certs:
      IN: {name: "CERT-In", email: "incident@cert-in.org.in"}
    overrides:
      "198.51.100.0/24": {name: "Example SOC", email: "soc@example.com"}
      "AS64500": {name: "Example NOC", email: "noc@example.net"}
      "example.org": {name: "Example Security", email: "security@example.org"}

The file is read as a YAML node tree rather than constructed, so every key and value is the text
that was written: ``NO`` stays Norway (not the YAML 1.1 boolean) and ``2024-06-06`` stays a string.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from .addresses import PLACEHOLDER_ADDRESSES, clean_address, header_text
from .config import Settings, shipped_path
from .errors import ConfigError
from .models import Contact, IPAddress, Role

__all__ = [
    "ContactRegistry",
    "Entry",
    "Problem",
    "check_file",
    "parse_contacts",
    "CONFIDENCE",
    "SOURCE",
]

SOURCE = "contacts.yaml"  # the `sources` name every contact from this registry carries
CONFIDENCE = MappingProxyType({"high": 0.8, "medium": 0.6, "low": 0.4})
_DEFAULT_CONFIDENCE = "high"  # an entry without one was written by the operator, who vouches for it
_OVERRIDE_CONFIDENCE = 1.0

_MAX_FILE_BYTES = 4_000_000
_MAX_NODES = 200_000  # aliases can make a small file a huge tree; stop walking long before that
_SECTIONS = ("certs", "overrides")
_TEXT_FIELDS = (
    "name",
    "url",
    "confidence",
    "checked",
    "published",
    "part_of",
    "note",
    "encryption",
    "mode",
)
OVERRIDE_MODES = ("replace", "add")
_LIST_FIELDS = ("sources", "also", "languages")
_ALIASES = {"source": "sources", "updated": "published", "language": "languages"}
# a date as precise as the source gives it: 2024, 2024-06 or 2024-06-06
_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?\Z")
_UNDATED = "undated"  # `published`: the page that states the address carries no date
# a BCP 47 language tag, as security.txt's Preferred-Languages uses them: en, de, pt-BR, sr-Latn
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")
_COUNTRY = re.compile(r"^[A-Za-z]{2}\Z")
_ASN = re.compile(r"^AS(\d{1,10})\Z", re.IGNORECASE)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a contacts file, at a 1-based line and column (0 when unknown)."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One validated entry: a national CERT (``key`` is the country) or an override."""

    key: str  # ISO country code, network (CIDR), ``AS<number>`` or domain, normalised
    addresses: tuple[str, ...]
    name: str = ""
    url: str = ""
    confidence: str = ""
    checked: str = ""  # when the entry was last checked against its sources
    published: str = ""  # the date its newest source carries, or "undated"
    sources: tuple[str, ...] = ()
    also: tuple[str, ...] = ()  # other addresses or teams, each with its reason
    languages: tuple[str, ...] = ()  # the team's working languages, BCP 47 tags
    part_of: str = ""  # a territory served by the national CERT of this country (ISO code)
    note: str = ""
    encryption: str = ""  # the team's OpenPGP key: https URL or openpgp4fpr: fingerprint
    origin: str = SOURCE  # the file the entry came from, as shown in provenance
    line: int = 0
    # overrides: "replace" the automatic contacts in the entry's scope, or "add" to them
    mode: str = "replace"

    @property
    def network_scope(self) -> bool:
        """Whether this override speaks for a network (CIDR or AS number), not a domain."""
        return "/" in self.key or bool(_ASN.match(self.key))


class _TooLarge(Exception):
    pass


class _Budget:
    """Counts the nodes walked: an alias is walked again each time it is used."""

    def __init__(self) -> None:
        self.left = _MAX_NODES
        # an aliased scalar is one node seen many times: validate its address once
        self.checked: dict[int, str | None] = {}

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooLarge


def _at(node: yaml.Node, message: str) -> Problem:
    mark = node.start_mark
    return Problem(mark.line + 1, mark.column + 1, message)


def _text(node: yaml.Node) -> str | None:
    """The scalar's text as written, None for a non-scalar or an explicit null."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if (
        node.tag == _NULL_TAG
    ):  # only plain `~`, `null` or nothing resolve to null; quoted text does not
        return None
    return str(node.value)


def _shown(value: str, limit: int = 60) -> str:
    """``value`` quoted for a message, with control characters made visible."""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _pairs(
    node: yaml.MappingNode, budget: _Budget, problems: list[Problem], what: str
) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    """The mapping's (key text, key node, value node), reporting non-text and duplicate keys."""
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        budget.spend()
        key = _text(key_node)
        if key is None:
            problems.append(_at(key_node, f"{what}: keys must be plain text"))
            continue
        folded = key.strip().lower()
        if folded in seen:
            problems.append(
                _at(key_node, f"duplicate key {_shown(key)} (first at line {seen[folded]})")
            )
            continue
        seen[folded] = key_node.start_mark.line + 1
        yield key.strip(), key_node, value_node


_DOCUMENTATION_DOMAINS = frozenset({"example.com", "example.net", "example.org"})


def _address(raw: str) -> str | None:
    cleaned = clean_address(raw)
    address = raw.strip().lower()
    if (
        cleaned is None
        and address in PLACEHOLDER_ADDRESSES
        and address.rpartition("@")[2] in _DOCUMENTATION_DOMAINS
    ):
        # registries use documentation mailboxes (RFC 2606) as placeholders, so lookups refuse
        # them; in a file the operator wrote they are deliberate. A registry's withheld-contact
        # marker (removed@lacnic.net) is never a mailbox, wherever it is written.
        return address
    return cleaned


def _addresses(
    node: yaml.Node, key: str, budget: _Budget, problems: list[Problem]
) -> tuple[str, ...]:
    items: list[yaml.Node]
    if isinstance(node, yaml.SequenceNode):
        items = list(node.value)
        if not items:
            problems.append(_at(node, f"{key}: email list is empty"))
    else:
        items = [node]
    found: list[str] = []
    for item in items:
        budget.spend()
        raw = _text(item)
        if raw is None:
            problems.append(_at(item, f"{key}: email must be an address or a list of addresses"))
            continue
        node_id = id(item)
        if node_id not in budget.checked:
            budget.checked[node_id] = _address(raw)
        address = budget.checked[node_id]
        if address is None:
            problems.append(_at(item, f"{key}: not a usable e-mail address: {_shown(raw)}"))
            continue
        if address not in found:
            found.append(address)
    return tuple(found)


def _strings(
    node: yaml.Node, key: str, field: str, budget: _Budget, problems: list[Problem]
) -> tuple[str, ...]:
    items = list(node.value) if isinstance(node, yaml.SequenceNode) else [node]
    values: list[str] = []
    for item in items:
        budget.spend()
        value = _text(item)
        if value is None:
            problems.append(_at(item, f"{key}: {field} must be text or a list of text"))
            continue
        values.append(header_text(value, limit=500))
    return tuple(values)


def _languages(
    node: yaml.Node, key: str, budget: _Budget, problems: list[Problem]
) -> tuple[str, ...]:
    """Language tags, lower-cased and each once, in the order written (first preferred)."""
    items = list(node.value) if isinstance(node, yaml.SequenceNode) else [node]
    tags: list[str] = []
    for item in items:
        budget.spend()
        value = _text(item)
        if value is None:
            problems.append(_at(item, f"{key}: languages must be text or a list of text"))
        elif not _LANGUAGE.match(value.strip()):
            problems.append(_at(item, f"{key}: not a language tag: {_shown(value)} (e.g. en, de)"))
        elif value.strip().lower() not in tags:
            tags.append(value.strip().lower())
    return tuple(tags)


def _entry(
    key: str, node: yaml.Node, origin: str, budget: _Budget, problems: list[Problem]
) -> Entry | None:
    if not isinstance(node, yaml.MappingNode):
        problems.append(_at(node, f"{key}: entry must be a mapping with at least an email"))
        return None
    before = len(problems)
    addresses: tuple[str, ...] = ()
    has_email = False
    fields: dict[str, str] = {}
    lists: dict[str, tuple[str, ...]] = {}
    for field, _field_node, value in _pairs(node, budget, problems, key):
        field = _ALIASES.get(field.lower(), field.lower())
        if field == "email":
            has_email = True
            addresses = _addresses(value, key, budget, problems)
        elif field == "languages":
            lists[field] = _languages(value, key, budget, problems)
        elif field in _LIST_FIELDS:
            lists[field] = _strings(value, key, field, budget, problems)
        elif field in _TEXT_FIELDS:
            text = _text(value)
            if text is None and isinstance(value, yaml.ScalarNode):
                continue  # `note:` left empty
            if text is None:
                problems.append(_at(value, f"{key}: {field} must be text"))
                continue
            if field == "part_of" and _country(text.strip()) is None:
                problems.append(
                    _at(value, f"{key}: part_of must be a country code, not {_shown(text)}")
                )
                continue
            if field in ("checked", "published"):
                wrong = _date_problem(field, text.strip())
                if wrong:
                    problems.append(_at(value, f"{key}: {wrong}"))
                    continue
            fields[field] = header_text(text, limit=500)
        # other keys are the operator's own notes and kept out
    if not has_email:
        problems.append(_at(node, f"{key}: entry has no email"))
    confidence = fields.get("confidence", "").lower()
    if confidence and confidence not in CONFIDENCE:
        problems.append(
            _at(node, f"{key}: confidence must be high, medium or low, not {_shown(confidence)}")
        )
    mode = fields.get("mode", "replace").lower()
    if mode not in OVERRIDE_MODES:
        problems.append(_at(node, f"{key}: mode must be replace or add, not {_shown(mode)}"))
    if len(problems) > before or not addresses:
        return None
    return Entry(
        key=key,
        addresses=addresses,
        name=fields.get("name", ""),
        url=fields.get("url", ""),
        confidence=confidence,
        checked=fields.get("checked", ""),
        published=fields.get("published", ""),
        sources=lists.get("sources", ()),
        also=lists.get("also", ()),
        languages=lists.get("languages", ()),
        part_of=fields.get("part_of", "").strip().upper(),
        note=fields.get("note", ""),
        encryption=fields.get("encryption", ""),
        origin=origin,
        line=node.start_mark.line + 1,
        mode=mode,
    )


def _date_problem(field: str, text: str) -> str | None:
    if _DATE.match(text) or (field == "published" and text.lower() == _UNDATED):
        return None
    if field == "checked":
        return f"checked must be a date (YYYY-MM-DD), not {_shown(text)}"
    return f"published must be a date or undated, not {_shown(text)}"


def _country(raw: str) -> str | None:
    return raw.upper() if _COUNTRY.match(raw) else None


def _override_key(raw: str) -> str | None:
    """A network, ``AS<number>`` or domain key in its canonical form, or None."""
    match = _ASN.match(raw)
    if match:
        number = int(match.group(1))
        return f"AS{number}" if number <= 0xFFFFFFFF else None
    if "/" in raw or ":" in raw or raw.replace(".", "").isdigit():
        try:
            return str(ipaddress.ip_network(raw, strict=True))
        except ValueError:
            return None
    return _domain(raw)


def _domain(raw: str) -> str | None:
    value = raw.strip().rstrip(".")
    if not value or len(value) > 253:
        return None
    try:
        value = value.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = value.split(".")
    if len(labels) < 2 or labels[-1].isdigit() or not all(_LABEL.match(label) for label in labels):
        return None
    return value


def _override_problem(raw: str) -> str:
    if "/" in raw:
        try:
            network = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            return f"not a network: {_shown(raw)}"
        return f"{_shown(raw)} has host bits set (did you mean {network}?)"
    if raw[:2].lower() == "as" and raw[2:].isdigit():
        return f"AS number out of range: {_shown(raw)}"
    return f"override key must be a network (CIDR), AS<number> or domain name, not {_shown(raw)}"


def parse_contacts(
    text: str, origin: str = SOURCE
) -> tuple[dict[str, Entry], dict[str, Entry], list[Problem]]:
    """Validate a contacts file's text: (certs by country, overrides by key, problems)."""
    problems: list[Problem] = []
    certs: dict[str, Entry] = {}
    overrides: dict[str, Entry] = {}
    try:
        # the C loader when built: the shipped registry loads in milliseconds, not 0.1 s
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        reason = " ".join(str(exc.problem or exc.context or "syntax error").split())
        return certs, overrides, [Problem(line, column, f"not valid YAML: {reason}")]
    except yaml.YAMLError as exc:
        return certs, overrides, [Problem(0, 0, f"not valid YAML: {header_text(exc)}")]
    if root is None or (_text(root) is None and isinstance(root, yaml.ScalarNode)):
        return certs, overrides, problems
    if not isinstance(root, yaml.MappingNode):
        return (
            certs,
            overrides,
            [_at(root, "the file must be a mapping with certs and/or overrides")],
        )
    budget = _Budget()
    try:
        for section, key_node, body in _pairs(root, budget, problems, "top level"):
            if section not in _SECTIONS:
                problems.append(
                    _at(
                        key_node, f"unknown section {_shown(section)} (expected certs or overrides)"
                    )
                )
                continue
            if isinstance(body, yaml.ScalarNode) and _text(body) is None:
                continue  # `overrides:` with nothing under it
            if not isinstance(body, yaml.MappingNode):
                problems.append(_at(body, f"{section} must be a mapping"))
                continue
            target = certs if section == "certs" else overrides
            normalise = _country if section == "certs" else _override_key
            for raw, entry_key_node, value in _pairs(body, budget, problems, section):
                key = normalise(raw)
                if key is None:
                    message = (
                        f"country must be a two-letter ISO 3166 code, not {_shown(raw)}"
                        if section == "certs"
                        else _override_problem(raw)
                    )
                    problems.append(_at(entry_key_node, message))
                    continue
                if key in target:
                    problems.append(
                        _at(entry_key_node, f"{_shown(raw)} is the same as line {target[key].line}")
                    )
                    continue
                entry = _entry(key, value, origin, budget, problems)
                if entry is not None:
                    target[key] = entry
    except _TooLarge:
        problems.append(Problem(0, 0, f"too many entries (more than {_MAX_NODES} nodes)"))
    problems.sort(key=lambda p: (p.line, p.column))
    return certs, overrides, problems


def _read(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"contacts file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read contacts file {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigError(f"contacts file {path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"contacts file {path} is not UTF-8 (byte {exc.start})") from None


def check_file(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in the contacts file at ``path`` (empty when it is valid).

    Raises ``ConfigError`` when the file cannot be read at all.
    """
    file = Path(path)
    _, _, problems = parse_contacts(_read(file), origin=str(file))
    return problems


def _load(path: Path, origin: str) -> tuple[dict[str, Entry], dict[str, Entry]]:
    certs, overrides, problems = parse_contacts(_read(path), origin=origin)
    if problems:
        first = problems[0]
        more = (
            f" (and {len(problems) - 1} more; see `notify contacts check`)"
            if len(problems) > 1
            else ""
        )
        raise ConfigError(f"{path}:{first.line}: {first.message}{more}")
    return certs, overrides


def _parents(name: str) -> Iterator[str]:
    """``name`` and each parent domain that still has two labels, most specific first."""
    labels = name.split(".")
    for start in range(len(labels) - 1):
        yield ".".join(labels[start:])


class ContactRegistry:
    """National CERTs by country and operator overrides by network, ASN or domain."""

    def __init__(
        self, certs: Mapping[str, Entry] | None = None, overrides: Mapping[str, Entry] | None = None
    ) -> None:
        self._certs = dict(certs or {})
        self._overrides = dict(overrides or {})
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Entry]] = []
        for key, entry in self._overrides.items():
            if "/" in key:
                self._networks.append((ipaddress.ip_network(key), entry))
        # longest prefix first, so the first containing network is the most specific one
        self._networks.sort(key=lambda item: item[0].prefixlen, reverse=True)

    @classmethod
    def load(
        cls,
        user_file: str | os.PathLike[str] | None = None,
        *,
        shipped: str | os.PathLike[str] | None = None,
    ) -> ContactRegistry:
        """The shipped registry, extended by ``user_file`` when given (its entries win)."""
        shipped_file = Path(shipped) if shipped is not None else shipped_path("contacts.yaml")
        certs, overrides = _load(shipped_file, SOURCE)
        if user_file is not None and str(user_file) != "":
            user = Path(user_file)
            user_certs, user_overrides = _load(user, user.name)
            certs.update(user_certs)
            overrides.update(user_overrides)
        return cls(certs, overrides)

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactRegistry:
        return cls.load(settings.contacts.file or None)

    @property
    def certs(self) -> Mapping[str, Entry]:
        return MappingProxyType(self._certs)

    @property
    def overrides(self) -> Mapping[str, Entry]:
        return MappingProxyType(self._overrides)

    def national_cert_contacts(self, country: str) -> list[Contact]:
        """Every address of the national CERT of ``country`` (ISO code), primary first."""
        code = _country(country.strip())
        entry = self._certs.get(code) if code else None
        if entry is None:
            return []
        level = entry.confidence or _DEFAULT_CONFIDENCE
        team = f" ({entry.name})" if entry.name else ""
        when = f", checked {entry.checked}" if entry.checked else ""
        if entry.published.lower() == _UNDATED:
            when += ", source undated"
        elif entry.published:
            when += f", source dated {entry.published}"
        provenance = [f"national CERT for {entry.key}{team}, {entry.origin}{when}"]
        if entry.confidence:
            provenance.append(f"registry confidence: {entry.confidence}")
        if entry.part_of:
            provenance.append(f"{entry.key} is served by the national CERT of {entry.part_of}")
        if entry.languages:
            provenance.append(f"working languages: {', '.join(entry.languages)}")
        if entry.note:
            provenance.append(entry.note)
        return [
            Contact(
                address=address,
                role=Role.NATIONAL_CERT,
                sources=(SOURCE,),
                confidence=CONFIDENCE[level],
                provenance=tuple(provenance),
                name=entry.name,
                encryption=(entry.encryption,) if entry.encryption else (),
                languages=entry.languages,
            )
            for address in entry.addresses
        ]

    def national_cert(self, country: str) -> Contact | None:
        """The national CERT of ``country`` (ISO code), or None when the registry has none."""
        found = self.national_cert_contacts(country)
        return found[0] if found else None

    def overrides_for(
        self,
        ip: IPAddress | str | None = None,
        asn: int | None = None,
        domains: Iterable[str] = (),
    ) -> list[Contact]:
        """The operator's own contacts for this address, AS number or these domains."""
        return self.override_contacts(self.matching_overrides(ip, asn, domains))

    def matching_overrides(
        self,
        ip: IPAddress | str | None = None,
        asn: int | None = None,
        domains: Iterable[str] = (),
    ) -> list[Entry]:
        """The override entries for this address, AS number or these domains.

        Networks: the most specific containing network only. AS numbers: exact. Domains: the
        name itself or its closest listed parent (``example.org`` covers ``db.example.org``).
        """
        matched: list[Entry] = []
        target = _as_ip(ip)
        if target is not None:
            for network, entry in self._networks:
                if network.version == target.version and target in network:
                    matched.append(entry)
                    break
        if asn is not None:
            by_asn = self._overrides.get(f"AS{asn}")
            if by_asn is not None:
                matched.append(by_asn)
        for raw in domains:
            name = _domain(raw) if isinstance(raw, str) else None
            if name is None:
                continue
            for candidate in _parents(name):
                by_domain = self._overrides.get(candidate)
                if by_domain is not None:
                    if by_domain not in matched:
                        matched.append(by_domain)
                    break
        return matched

    @staticmethod
    def override_contacts(matched: Iterable[Entry]) -> list[Contact]:
        """The contacts the override entries name, one per address, provenance joined."""
        contacts: dict[str, Contact] = {}
        for entry in matched:
            team = f" ({entry.name})" if entry.name else ""
            provenance = [f"operator override for {entry.key}{team}, {entry.origin}"]
            replaced = "network" if entry.network_scope else "owner"
            if entry.mode == "replace":
                provenance.append(f"replaces the automatic {replaced} contacts")
            else:
                provenance.append(f"added to the automatic {replaced} contacts (mode: add)")
            if entry.note:
                provenance.append(entry.note)
            for address in entry.addresses:
                contact = Contact(
                    address=address,
                    role=Role.OVERRIDE,
                    sources=(SOURCE,),
                    confidence=_OVERRIDE_CONFIDENCE,
                    provenance=tuple(provenance),
                    name=entry.name,
                    encryption=(entry.encryption,) if entry.encryption else (),
                    languages=entry.languages,
                )
                contacts[address] = (
                    contacts[address].merged(contact) if address in contacts else contact
                )
        return list(contacts.values())


def _as_ip(value: IPAddress | str | None) -> IPAddress | None:
    if value is None or isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
