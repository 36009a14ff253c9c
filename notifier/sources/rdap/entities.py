"""The entities of an RDAP answer (RFC 9083 §5.1): the tree walked at every depth, bounded, and
each entity's jCard (name, e-mails by preference, postal address) read into a flat record.

Registries publish the abuse desk in different places (a nested POC at ARIN, a top-level role
object at RIPE, an ``IRT`` object at APNIC), so the walk does not assume a depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...addresses import clean_address, header_text, is_placeholder
from ...models import Contact, Role

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTITIES",
    "Entity",
    "contacts_from_entities",
    "short_text",
    "walk_entities",
]

MAX_DEPTH = 16  # entity nesting we follow; real registries use three levels at most
MAX_ENTITIES = 500  # entities examined per answer, whatever the nesting
_MAX_EMAILS_PER_ENTITY = 20


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of an RDAP answer, flattened out of the tree."""

    handle: str
    roles: frozenset[str]
    fn: str
    emails: tuple[str, ...]  # raw jCard values, most preferred first
    depth: int
    ancestor_roles: frozenset[str] = frozenset()
    has_vcard: bool = False
    self_link: str = ""
    raw_fn: str = ""
    postal: tuple[str, ...] = ()  # the jCard ``adr``, as printable lines (cleaned)


def short_text(value: object, limit: int = 200) -> str:
    return header_text(value, limit) if isinstance(value, str) else ""


def _pref(params: object) -> int:
    """jCard ``pref`` (1 most preferred .. 100); absent or junk sorts last."""
    value = params.get("pref") if isinstance(params, dict) else None
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 1 <= value <= 100 else 100
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if 1 <= number <= 100 else 100
    return 101


def _vcard(entity: Mapping[str, Any]) -> tuple[str, tuple[str, ...], bool]:
    """(fn, emails by pref, whether a jCard was there at all)."""
    vcard = entity.get("vcardArray")
    if not (isinstance(vcard, list) and len(vcard) >= 2 and isinstance(vcard[1], list)):
        return "", (), False
    fn = ""
    emails: list[tuple[int, int, str]] = []
    for position, prop in enumerate(vcard[1][:500]):
        if not (isinstance(prop, list) and len(prop) >= 4 and isinstance(prop[0], str)):
            continue
        name = prop[0].lower()
        if name == "fn" and not fn and isinstance(prop[3], str):
            fn = prop[3]
        elif name == "email" and len(emails) < _MAX_EMAILS_PER_ENTITY:
            pref = _pref(prop[1])
            for value in prop[3:]:
                if isinstance(value, str):
                    emails.append((pref, position, value))
    emails.sort(key=lambda item: (item[0], item[1]))
    return fn, tuple(value for _, _, value in emails), True


def _postal(entity: Mapping[str, Any]) -> tuple[str, ...]:
    """The first jCard ``adr`` (RFC 7095 §3.3.1.3) as address lines, each cleaned of controls.

    The ``label`` parameter is the address as printed when the registry gives one; otherwise the
    structured parts: street lines, "postcode locality", region, country.
    """
    vcard = entity.get("vcardArray")
    if not (isinstance(vcard, list) and len(vcard) >= 2 and isinstance(vcard[1], list)):
        return ()
    for prop in vcard[1][:500]:
        if not (isinstance(prop, list) and len(prop) >= 4 and prop[0] == "adr"):
            continue
        params = prop[1] if isinstance(prop[1], dict) else {}
        label = params.get("label")
        if isinstance(label, str) and label.strip():
            lines = label.splitlines()
        elif isinstance(prop[3], list):
            parts = [p if isinstance(p, list) else [p] for p in prop[3][:7]]
            parts += [[] for _ in range(7 - len(parts))]
            text = [[str(x) for x in part if isinstance(x, str | int)] for part in parts]
            lines = [*text[1], *text[2], " ".join([*text[5], *text[3]]), *text[4], *text[6]]
        else:
            continue
        cleaned = [short_text(line, 100) for line in lines[:8]]
        return tuple(line for line in cleaned if line)
    return ()


def _self_link(obj: Mapping[str, Any]) -> str:
    links = obj.get("links")
    if isinstance(links, list):
        for link in links[:50]:
            if isinstance(link, dict) and link.get("rel") == "self":
                href = link.get("href")
                if isinstance(href, str) and href.startswith(("https://", "http://")):
                    return href
    return ""


def walk_entities(
    data: Mapping[str, Any],
    *,
    resolved: Mapping[str, Mapping[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> list[Entity]:
    """Every entity of ``data`` at any depth up to ``MAX_DEPTH``, in document order.

    ``resolved`` supplies full entity objects (``entity/<handle>`` answers) for entities the
    answer only abbreviated.
    """
    found: list[Entity] = []
    cut = False

    def visit(entities: object, depth: int, above: frozenset[str]) -> None:
        nonlocal cut
        if not isinstance(entities, list):
            return
        if depth > MAX_DEPTH:
            cut = True
            return
        for item in entities:
            if len(found) >= MAX_ENTITIES:
                cut = True
                return
            if not isinstance(item, dict):
                continue
            raw_handle = item.get("handle")
            handle = raw_handle if isinstance(raw_handle, str) else ""
            raw_roles = item.get("roles")
            roles = frozenset(
                r.strip().lower()
                for r in (raw_roles if isinstance(raw_roles, list) else [])[:20]
                if isinstance(r, str)
            )
            source: Mapping[str, Any] = item
            if "vcardArray" not in item and resolved and handle in resolved:
                source = resolved[handle]
            fn, emails, has_vcard = _vcard(source)
            found.append(
                Entity(
                    handle=short_text(handle, 100),
                    roles=roles,
                    fn=short_text(fn),
                    emails=emails,
                    depth=depth,
                    ancestor_roles=above,
                    has_vcard=has_vcard,
                    self_link=_self_link(item),
                    raw_fn=fn,
                    postal=_postal(source),
                )
            )
            visit(item.get("entities"), depth + 1, above | roles)

    visit(data.get("entities"), 1, frozenset())
    if cut and notes is not None:
        notes.append(
            f"entity tree cut at {MAX_DEPTH} levels / {MAX_ENTITIES} entities; deeper ones ignored"
        )
    return found


def _refusal_note(raw: str, where: str) -> str:
    if any(ch in raw for ch in "\r\n\x00") or any(ord(ch) < 32 for ch in raw):
        return f"dropped an e-mail value with control characters (header injection?) in {where}"
    if is_placeholder(raw.strip()):
        return f"dropped placeholder address {header_text(raw, 80)!r} in {where}"
    return f"dropped invalid e-mail value {header_text(raw, 80)!r} in {where}"


def contacts_from_entities(
    entities: Iterable[Entity],
    *,
    role: Role,
    confidence: float,
    source: str,
    describe: str,
    notes: list[str],
) -> list[Contact]:
    """Clean each e-mail of ``entities`` into a Contact; refusals become notes. Deduplicated."""
    merged: dict[str, Contact] = {}
    for entity in entities:
        where = f"entity {entity.handle or '(no handle)'}"
        for raw in entity.emails:
            address = clean_address(raw)
            if address is None:
                notes.append(_refusal_note(raw, where))
                continue
            contact = Contact(
                address=address,
                role=role,
                sources=(source,),
                confidence=confidence,
                provenance=(f"{describe}, {where}",),
                name=entity.fn,
            )
            merged[address] = merged[address].merged(contact) if address in merged else contact
    return list(merged.values())
