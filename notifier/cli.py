"""``notify``: the command line, a thin shell over the library.

Parse, call ``notifier``, render. A ``NotifierError`` becomes one plain line on standard error and
an exit status: 2 for bad input or configuration, 1 for a failed delivery or a broken log.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from typer.exceptions import TyperException

from .batch import BatchCounts
from .config import Settings, load_settings
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_HELD_BACK,
    EXIT_OK,
    ConfigError,
    NotifierError,
    exit_code,
)
from .intake import FORMATS
from .ledger import Ledger, open_ledger
from .models import ChannelKind, DeliveryStatus, Finding, Resolution
from .pipeline import Notifier, SendResult, channel_record, contact_record
from .sources import utcnow
from .sources.rdns import clean_hostname

__all__ = ["app", "main"]

app = typer.Typer(
    help="notifier: find who owns an exposed address and tell them, with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log_app = typer.Typer(help="Review and check the audit log.", no_args_is_help=True)
contacts_app = typer.Typer(help="Check a contacts.yaml file.", no_args_is_help=True)
app.add_typer(log_app, name="log")
db_app = typer.Typer(help="Create and upgrade the PostgreSQL schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(contacts_app, name="contacts")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML configuration (default: $NOTIFY_CONFIG, else built-ins)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"notify: {message}", markup=False)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the library call; turn our errors into one line and an exit status."""
    try:
        return asyncio.run(coro)
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))
    except KeyboardInterrupt as exc:
        fail("interrupted; everything sent so far is in the audit log", exit_code(exc))


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(str(exc), 2)


# -- resolve ----------------------------------------------------------------------------------


def _contact_lines(resolution: Resolution) -> list[str]:
    lines = []
    for use, contacts in (("notify", resolution.recipients), ("fallback", resolution.fallbacks)):
        for c in contacts:
            guessed = ", guessed: no source published it" if "guessed" in c.provenance else ""
            lines.append(f"{use:<9}{c.address}  [{c.role}, confidence {c.confidence:.2f}{guessed}]")
            lines += [f"{'':<11}{why}" for why in c.provenance or c.sources if why != "guessed"]
    return lines


def _channel_lines(resolution: Resolution) -> list[str]:
    """Non-mail channels, as the manual steps they are."""
    asks = {
        ChannelKind.WEB: "asks for reports at",
        ChannelKind.PHONE: "gives a phone number:",
        ChannelKind.OTHER: "gives another contact:",
    }
    lines = []
    for ch in resolution.channels:
        party = "the operator's override" if ch.role == "override" else f"the {ch.role}"
        lines.append(f"manual   {party} {asks[ch.kind]} {ch.uri}  (not sent by notify)")
        lines += [f"{'':<11}{why}" for why in ch.provenance]
    return lines


def _hint_lines(resolution: Resolution) -> list[str]:
    lines = []
    for h in resolution.hints:
        state = "confirmed" if h.confirmed else "unconfirmed, low confidence, not used"
        lines.append(f"hint     {h.name}  [{h.source}; {state}]  {h.reason}".rstrip())
    return lines


def resolution_json(resolution: Resolution) -> dict[str, Any]:
    network = resolution.network
    return {
        "ip": str(resolution.target.ip),
        "contacts": [
            {**contact_record(c), "use": use, "guessed": "guessed" in c.provenance}
            for use, group in (
                ("notify", resolution.recipients),
                ("fallback", resolution.fallbacks),
            )
            for c in group
        ],
        "network": None
        if network is None
        else {
            "registry": network.registry,
            "handle": network.handle,
            "name": network.name,
            "cidrs": list(network.cidrs),
            "country": network.country,
            "org": network.org,
            "asn": network.asn,
        },
        "hostnames": list(resolution.hostnames),
        "notes": list(resolution.notes),
        "errors": [{"source": s, "error": e} for s, e in resolution.errors],
        "channels": [channel_record(c) for c in resolution.channels],
        "hints": [
            {
                "name": h.name,
                "source": h.source,
                "confirmed": h.confirmed,
                "confidence": "high" if h.confirmed else "low",
                "reason": h.reason,
            }
            for h in resolution.hints
        ],
    }


