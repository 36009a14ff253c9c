"""What templates see: the findings, the recipient, the sender and the network, as plain strings.

Template context:

``case_ref``, ``now`` (``YYYY-MM-DD HH:MM``, UTC), ``role`` (``owner``, ``network`` or ``cert``),
``sender`` {name, address, email, domain, organisation, website},
``recipient`` {address, name, role, sources[], provenance[]},
``findings`` [{ip, port, text, hostname, observed_at, service}] (all strings, ``""`` when
unknown), ``addresses`` and ``hostnames`` (distinct, in order), ``network`` (None or {registry,
handle, name, range, org, country, asn}), ``first_seen``, ``last_seen``, ``attachments`` {csv,
xarf} (file names, ``""`` when not attached), ``followup_days``, ``in_reply_to``, ``columns``
(column widths for the findings table), ``language`` (the message's language tag), ``t`` (the
frame's sentences in that language) and ``guides`` (one exposure guide per service found:
{name, title, language, observed, risk, fix[], check[], links[], targets[]}).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from ..addresses import header_text
from ..config import Settings
from ..errors import ConfigError
from ..models import Contact, Finding, Network

__all__ = [
    "BODY_TEXT_LIMIT",
    "CONTEXT_NAMES",
    "PORT_SERVICES",
    "base_context",
    "iso",
    "sender_parts",
    "service_of",
    "utc",
    "when",
]

# a finding's text is data from a scanner: bounded in the body as in headers
BODY_TEXT_LIMIT = 500
# ports whose service name an X-ARF consumer (and the guide choice) can act on
# fmt: off
PORT_SERVICES = {
    21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http", 110: "pop3",
    111: "portmap", 123: "ntp", 137: "netbios", 139: "smb", 143: "imap", 161: "snmp",
    389: "ldap", 443: "https", 445: "smb", 502: "modbus", 623: "ipmi", 873: "rsync",
    1433: "mssql", 1521: "oracle", 1883: "mqtt", 1900: "ssdp", 2049: "nfs", 2375: "docker",
    2376: "docker", 2379: "etcd", 2380: "etcd", 3000: "grafana", 3306: "mysql", 3389: "rdp",
    4786: "cisco-smart-install", 5432: "postgresql", 5601: "kibana", 5900: "vnc", 5901: "vnc",
    5984: "couchdb", 5985: "winrm", 6379: "redis", 6443: "kubernetes", 7000: "cassandra",
    8086: "influxdb", 8500: "consul", 9000: "http", 9042: "cassandra", 9092: "kafka",
    9200: "elasticsearch", 9300: "elasticsearch", 10250: "kubelet", 10255: "kubelet",
    11211: "memcached", 27017: "mongodb", 27018: "mongodb", 50070: "hadoop",
}
# fmt: on
# every name a message template may use: anything else fails when the templates load
CONTEXT_NAMES = frozenset(
    {
        "case_ref",
        "now",
        "role",
        "sender",
        "recipient",
        "findings",
        "addresses",
        "hostnames",
        "network",
        "first_seen",
        "last_seen",
        "attachments",
        "followup_days",
        "in_reply_to",
        "columns",
        "language",
        "t",
        "guides",
    }
)  # fmt: skip


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when(moment: datetime | None) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def iso(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def sender_parts(settings: Settings) -> tuple[str, str, str]:
    """(display name, address, domain) of the configured sender."""
    name, address = parseaddr(settings.sender.address)
    if "@" not in address:
        raise ConfigError(f"sender.address is not an e-mail address: {settings.sender.address!r}")
    return header_text(name), address, address.rpartition("@")[2].lower()


def service_of(finding: Finding) -> str:
    """The finding's service: as the scanner named it, else from its port, else ``unknown``."""
    named = (finding.service or dict(finding.extra).get("service", "")).strip().lower()
    if named:
        return header_text(named, 64)
    return PORT_SERVICES.get(finding.port or 0, "unknown")


def base_context(
    findings: Sequence[Finding],
    contact: Contact,
    kind: str,
    *,
    settings: Settings,
    case_ref: str,
    now: datetime,
    network: Network | None,
    in_reply_to: str,
    attachments: dict[str, str],
) -> dict[str, Any]:
    """The context without language and guides (the caller adds ``language``, ``t``, ``guides``)."""
    name, address, domain = sender_parts(settings)
    rows = [
        {
            "ip": str(f.ip),
            "port": str(f.port) if f.port else "",
            "text": header_text(f.text, BODY_TEXT_LIMIT),
            "hostname": header_text(f.hostname, 253) if f.hostname else "",
            "observed_at": when(f.observed_at),
            "service": service_of(f),
        }
        for f in findings
    ]
    seen = sorted(utc(f.observed_at) for f in findings if f.observed_at is not None)
    net = None
    if network is not None:
        net = {
            "registry": header_text(network.registry),
            "handle": header_text(network.handle),
            "name": header_text(network.name),
            "range": ", ".join(header_text(c) for c in network.cidrs)
            or (f"{network.start} - {network.end}" if network.start else ""),
            "org": header_text(network.org),
            "country": header_text(network.country),
            "asn": network.asn,
        }
    days = settings.followup.after_days
    return {
        "case_ref": case_ref,
        "now": when(now),
        "role": kind,
        "sender": {
            "name": name,
            "address": address,
            "email": address,
            "domain": domain,
            "organisation": header_text(settings.sender.organisation),
            "website": header_text(settings.sender.website),
        },
        "recipient": {
            "address": contact.address,
            "name": header_text(contact.name),
            "role": str(contact.role),
            "sources": [header_text(s) for s in contact.sources],
            "provenance": [header_text(p, BODY_TEXT_LIMIT) for p in contact.provenance],
        },
        "findings": rows,
        "addresses": list(dict.fromkeys(r["ip"] for r in rows)),
        "hostnames": list(dict.fromkeys(r["hostname"] for r in rows if r["hostname"])),
        "network": net,
        "first_seen": when(seen[0]) if seen else "",
        "last_seen": when(seen[-1]) if seen else "",
        "attachments": attachments,
        "followup_days": int(days) if float(days).is_integer() else days,
        "in_reply_to": in_reply_to,
        "columns": {
            "ip": max(len("Address"), *(len(r["ip"]) for r in rows)),
            "port": max(len("Port"), *(len(r["port"]) for r in rows)),
            "observed": max(len("Observed (UTC)"), *(len(r["observed_at"]) for r in rows)),
        },
    }
