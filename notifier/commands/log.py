"""``notify log show|verify|head|export``: review and check the audit log."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from ..errors import EXIT_FAILED, ConfigError, NotifierError, exit_code
from ..ledger import Ledger, open_ledger
from ..sources import utcnow
from .shell import ConfigOption, JsonOption, fail, out, settings_from

__all__ = ["register"]

log_app = typer.Typer(help="Review and check the audit log.", no_args_is_help=True)


@log_app.command("show")
def log_show(
    json_output: JsonOption = False,
    ip: Annotated[str | None, typer.Option(help="Only records about this address.")] = None,
    recipient: Annotated[str | None, typer.Option(help="Only records for this recipient.")] = None,
    since: Annotated[str | None, typer.Option(help="Only records at or after (ISO date).")] = None,
    status: Annotated[str | None, typer.Option(help="Only outcomes with this status.")] = None,
    message: Annotated[
        str | None, typer.Option(help="Print the exact bytes of one message.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Review the audit log (a table, or JSON lines with --json)."""
    settings = settings_from(config)
    path = settings.state_dir / "audit.jsonl"
    if not settings.state.url and not path.exists():
        if json_output:
            return
        out.print(f"no audit log yet at {path}", markup=False)
        return
    try:
        log = open_ledger(settings, clock=utcnow)
        if message:
            sys.stdout.buffer.write(_message_bytes(log, message))
            return
        when = datetime.fromisoformat(since) if since else None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        records = list(log.select(ip=ip, recipient=recipient, since=when, status=status))
    except ValueError:
        fail(f"--since is not an ISO date: {since!r}")
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))
    if json_output:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
        return
    table = Table()
    for column in ("#", "time", "event", "ip", "recipient", "status / detail"):
        table.add_column(column)
    for r in records:
        detail = r.get("status") or r.get("reason") or r.get("error") or ""
        if r["event"] == "resolution":
            detail = ", ".join(c["address"] for c in r.get("recipients", [])) or "no contact"
        table.add_row(
            str(r["seq"]),
            r["time"][:19],
            r["event"],
            str(r.get("ip") or ""),
            str(r.get("recipient") or r.get("to") or ""),
            str(detail),
        )
    out.print(table)


def _load_certificates(path: str) -> list[Any]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load TSA certificates from {path}: {exc}") from None


def _message_bytes(log: Ledger, message_id: str) -> bytes:
    digests = [r["digest"] for r in log.find(message_id) if isinstance(r.get("digest"), str)]
    if not digests:
        raise ConfigError(f"no message with Message-ID {message_id} in the audit log")
    return log.load_message(digests[0])


@log_app.command("verify")
def log_verify(
    head_option: Annotated[
        str | None, typer.Option("--head", help="N:HASH the log must still contain.")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="Ed25519 public key (PEM) to check signatures.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Check this exported JSON Lines file instead, offline."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check the audit log's hash chain end to end, and that it accounts for every message,
    head and time-stamp the tool stored or published (exit 0 intact, 1 naming what is wrong)."""
    from ..ledger import load_verify_key, parse_head, verify

    settings = settings_from(config)
    try:
        expected = parse_head(head_option) if head_option else None
        key = load_verify_key(public_key) if public_key else None
        if file is not None and not file.is_file():
            raise ConfigError(f"no such file: {file}")
    except ConfigError as exc:
        fail(str(exc))
    try:
        trust = _load_certificates(settings.audit.tsa_ca) if settings.audit.tsa_ca else None
        if file is not None:
            report = verify(file, head=expected, public_key=key, tsa_trust=trust)
        else:
            log = open_ledger(settings, clock=utcnow)
            report = log.verify(head=expected, public_key=key, tsa_trust=trust)
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))
    if report.ok:
        out.print(f"audit log {report.summary()}", markup=False)
        return
    fail(f"audit log broken: {report.summary()}", EXIT_FAILED)


@log_app.command("head")
def log_head(config: ConfigOption = None) -> None:
    """Print the chain head (line count and hash) to publish or mail to yourself."""
    from ..ledger import format_head

    settings = settings_from(config)
    try:
        print(format_head(*open_ledger(settings, clock=utcnow).head()))
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))


@log_app.command("export")
def log_export(
    fmt: Annotated[
        str, typer.Option("--format", help="csv, json, or jsonl (the chain itself, verifiable).")
    ] = "json",
    ip: Annotated[str | None, typer.Option(help="Only records about this address.")] = None,
    recipient: Annotated[str | None, typer.Option(help="Only records for this recipient.")] = None,
    config: ConfigOption = None,
) -> None:
    """Export the log for a report to a CERT or a court."""
    if fmt not in ("csv", "json", "jsonl"):
        fail(f"--format must be csv, json or jsonl, not {fmt!r}")
    if fmt == "jsonl" and (ip or recipient):
        fail("--format jsonl exports the whole chain: it takes no --ip or --recipient")
    settings = settings_from(config)
    chosen: Literal["csv", "json", "jsonl"] = (
        "csv" if fmt == "csv" else ("jsonl" if fmt == "jsonl" else "json")
    )
    try:
        log = open_ledger(settings, clock=utcnow)
        log.export(chosen, sys.stdout, ip=ip, recipient=recipient)
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))


def register(app: typer.Typer) -> None:
    app.add_typer(log_app, name="log")
