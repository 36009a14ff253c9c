"""RPSL (RIPE, AFRINIC, APNIC and the NIRs that mirror it): objects and referrals."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...addresses import clean_address
from .fields import _asn, _clip, _Contacts, _is_abuse_local, _network, _range_size
from .registries import (
    _MAX_VALUE,
    _NAMES,
    _NIRS,
    ABUSE_CONFIDENCE,
    FALLBACK_CONFIDENCE,
    IANA_SERVER,
    STATED_CONFIDENCE,
    Referral,
    WhoisRecord,
    _canonical,
    _label,
    registry_server,
)

__all__: list[str] = []  # internal: the package (sources.whois) is the surface

# --------------------------------------------------------------------------- RPSL objects


@dataclass(slots=True)
class _Object:
    attrs: list[tuple[str, str]]

    @property
    def kind(self) -> str:
        return self.attrs[0][0]

    @property
    def key(self) -> str:
        if self.kind in ("role", "person"):
            return self.get("nic-hdl") or self.attrs[0][1]
        return self.attrs[0][1]

    def get(self, name: str) -> str:
        for key, value in self.attrs:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.attrs if key == name]


_ATTR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]{0,40}):[ \t]*(.*)$")


def _objects(lines: Iterable[str]) -> tuple[list[_Object], list[str]]:
    """RPSL-style ``key: value`` objects separated by blank lines, and the ``%``/``#`` comments."""
    objects: list[_Object] = []
    comments: list[str] = []
    current: list[tuple[str, str]] = []

    def flush() -> None:
        if current:
            objects.append(_Object(list(current)))
            current.clear()

    for line in lines:
        if line.startswith(("%", "#")):
            comments.append(line)
            flush()
        elif not line.strip():
            flush()
        elif line[0] in " \t+" and current:
            key, value = current[-1]
            extra = line.strip().lstrip("+").strip()
            current[-1] = (key, f"{value} {extra}".strip()[:_MAX_VALUE])
        else:
            match = _ATTR.match(line)
            if match:
                value = re.sub(r"\s+#.*$", "", match.group(2)).strip()
                current.append((match.group(1).lower(), value[:_MAX_VALUE]))
    flush()
    return objects, comments


def _most_specific(objects: Sequence[_Object], kinds: tuple[str, ...]) -> _Object | None:
    best: _Object | None = None
    best_size: int | None = None
    for obj in objects:
        if obj.kind not in kinds:
            continue
        size = _range_size(obj.attrs[0][1])
        if size is None:
            continue
        if best_size is None or size <= best_size:
            best, best_size = obj, size
    return best


_TRANSFERRED = re.compile(r"Transferred to the (.{2,40}?) region", re.I)
_MIRRORED = re.compile(r"mirrored by APNIC from\s+([A-Za-z-]{2,10})", re.I)
_IANA_BLOCKS = ("NON-RIPE-NCC-MANAGED-ADDRESS-BLOCK", "IANA-BLK", "IANA-BLOCK", "IANA-NETBLOCK")


def _rpsl_referral(objects: Sequence[_Object], server: str, query: str) -> Referral | None:
    here = _canonical(server)
    for obj in objects:
        texts = obj.all("descr") + obj.all("remarks")
        stub = any(m.upper() == "APNIC-STUB" for m in obj.all("mnt-by"))
        for text in texts:
            match = _TRANSFERRED.search(text)
            if match is None:
                continue
            target = registry_server(match.group(1))
            if target and target != here:
                reason = f"{_clip(match.group(0), 80)} (stub)"
                return Referral(target, query, reason=reason, supersedes=True)
        if stub and here != IANA_SERVER:
            return Referral(IANA_SERVER, query, reason="APNIC-STUB object", supersedes=True)
    for obj in objects:
        if obj.kind not in ("inetnum", "inet6num"):
            continue
        source = re.sub(r"[^a-z]", "", obj.get("source").lower())
        # the sentence runs across remarks lines: "...mirrored by APNIC from" / "KRNIC. To..."
        mirrored = _MIRRORED.search(" ".join(obj.all("remarks")))
        nir = mirrored.group(1).lower().replace("-", "") if mirrored else source
        if nir in _NIRS:
            target = _NAMES[nir]
            if target != here:
                return Referral(
                    target, query, reason=f"{nir.upper()} data partially mirrored by APNIC"
                )
    for obj in objects:
        netname = obj.get("netname").upper()
        if obj.kind in ("inetnum", "inet6num") and netname.startswith(_IANA_BLOCKS):
            if here != IANA_SERVER:
                return Referral(
                    IANA_SERVER,
                    query,
                    reason=f"{_clip(netname, 60)}: not managed here",
                    supersedes=True,
                )
    return None


