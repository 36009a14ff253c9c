"""``notify demo``: a complete disclosure, offline, against notifier's own loopback internet."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from .audit import format_head, head, verify
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
            found = ", ".join(fields["contacts"]) or "nothing"
            error = f"  ({fields['error']})" if fields.get("error") else ""
            console.print(f"    {fields['source']:<13} → {found}{error}", markup=False)
        elif event == "delivery":
            console.print(
                f"    deliver → {fields['to']}: {fields['status']} ({fields['code']})",
                markup=False,
            )

    return trace


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
            console.print(
                first.raw.decode("utf-8", "replace").replace("\r\n", "\n")[:4000], markup=False
            )
            log = settings.state_dir / "audit.jsonl"
            console.rule("the audit log")
            report = verify(log, messages_dir=settings.state_dir / "messages")
            console.print(
                f"  {log}: {report.lines} records, head {format_head(*head(log))}", markup=False
            )
            console.print(f"  notify log verify: {report.summary()}", markup=False)
            console.print(
                f"  SMTP server received {len(sandbox.smtp.messages)} messages", markup=False
            )
            return 0 if report.ok and not any(r.failed for r in results) else 1
