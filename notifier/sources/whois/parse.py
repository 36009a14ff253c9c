"""Recognising the format of an answer and parsing it (pure: no I/O)."""

from __future__ import annotations

import re
from dataclasses import replace

from .arin import _parse_arin, _parse_referral_url
from .fields import _clip, _Contacts, _lines, _looks_like_html, _strip_html
from .national import _parse_jpnic, _parse_krnic, _parse_lacnic, _parse_twnic
from .registries import _REGISTRIES, IANA_SERVER, STATED_CONFIDENCE, WhoisRecord, _canonical, _label
from .rpsl import _objects, _parse_rpsl

__all__: list[str] = []  # internal: the package (sources.whois) is the surface

# --------------------------------------------------------------------------- IANA and others


def _parse_iana(lines: list[str], server: str, query: str) -> WhoisRecord:
    objects, _ = _objects(lines)
    notes: list[str] = []
    refer = next((o.get("refer") for o in objects if o.get("refer")), "")
    refer = refer or next((o.get("whois") for o in objects if o.get("whois")), "")
    referral = None
    if refer:
        referral = _parse_referral_url(refer, query, "IANA refer:")
        if referral is not None:
            referral = replace(referral, supersedes=True)
        else:
            notes.append(f"{server}: unusable refer: {_clip(refer, 80)!r}")
    else:
        status = next((o.get("status") for o in objects if o.get("status")), "")
        notes.append(
            f"{server}: no registry to refer to"
            + (f" (status {_clip(status, 40)})" if status else "")
        )
    return WhoisRecord(
        server=server, format="iana", registry="IANA", referral=referral, notes=tuple(notes)
    )


_NOT_FOUND = re.compile(
    r"no entries found|no match(?:es)? found|no match!!|%ERROR:101|not found", re.I
)


def _parse_unknown(lines: list[str], server: str, query: str) -> WhoisRecord:
    """An unrecognised layout (an ISP's own server, rwhois): only lines that speak of abuse."""
    missing = _NOT_FOUND.search("\n".join(lines[:40]))
    if missing:
        notes = [f"{server}: no record for the query ({_clip(missing.group(0), 60)})"]
    else:
        notes = [f"{server}: unrecognised WHOIS format; only abuse lines were read"]
    found = _Contacts(server, notes)
    for index, line in enumerate(lines[:5000]):
        found.add_from_text(
            line, STATED_CONFIDENCE, "abuse line", lines[index - 1] if index else ""
        )
    return WhoisRecord(
        server=server,
        format="unknown",
        registry=_label(server),
        contacts=found.result(),
        notes=tuple(notes),
    )


_RESOURCE = re.compile(r"^%\s*(?:[A-Za-z]+ )?resource:\s*(\S+)", re.I | re.M)


def _detect(text: str, server: str) -> str:
    here = _canonical(server)
    head = text[:20000]
    if here == IANA_SERVER or "% IANA WHOIS server" in head:
        return "iana"
    if re.search(
        r"^\s*(?:[a-z]\.\s*)?\[(?:Network Number|Network Name|JPNIC Handle|"
        r"IPネットワークアドレス|ネットワーク名|JPNICハンドル)\]",
        head,
        re.M,
    ):
        return "jpnic"
    if re.search(r"^(?:NetRange|CIDR|OrgName|OrgId|CustName|ReferralServer):", head, re.M):
        return "arin"
    if re.search(r"^\s*(?:IPv[46] ?Address|IPv[46] ?주소)\s*:", head, re.M | re.I):
        return "krnic"
    if re.search(r"^\s*Netname:", head, re.M) and re.search(r"^\s*Netblock:", head, re.M):
        return "twnic"
    if re.search(r"^nic-hdl-br:", head, re.M) or re.search(r"Copyright \(c\) Nic\.br", head, re.I):
        return "registro.br"
    joint = "% Joint Whois" in head and here == "whois.lacnic.net"
    if re.search(r"^(?:ownerid|owner-c):", head, re.M) or joint:
        return "lacnic"
    if re.search(r"^(?:inetnum|inet6num|irt|role|organisation):", head, re.M):
        return "rpsl"
    if here == "whois.arin.net":
        return "arin"
    return "unknown"


def parse_whois(text: str, server: str, *, query: str = "") -> WhoisRecord:
    """What the WHOIS answer ``text`` from ``server`` says: network, contacts, referral.

    Pure: no I/O. The format is recognised from the text (LACNIC's Joint Whois relays other
    registries' answers), falling back on the server's name. ``query`` is carried into the
    referral so the next server is asked the same question.
    """
    if _looks_like_html(text):
        text = _strip_html(text)
    lines = _lines(text)
    resource = _RESOURCE.search(text[:4096])
    effective = server
    if resource and _canonical(resource.group(1)) in _REGISTRIES:
        effective = _canonical(resource.group(1))
    kind = _detect(text, effective)
    if kind == "iana":
        return _parse_iana(lines, server, query)
    if kind == "arin":
        return _parse_arin(lines, effective, query)
    if kind == "jpnic":
        return _parse_jpnic(lines, effective, query)
    if kind == "krnic":
        return _parse_krnic(lines, effective, query)
    if kind == "twnic":
        return _parse_twnic(lines, effective, query)
    if kind in ("lacnic", "registro.br"):
        return _parse_lacnic(lines, effective, query, brazil=kind == "registro.br")
    if kind == "rpsl":
        return _parse_rpsl(lines, effective, query)
    return _parse_unknown(lines, server, query)