def print_resolution(resolution: Resolution) -> None:
    network = resolution.network
    if network:
        out.print(
            f"network  {', '.join(network.cidrs) or network.handle}  {network.name}  "
            f"{network.org}  country {network.country or '?'}  ({network.registry})",
            markup=False,
        )
    if resolution.hostnames:
        out.print(f"names    {', '.join(resolution.hostnames)}", markup=False)
    for line in _hint_lines(resolution):
        out.print(line, markup=False)
    if resolution.contacts:
        for line in _contact_lines(resolution):
            out.print(line, markup=False)
    else:
        out.print("no contact found", markup=False)
    for line in _channel_lines(resolution):
        out.print(line, markup=False)
    for note in resolution.notes:
        out.print(f"  note: {note}", markup=False)
    for source, error in resolution.errors:
        out.print(f"  {source} failed: {error}", markup=False)


@app.command()
def resolve(
    ip: Annotated[str, typer.Argument(help="The exposed address (IPv4 or IPv6).")],
    hostname: Annotated[
        list[str] | None, typer.Option(help="A host name seen on the service.")
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print the contacts `send` would use, with where each came from. Sends nothing."""
    settings = settings_from(config)

    async def go() -> Resolution:
        async with Notifier(settings) as notifier:
            return await notifier.resolve(ip, hostname or [])

    resolution = run(go())
    if json_output:
        print(json.dumps(resolution_json(resolution), indent=2))
    else:
        print_resolution(resolution)


# -- send -------------------------------------------------------------------------------------


def print_send(result: SendResult, dry_run: bool) -> None:
    if result.resolution is not None:
        print_resolution(result.resolution)
    if dry_run:
        for message in result.messages:
            out.rule(f"message to {message.recipient} (dry run: not sent)")
            out.print(message.raw.decode("utf-8", "replace").replace("\r\n", "\n"), markup=False)
    for d in result.deliveries:
        detail = f" ({d.smtp_code} {d.smtp_reply})" if d.smtp_code else ""
        tries = f", {d.attempts} attempts" if d.attempts > 1 else ""
        why = f" - {d.reason}" if d.reason and d.status in _EXPLAINED else ""
        out.print(f"{d.status:>13}  {d.recipient}{detail}{tries}{why}", markup=False)
    for channel, path in result.manual:
        out.print(f"{'manual step':>13}  {channel}: report ready at {path}", markup=False)
    if not result.deliveries:
        err.print(
            "notify: no contact found for this address, not even a national CERT", markup=False
        )


# statuses whose line says why nothing was sent
_EXPLAINED = (
    DeliveryStatus.HELD_BACK,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.IN_DOUBT,
    DeliveryStatus.IN_FLIGHT,
)


def held_summary(reasons: list[str]) -> str:
    """One line: how many messages a limit held back, and which limits."""
    counts: dict[str, int] = {}
    for reason in reasons:
        limit = reason.removeprefix("held back: ").split(" (")[0]
        counts[limit] = counts.get(limit, 0) + 1
    why = "; ".join(f"{limit}: {n}" for limit, n in counts.items())
    total = len(reasons)
    noun = "message" if total == 1 else "messages"
    return f"{total} {noun} held back ({why}); nothing failed: run again later to send the rest"


def send_json(result: SendResult) -> dict[str, Any]:
    return {
        **(resolution_json(result.resolution) if result.resolution else {}),
        "deliveries": [
            {
                "recipient": d.recipient,
                "status": str(d.status),
                "role": str(d.role or ""),
                "smtp_code": d.smtp_code,
                "smtp_reply": d.smtp_reply,
                "attempts": d.attempts,
                "message_id": d.message_id,
                "digest": d.digest,
                "reason": d.reason,
            }
            for d in result.deliveries
        ],
        "held_back": len(result.held_back),
        "manual_steps": [{"channel": c, "report": p} for c, p in result.manual],
        "exit": result.exit_code,
    }


@app.command()
def send(
    ip: Annotated[str, typer.Argument(help="The exposed address (IPv4 or IPv6).")],
    finding: Annotated[
        str, typer.Option(help="What was seen: the exposure, never its contents.")
    ] = "A service reachable from the internet without access control",
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port of the service.")] = None,
    hostname: Annotated[str | None, typer.Option(help="Host name seen on the service.")] = None,
    service: Annotated[
        str | None, typer.Option(help="The exposed product (redis, mongodb...): picks the guide.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Template name in templates/.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and print; send nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send even if already sent or in doubt.")
    ] = False,
    test_recipient: Annotated[
        str | None, typer.Option(help="Send to this address instead.")
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Resolve the owner of IP, render the disclosure, deliver it, and log every step."""
    settings = settings_from(config)

    async def go() -> SendResult:
        async with Notifier(settings) as notifier:
            address = notifier.target(ip)
            item = Finding(
                address,
                finding,
                port=port,
                hostname=hostname,
                observed_at=datetime.now().astimezone(),
                service=service.strip().lower() if service else None,
            )
            return await notifier.send(
                [item],
                template=template,
                dry_run=dry_run,
                force=force,
                test_recipient=test_recipient,
            )

    if not finding.strip():
        fail("--finding must describe the exposure")
    if service is not None and not re.fullmatch(
        r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", service.strip()
    ):
        fail(f"--service is not a service name (e.g. redis): {service!r}")
    if hostname is not None and clean_hostname(hostname) is None:
        # it is looked up and printed back: only a real host name goes on
        fail(f"--hostname is not a host name: {hostname!r}")
    result = run(go())
    if json_output:
        print(json.dumps(send_json(result), indent=2))
    else:
        print_send(result, dry_run)
    if result.held_back:
        err.print(f"notify: {held_summary([d.reason for d in result.held_back])}", markup=False)
    raise typer.Exit(result.exit_code)


# -- batch ------------------------------------------------------------------------------------


def _summary_table(counts: BatchCounts, outcomes: dict[str, int]) -> Table:
    table = Table(title="notify batch", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    rows = [
        ("findings read", counts.read),
        ("bad input lines", counts.problems),
        ("refused targets", counts.refused),
        ("duplicates", counts.duplicates),
        ("distinct addresses", counts.addresses),
        ("recipients", counts.recipients),
        ("messages sent", counts.sent),
        ("messages failed", counts.failed),
        ("messages skipped", counts.skipped),
        ("messages held back", counts.held_back),
    ]
    rows += [(f"findings {status}", n) for status, n in sorted(outcomes.items())]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


@app.command()
def batch(
    file: Annotated[str, typer.Argument(help="Scanner output, or - for standard input.")] = "-",
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"Force a format: {', '.join(FORMATS)}.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Template name in templates/.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render; send nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send even if already sent or in doubt.")
    ] = False,
    test_recipient: Annotated[
        str | None, typer.Option(help="Send every message here instead.")
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Raise the per-run message cap.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON line per finding outcome.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Many findings at once: one message per contact listing all of that contact's findings."""
    from .batch import Batch, FindingOutcome
    from .cache import LookupCache
    from .intake import InputProblem, read_findings

    settings = settings_from(config)
    try:
        read_findings(io.BytesIO(b""), fmt=fmt)  # an unknown --format fails before any input
    except ConfigError as exc:
        fail(str(exc))
    if file == "-":
        stream: BinaryIO = sys.stdin.buffer
    else:
        try:
            stream = open(file, "rb")  # noqa: SIM115 - closed below, after the run
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
    outcomes: dict[str, int] = {}
    live = sys.stderr.isatty() and not json_output

    def on_outcome(outcome: FindingOutcome) -> None:
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
        if json_output:
            print(json.dumps(outcome.as_dict(), ensure_ascii=False), flush=True)
        elif outcome.status in ("bad-input", "refused"):
            err.print(f"notify: {outcome.reason}", markup=False)

    async def go() -> BatchCounts:
        cache = LookupCache.from_settings(settings)
        try:
            async with Notifier(settings, cache=cache) as notifier:
                if max_messages:
                    notifier.max_messages = max_messages
                with _progress(live) as update:
                    runner = Batch(
                        notifier,
                        template=template,
                        dry_run=dry_run,
                        force=force,
                        test_recipient=test_recipient,
                        on_progress=update,
                        on_outcome=on_outcome,
                    )
                    for item in read_findings(stream, fmt=fmt):
                        if isinstance(item, InputProblem):
                            runner.problem(item.line, item.message)
                        else:
                            await runner.submit(item)
                    await runner.flush()
                manual.extend(runner.result.manual)
                return runner.counts
        finally:
            cache.close()

    manual: list[tuple[str, str]] = []
    try:
        counts = run(go())
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    (err if json_output else out).print(_summary_table(counts, outcomes))
    if counts.read == 0:
        # a pipeline must tell bad input from "nothing new": no finding at all is bad input
        why = (
            f"all {counts.problems} lines were malformed"
            if counts.problems
            else "the input is empty or holds only comments"
        )
        fail(f"no finding in {'standard input' if file == '-' else file}: {why}")
    if manual:
        (err if json_output else out).print(
            f"{len(manual)} reports prepared for web forms and phone lines: notify manual list",
            markup=False,
        )
    if counts.held_back:
        reasons = [r for r, n in counts.held_reasons.items() for _ in range(n)]
        err.print(f"notify: {held_summary(reasons)}", markup=False)
    if outcomes.get("failed"):
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_HELD_BACK if counts.held_back else EXIT_OK)


@contextmanager
def _progress(live: bool) -> Iterator[Callable[[BatchCounts], None]]:
    """A progress bar with counts on a terminal; nothing in a pipe."""
    if not live:
        yield lambda counts: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("resolving", total=None, counts="")

        def update(c: BatchCounts) -> None:
            sending = c.queued > 0
            progress.update(
                task,
                description="sending" if sending else "resolving",
                total=max(c.queued, c.recipients, 1) if sending else max(c.addresses, 1),
                completed=c.sent + c.failed + c.skipped + c.held_back if sending else c.resolved,
                counts=f"read {c.read}  resolved {c.resolved}/{c.addresses}  queued {c.queued}"
                f"  sent {c.sent}  failed {c.failed}",
            )

        yield update


# -- log --------------------------------------------------------------------------------------


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
    from .ledger import load_verify_key, parse_head, verify

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
    from .ledger import format_head

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


@db_app.command("init")
def db_init(config: ConfigOption = None) -> None:
    """Create the schema in the database named by ``[state] url``."""
    _db(config, initial=True)


@db_app.command("migrate")
def db_migrate(config: ConfigOption = None) -> None:
    """Upgrade the database's schema to this version of notify."""
    _db(config, initial=False)


def _db(config: Path | None, *, initial: bool) -> None:
    from .ledger.pg import setup

    settings = settings_from(config)
    if not settings.state.url:
        fail('no database configured: set [state] url = "postgresql://..."')
    try:
        out.print(setup(settings.state.url, initial=initial), markup=False)
    except NotifierError as exc:
        fail(str(exc), exit_code(exc))


# -- contacts ---------------------------------------------------------------------------------


@contacts_app.command("check")
def contacts_check(
    file: Annotated[Path, typer.Argument(help="A contacts.yaml to validate.")],
) -> None:
    """Validate a contacts file: schema, addresses, CIDR/ASN/domain keys, with line numbers."""
    from .contacts import check_file

    problems = check_file(file)
    for p in problems:
        err.print(f"{file}:{p.line}:{p.column}: {p.message}", markup=False)
    if problems:
        raise typer.Exit(2)
    out.print(f"{file}: ok", markup=False)


# -- demo -------------------------------------------------------------------------------------


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the demo's state in this folder.")] = None,
) -> None:
    """Run a complete disclosure offline against notifier's own loopback internet."""
    from .demo import run_demo

    if keep is not None and keep.exists() and not keep.is_dir():
        fail(f"--keep {keep}: exists and is not a folder")
    raise typer.Exit(run(run_demo(out, keep)))


def main() -> None:
    """Console entry point: one line for our errors; a traceback only with NOTIFY_DEBUG=1."""
    try:
        status = app(standalone_mode=False)
    except TyperException as exc:
        # a usage error (bad option value, unknown command) is one plain line, not a box;
        # bare `notify` prints the help
        message = exc.format_message()
        if message:
            err.print(message if "\n" in message else f"notify: {message}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except typer.Abort:
        err.print("notify: interrupted; everything sent so far is in the audit log", markup=False)
        sys.exit(130)
    except NotifierError as exc:
        err.print(f"notify: {exc}", markup=False)
        sys.exit(exit_code(exc))
    except Exception as exc:  # noqa: BLE001 - a bug must still not dump a traceback on a user
        if os.environ.get("NOTIFY_DEBUG"):
            raise
        err.print(
            f"notify: internal error: {type(exc).__name__}: {exc} "
            "(NOTIFY_DEBUG=1 shows the traceback)",
            markup=False,
        )
        sys.exit(exit_code(exc))
    sys.exit(status if isinstance(status, int) else EXIT_OK)


# -- registered command modules ----------------------------------------------------------------
# each module under notifier/commands/ adds its commands to ``app`` (one line each, here)


def _register() -> None:
    from .commands import cases, followups, outreach, templates

    cases.register(app)
    followups.register(app)
    outreach.register(app)
    templates.register(app)


_register()
