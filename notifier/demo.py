"""``notify demo``: a complete disclosure, offline, against notifier's own loopback internet."""

from __future__ import annotations

import email
import tempfile
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from rich.console import Console

from .ledger import AuditLog, format_head, head, verify
from .models import Finding
from .pipeline import Notifier, SendResult
from .testing import Sandbox

__all__ = ["run_demo"]

CASES = (
    ("127.1.0.10", 9200, "Elasticsearch on 9200 without authentication"),
    ("127.4.0.40", 27017, "MongoDB on 27017 without authentication"),
)


def _printer(console: Console) -> Any:
    def trace(event: str, fields: dict[str, Any]) -> None:
        if event == "source-done":
            found = ", ".join(fields["contacts"] or fields.get("hostnames", [])) or "nothing"
            error = f"  ({fields['error']})" if fields.get("error") else ""
            console.print(f"    {fields['source']:<13} → {found}{error}", markup=False)
        elif event == "delivery":
            console.print(
                f"    deliver → {fields['to']}: {fields['status']} ({fields['code']})",
                markup=False,
            )

    return trace


def _readable(raw: bytes) -> list[str]:
    """Headers, the text part decoded, and the attachments by name."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    lines = [f"{name}: {value}" for name, value in message.items() if name != "Content-Type"]
    body = message.get_body(("plain",))
    if body is not None and isinstance(body, EmailMessage):
        lines += ["", *str(body.get_content()).splitlines()]
    lines += [f"[attachment: {part.get_filename()}]" for part in message.iter_attachments()]
    return lines


async def run_demo(console: Console, keep: Path | None = None) -> int:
    """Start the sandbox, disclose two findings, show the message and verify the log."""
    with tempfile.TemporaryDirectory(prefix="notify-demo-") as scratch:
        directory = keep or Path(scratch)
        async with Sandbox(directory=directory) as sandbox:
            settings = sandbox.settings()
            console.rule("notifier demo: a loopback internet")
            for line in sandbox.describe():
                console.print(f"  {line}", markup=False)
            results: list[SendResult] = []
            async with Notifier(settings, trace=_printer(console)) as notifier:
                for ip, port, text in CASES:
                    console.rule(f"notify send {ip} --port {port} --finding {text!r}")
                    finding = Finding(
                        notifier.target(ip), text, port=port, observed_at=datetime.now(UTC)
                    )
                    result = await notifier.send([finding])
                    results.append(result)
                    for d in result.deliveries:
                        tries = f" after {d.attempts} attempts" if d.attempts > 1 else ""
                        console.print(
                            f"  {d.status}: {d.recipient} [{d.role}]{tries}", markup=False
                        )
            first = results[0].messages[0]
            console.rule(f"the message {first.recipient} received")
            for line in _readable(first.raw):
                console.print(line, markup=False)
            log = settings.state_dir / "audit.jsonl"
            console.rule("the audit log")
            for record in AuditLog(log, clock=lambda: datetime.now(UTC)).records():
                who = record.get("recipient") or record.get("to") or record.get("ip") or ""
                what = record.get("status") or record.get("reason") or record.get("error") or ""
                console.print(
                    f"  {record['seq']:>3}  {record['event']:<10} {who:<28} {what}"[:120],
                    markup=False,
                )
            report = verify(log, messages_dir=settings.state_dir / "messages")
            console.print(
                f"  {log}: {report.lines} records, head {format_head(*head(log))}", markup=False
            )
            console.print(f"  notify log verify: {report.summary()}", markup=False)
            console.print(
                f"  SMTP server received {len(sandbox.smtp.messages)} messages", markup=False
            )
            return 0 if report.ok and not any(r.failed for r in results) else 1