_ABUSE_HEADER = re.compile(r"^%\s*Abuse contact for '([^']*)' is '([^']*)'", re.I)
_NO_ABUSE = re.compile(r"^%\s*No abuse contact registered for (.+)$", re.I)


def _parse_rpsl(lines: list[str], server: str, query: str) -> WhoisRecord:
    objects, comments = _objects(lines)
    notes: list[str] = []
    found = _Contacts(server, notes)
    for line in comments:
        header = _ABUSE_HEADER.match(line)
        if header:
            found.add(header.group(2), ABUSE_CONFIDENCE, f"abuse contact for {header.group(1)}")
            continue
        missing = _NO_ABUSE.match(line)
        if missing:
            found.note(f"{server}: no abuse contact registered for {_clip(missing.group(1), 80)}")

    primary = _most_specific(objects, ("inetnum", "inet6num"))
    organisations = {o.key.upper(): o for o in objects if o.kind == "organisation"}

    abuse_handles = {h.upper() for o in objects for h in o.all("abuse-c")}
    for obj in objects:
        label = obj.key if obj.kind == "irt" else f"{obj.kind} {obj.key}"
        for value in obj.all("abuse-mailbox"):
            found.add(value, ABUSE_CONFIDENCE, f"abuse-mailbox of {label}")
        if obj.kind in ("role", "person") and obj.key.upper() in abuse_handles:
            for value in obj.all("e-mail"):
                found.add(value, ABUSE_CONFIDENCE, f"e-mail of abuse-c {obj.key}", obj.attrs[0][1])
    for obj in objects:
        label = obj.key if obj.kind == "irt" else f"{obj.kind} {obj.key}"
        remarks = obj.all("remarks") + (obj.all("descr") if obj.kind.startswith("inet") else [])
        for index, text in enumerate(remarks):
            before = remarks[index - 1] if index else ""
            found.add_from_text(text, STATED_CONFIDENCE, f"remarks of {label}", before)
        if obj.kind in ("role", "person", "irt", "organisation"):
            name = obj.attrs[0][1] if obj.kind in ("role", "person") else obj.get("org-name")
            for value in obj.all("e-mail"):
                address = clean_address(value) or ""
                stated = obj.kind == "irt" or _is_abuse_local(address)
                confidence = STATED_CONFIDENCE if stated else FALLBACK_CONFIDENCE
                found.add(value, confidence, f"e-mail of {label}", name)

    network = None
    registry = _label(server)
    if primary is not None:
        source = registry_server(primary.get("source")) if primary.get("source") else None
        registry = _label(source) if source else registry
        org_ref = primary.get("org").upper()
        org_obj = organisations.get(org_ref) if org_ref else None
        org = org_obj.get("org-name") if org_obj else ""
        descr = primary.all("descr")
        network = _network(
            registry,
            primary.attrs[0][1],
            name=primary.get("netname"),
            country=primary.get("country"),
            org=org or (descr[0] if descr else ""),
            asn=next((_asn(o.get("origin")) for o in objects if o.kind.startswith("route")), None),
        )
    else:
        found.note(f"{server}: no inetnum or inet6num object in the answer")
    referral = _rpsl_referral(objects, server, query)
    contacts = found.result()
    return WhoisRecord(
        server=server,
        format="rpsl",
        registry=registry,
        network=network,
        contacts=contacts,
        referral=referral,
        notes=tuple(notes),
    )
