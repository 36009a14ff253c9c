"""Manual channels: a ready-to-submit report for each web form or phone line an owner published.

``send`` and ``batch`` call ``prepare`` for the channels of a resolution: the report is the text
of the e-mail the owner's role would get (same template, same data: never leaked content), saved
under ``<state>/manual/<case>/``, and a ``manual-step`` record says it waits for a person.
``notify manual done REF CHANNEL`` records the submission (``manual-done``); ``notify manual
list`` shows what is still pending.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..addresses import header_text
from ..compose import compose
from ..config import Settings
from ..ledger import Ledger, Record
from ..models import Channel, ChannelKind, Contact, Finding, Network, case_reference

__all__ = ["PendingStep", "prepare", "pending", "mark_done", "report_path"]

_KIND_WORDS = {
    ChannelKind.WEB: "Submit through the web form at",
    ChannelKind.PHONE: "Read out or summarise by phone at",
    ChannelKind.OTHER: "Submit through",
}


@dataclass(frozen=True, slots=True)
class PendingStep:
    case: str
    channel: str
    kind: str
    ip: str
    report: str
    since: str  # the record's time


def report_path(settings: Settings, case_ref: str, channel: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", channel.lower().split("://", 1)[-1])[:40].strip("-")
    digest = hashlib.sha256(channel.encode()).hexdigest()[:10]
    return settings.state_dir / "manual" / case_ref / f"{slug or 'channel'}-{digest}.txt"


def _report(
    findings: Sequence[Finding],
    channel: Channel,
    *,
    settings: Settings,
    case_ref: str,
    now: datetime,
    network: Network | None,
) -> str:
    # the owner's own e-mail, rendered for a stand-in recipient (our own address): the body is
    # what the mail says; the stand-in never leaves this machine
    stand_in = Contact(settings.sender.address.rpartition("<")[2].rstrip(">"), channel.role, (), 1)
    composed = compose(
        findings,
        stand_in,
        settings=settings,
        template=None,
        case_ref=case_ref,
        now=now,
        network=network,
    )
    body = composed.message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    uri = header_text(channel.uri, 300)
    lines = [
        f"{_KIND_WORDS[channel.kind]} {uri}",
        f"(published by the owner: {header_text(channel.source, 200)})",
        f"Case reference: {case_ref}",
        f"Subject: {header_text(composed.message['Subject'], 300)}",
        "",
        "-" * 72,
        "",
        text.strip(),
        "",
    ]
    return "\n".join(lines)


def _recorded(ledger: Ledger) -> tuple[dict[tuple[str, str], Record], set[tuple[str, str]]]:
    steps: dict[tuple[str, str], Record] = {}
    done: set[tuple[str, str]] = set()
    for record in ledger.records():
        event = record.get("event")
        if event in ("manual-step", "manual-done"):
            key = (str(record.get("case", "")), str(record.get("channel", "")))
            if event == "manual-step":
                steps.setdefault(key, record)
            else:
                done.add(key)
    return steps, done


def prepare(
    ledger: Ledger,
    channels: Iterable[Channel],
    findings: Sequence[Finding],
    *,
    settings: Settings,
    now: datetime,
    network: Network | None = None,
) -> list[tuple[str, Path]]:
    """A report for each channel not yet prepared for this case: (channel, path) written."""
    chosen = list(dict.fromkeys(channels))
    if not chosen or not findings:
        return []
    case_ref = case_reference(list(findings))
    steps, _ = _recorded(ledger)
    written: list[tuple[str, Path]] = []
    for channel in chosen:
        if (case_ref, channel.uri) in steps:
            continue
        text = _report(
            findings, channel, settings=settings, case_ref=case_ref, now=now, network=network
        )
        data = text.encode("utf-8")
        path = report_path(settings, case_ref, channel.uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
        ledger.append(
            "manual-step",
            ip=str(findings[0].ip),
            case=case_ref,
            channel=channel.uri,
            kind=str(channel.kind),
            role=str(channel.role),
            source=header_text(channel.source, 300),
            report=str(path),
            digest=hashlib.sha256(data).hexdigest(),
        )
        written.append((channel.uri, path))
    return written


def pending(ledger: Ledger) -> list[PendingStep]:
    steps, done = _recorded(ledger)
    return [
        PendingStep(
            case=case,
            channel=channel,
            kind=str(record.get("kind", "")),
            ip=str(record.get("ip", "")),
            report=str(record.get("report", "")),
            since=str(record.get("time", "")),
        )
        for (case, channel), record in steps.items()
        if (case, channel) not in done
    ]


def mark_done(ledger: Ledger, case_ref: str, channel: str, note: str = "") -> PendingStep | None:
    """Record that the report for ``channel`` of ``case_ref`` was submitted; None if not pending.

    ``channel`` is the published URI, or the number ``manual list`` shows for the case's steps.
    """
    waiting = [step for step in pending(ledger) if step.case == case_ref]
    match = [step for step in waiting if step.channel == channel]
    if not match and channel.isdigit() and 1 <= int(channel) <= len(waiting):
        match = [waiting[int(channel) - 1]]
    if not match:
        return None
    step = match[0]
    ledger.append("manual-done", case=step.case, channel=step.channel, note=header_text(note, 500))
    return step
