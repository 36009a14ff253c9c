"""Reading and validating one contacts file, with the line and column of every problem.

The file is read as a YAML node tree rather than constructed, so every key and value is the text
that was written: ``NO`` stays Norway (not the YAML 1.1 boolean) and ``2024-06-06`` stays a string.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from ..addresses import PLACEHOLDER_ADDRESSES, clean_address, header_text
from ..errors import ConfigError
from .entry import (
    CONFIDENCE,
    OVERRIDE_MODES,
    SOURCE,
    UNDATED,
    Entry,
    Problem,
    country_code,
    override_key,
)

__all__ = ["check_file", "load_file", "parse_contacts"]

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
_LIST_FIELDS = ("sources", "also", "languages")
_ALIASES = {"source": "sources", "updated": "published", "language": "languages"}
# a date as precise as the source gives it: 2024, 2024-06 or 2024-06-06
_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?\Z")
# a BCP 47 language tag, as security.txt's Preferred-Languages uses them: en, de, pt-BR, sr-Latn
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")
_NULL_TAG = "tag:yaml.org,2002:null"


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


def _scalars(
    node: yaml.Node, wrong: str, budget: _Budget, problems: list[Problem]
) -> Iterator[tuple[yaml.Node, str]]:
    """Each (node, text) of a scalar or a list of scalars; anything else is the ``wrong``
    problem."""
    items = list(node.value) if isinstance(node, yaml.SequenceNode) else [node]
    for item in items:
        budget.spend()
        text = _text(item)
        if text is None:
            problems.append(_at(item, wrong))
        else:
            yield item, text


def _addresses(
    node: yaml.Node, key: str, budget: _Budget, problems: list[Problem]
) -> tuple[str, ...]:
    if isinstance(node, yaml.SequenceNode) and not node.value:
        problems.append(_at(node, f"{key}: email list is empty"))
    found: list[str] = []
    wrong = f"{key}: email must be an address or a list of addresses"
    for item, raw in _scalars(node, wrong, budget, problems):
        node_id = id(item)
        if node_id not in budget.checked:
            budget.checked[node_id] = _address(raw)
        address = budget.checked[node_id]
        if address is None:
            problems.append(_at(item, f"{key}: not a usable e-mail address: {_shown(raw)}"))
        elif address not in found:
            found.append(address)
    return tuple(found)


def _strings(
    node: yaml.Node, key: str, field: str, budget: _Budget, problems: list[Problem]
) -> tuple[str, ...]:
    wrong = f"{key}: {field} must be text or a list of text"
    return tuple(
        header_text(value, limit=500) for _, value in _scalars(node, wrong, budget, problems)
    )


def _languages(
    node: yaml.Node, key: str, budget: _Budget, problems: list[Problem]
) -> tuple[str, ...]:
    """Language tags, lower-cased and each once, in the order written (first preferred)."""
    tags: list[str] = []
    wrong = f"{key}: languages must be text or a list of text"
    for item, value in _scalars(node, wrong, budget, problems):
        if not _LANGUAGE.match(value.strip()):
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
            if field == "part_of" and country_code(text.strip()) is None:
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
    if _DATE.match(text) or (field == "published" and text.lower() == UNDATED):
        return None
    if field == "checked":
        return f"checked must be a date (YYYY-MM-DD), not {_shown(text)}"
    return f"published must be a date or undated, not {_shown(text)}"


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
            normalise = country_code if section == "certs" else override_key
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


def load_file(path: Path, origin: str) -> tuple[dict[str, Entry], dict[str, Entry]]:
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
