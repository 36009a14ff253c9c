"""Benchmark: a batch of findings against the loopback internet, batch path vs. naive sends.

    .venv/bin/python bench/batch_bench.py                       # 10,000 findings, 300 networks
    .venv/bin/python bench/batch_bench.py --findings 1000 --networks 30 --naive-findings 200

    .venv/bin/python bench/batch_bench.py --size 30k --modes batch

The parent process runs the sandbox (DNS, RDAP registries, WHOIS, SMTP, all on 127.0.0.0/8)
with ``--latency`` added to every DNS answer and every HTTP answer (RDAP, security.txt) and
every RIR enforcing ``--rate`` queries a second (HTTP 429 with Retry-After beyond it). The
nameserver runs in a process of its own, answering from packed wire bytes (bench/dns_bench.py
measures how many answers a second it gives). Every ``--generic-every``-th address has a
forward-confirmed pool name, every ``--named-every``-th a customer host name publishing a
security.txt. Each mode runs in a fresh child process, so peak RSS figures do not mix and the
servers' work is not counted as the notifier's:

- batch: ``Batch`` over a ``Notifier`` with a ``LookupCache``, reading the CSV input as
  ``notify batch`` does, delivering over SMTP to the sandbox;
- naive: one ``Notifier.send`` per finding, one after another, no cache. It is slow by
  design, so it runs on the first ``--naive-findings`` findings and its time is extrapolated
  linearly to the full input (labelled as such); ``--naive-findings -1`` runs it in full.

The rate-limit lower bound is the busiest registry's distinct networks divided by the rate,
plus one latency: no client that honours the limit can finish sooner (the registries let a
``--burst`` of queries through early, so the true floor is at most burst/rate lower).

CPU seconds (the child's process time, robust on a busy machine where wall time is not) are
reported per 1,000 addresses for the lookups and per 100 messages for the delivery; the
delivery's figure includes the compose worker processes' CPU (read from /proc while they run,
and shown on its own line too), so moving work to them does not hide it.

Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

# the worker processes notifier starts import this file again, as ``__mp_main__``: the sandbox
# benchlib brings (a tenth of a second) is kept out of their start-up, which a user's own
# script would not add to theirs
if __name__ != "__mp_main__":
    import benchlib

# -- child: one mode, in its own process ----------------------------------------------------


async def _child_batch(config: str, input_path: str, trace_errors: bool) -> dict[str, Any]:
    from notifier.batch import Batch, BatchCounts, FindingOutcome
    from notifier.cache import LookupCache
    from notifier.config import load_settings
    from notifier.intake import InputProblem, read_findings
    from notifier.pipeline import Notifier

    settings = load_settings(config)
    statuses: dict[str, int] = {}

    samples: dict[str, list[str]] = {}

    def on_outcome(outcome: FindingOutcome) -> None:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        if outcome.status not in ("sent", "dry-run"):
            kept = samples.setdefault(outcome.status, [])
            if len(kept) < 5:
                kept.append(f"{outcome.ip} {outcome.reason}".strip())

    baseline = benchlib.current_rss_kb()
    started = time.perf_counter()
    clock_start = time.monotonic()  # the sandbox stamps requests on this clock
    phases: dict[str, float] = {}
    cpu_started = time.process_time()

    def on_progress(counts: BatchCounts) -> None:
        # when the first message is queued every lookup is done: delivery starts
        if counts.queued and "lookups_done" not in phases:
            phases["lookups_done"] = time.perf_counter() - started
            phases["lookups_done_cpu"] = time.process_time() - cpu_started

    errors: dict[str, list[str]] = {}

    def trace(event: str, fields: dict[str, Any]) -> None:
        # sources that failed, with a few of their reasons
        if event == "source-done" and fields.get("error"):
            kept = errors.setdefault(str(fields.get("source")), [])
            kept.append(str(fields["error"])[:160]) if len(kept) < 3 else kept.append("")

    cache = LookupCache.from_settings(settings)
    try:
        # a tracer makes every source build its events: only when asked for
        tracer = trace if trace_errors else None
        async with Notifier(settings, cache=cache, trace=tracer) as notifier:
            phases["ready"] = time.perf_counter() - started
            batch = Batch(notifier, on_outcome=on_outcome, on_progress=on_progress)
            with open(input_path, "rb") as stream:
                for item in read_findings(stream):
                    if isinstance(item, InputProblem):
                        batch.problem(item.line, item.message)
                    else:
                        await batch.submit(item)
            phases["input_read"] = time.perf_counter() - started
            await batch.flush()
            phases["delivered"] = time.perf_counter() - started
            phases["delivered_cpu"] = time.process_time() - cpu_started
            # the compose workers' share, read while they are still running (the reading is
            # the benchmark's own work: its time is left out of the wall time)
            reading = time.perf_counter()
            workers_cpu, workers_peak_kb = benchlib.descendants_usage()
            reading = time.perf_counter() - reading
            counts = batch.counts
            lookup_workers_cpu = batch.lookup_workers_cpu
            composed_ahead = notifier.composed_ahead
            relayed = notifier.sending.relayed
    finally:
        cache.close()
    wall = time.perf_counter() - started - reading
    own_lookups_cpu = phases.get("lookups_done_cpu", phases.get("delivered_cpu", 0.0))
    delivery_cpu = phases.get("delivered_cpu", 0.0) - own_lookups_cpu
    # the lookup worker processes' share (they have ended by now: each told its own)
    lookups_cpu = own_lookups_cpu + lookup_workers_cpu
    return {
        "wall": wall,
        "baseline_rss_kb": baseline,
        "cpu_per_1000_addresses": round(1000 * lookups_cpu / max(1, counts.addresses), 3),
        # all of the delivery's CPU: the sending process's and the compose workers'
        "cpu_per_100_messages": round(
            100 * (delivery_cpu + workers_cpu) / max(1, counts.queued), 3
        ),
        "workers_cpu_per_100_messages": round(100 * workers_cpu / max(1, counts.queued), 3),
        "workers_cpu_s": round(workers_cpu + lookup_workers_cpu, 2),
        "lookup_workers_cpu_s": round(lookup_workers_cpu, 2),
        "workers_peak_rss_kb": workers_peak_kb,
        "statuses": statuses,
        "status_samples": samples,
        "source_errors": {
            k: {"count": len(v), "samples": [e for e in v if e]} for k, v in errors.items()
        },
        "findings": counts.read,
        "addresses": counts.addresses,
        "recipients": counts.recipients,
        "sent": counts.sent,
        "failed": counts.failed,
        "cache": cache.stats.as_dict(),
        "phases": phases,
        "composed_ahead": composed_ahead,
        "relayed": relayed,
        "clock_start": clock_start,
    }


async def _child_naive(config: str, input_path: str, limit: int) -> dict[str, Any]:
    from notifier.config import load_settings
    from notifier.errors import NotifierError
    from notifier.intake import InputProblem, read_findings
    from notifier.models import DeliveryStatus, Finding
    from notifier.pipeline import Notifier

    settings = load_settings(config)
    findings: list[Finding] = []
    with open(input_path, "rb") as stream:
        for item in read_findings(stream):
            if isinstance(item, InputProblem):
                continue
            findings.append(item)
            if 0 <= limit <= len(findings):
                break
    baseline = benchlib.current_rss_kb()
    sent = failed = errors = 0
    started = time.perf_counter()
    async with Notifier(settings) as notifier:
        for finding in findings:
            try:
                result = await notifier.send([finding])
            except NotifierError:
                errors += 1
                continue
            sent += sum(d.status == DeliveryStatus.DELIVERED for d in result.deliveries)
            failed += sum(d.status == DeliveryStatus.FAILED for d in result.deliveries)
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "baseline_rss_kb": baseline,
        "findings": len(findings),
        "sent": sent,
        "failed": failed,
        "errors": errors,
    }


def _gc_clock() -> dict[str, float]:
    """Time the garbage collector takes in this process (reported with the mode's figures)."""
    import gc

    spent = {"collections": 0, "seconds": 0.0}
    started = [0.0]

    def observe(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            spent["collections"] += 1
            spent["seconds"] += time.process_time() - started[0]

    gc.callbacks.append(observe)
    return spent


def child_main(args: argparse.Namespace) -> None:
    collector = _gc_clock()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
        profiler.enable()
    if args.child == "batch":
        report = asyncio.run(_child_batch(args.config, args.input, args.trace_errors))
    else:
        report = asyncio.run(_child_naive(args.config, args.input, args.limit))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{args.profile}.{args.child}")
    report["peak_rss_kb"] = benchlib.peak_rss_kb()
    report["gc_collections"] = collector["collections"]
    report["gc_cpu_s"] = round(collector["seconds"], 3)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["cpu_s"] = round(usage.ru_utime + usage.ru_stime + report.get("workers_cpu_s", 0), 2)
    print(json.dumps({"bench": args.child, **report}), flush=True)


# -- parent: the sandbox, one fresh one per mode --------------------------------------------


async def run_mode(
    mode: str,
    bw: benchlib.BenchWorld,
    input_path: Path,
    work: Path,
    args: argparse.Namespace,
    limit: int,
) -> dict[str, Any]:
    from notifier.testing import Sandbox

    directory = work / mode
    directory.mkdir()
    sandbox = Sandbox(bw.world, directory=directory, latency=args.latency)
    sandbox.dns.latency = args.latency
    sandbox.dns.own_process = True
    bw.add_pool_names(sandbox.dns)
    async with sandbox:
        benchlib.configure_sandbox(sandbox, args.rate, args.burst, not args.no_keep_alive)
        benchlib.quiet_collector()
        sections = benchlib.bench_sections(args.rate, args.concurrency)
        sections["limits"]["dns_concurrency"] = args.dns_concurrency
        if args.lookup_workers is not None:
            sections["limits"]["lookup_workers"] = args.lookup_workers
        config = sandbox.write_config(None, **sections)
        child_args = [
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--config",
            str(config),
            "--input",
            str(input_path),
            "--limit",
            str(limit),
        ]
        if args.profile:
            child_args += ["--profile", args.profile]
        if args.trace_errors:
            child_args.append("--trace-errors")
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = await asyncio.to_thread(
            benchlib.run_child,
            child_args,
            directory / "child.out",
            directory / "child.err",
        )
        if result.status != 0 or not result.report:
            err = (directory / "child.err").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{mode} child failed (exit {result.status}):\n{err}")
        after = resource.getrusage(resource.RUSAGE_SELF)
        servers_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rirs = [sandbox.registries[k] for k in benchlib.REGISTRY_KEYS]
        recipients = {r for m in sandbox.smtp.messages for r in m.rcpt_tos}
        report = {
            **result.report,
            "peak_rss_kb": max(result.report["peak_rss_kb"], result.max_rss_kb),
            "rdap_requests": sum(r.request_count for r in rirs),
            "rdap_requests_by_registry": {
                k: sandbox.registries[k].request_count for k in benchlib.REGISTRY_KEYS
            },
            "throttled": sum(r.throttled for r in rirs),
            "domain_rdap_requests": sandbox.registries["domains"].request_count,
            "messages": len(sandbox.smtp.messages),
            "message_bytes_mean": sum(len(m.raw) for m in sandbox.smtp.messages)
            // max(1, len(sandbox.smtp.messages)),
            "distinct_recipients": len(recipients),
            "servers_cpu_s": round(servers_cpu, 2),
            "security_txt_fetches": sum(
                1 for r in sandbox.web.requests if r.path.endswith("security.txt")
            ),
        }
    hosts: dict[str, int] = {}
    for request in sandbox.web.requests:
        kind = request.host if "rdap" in request.host else "other hosts"
        hosts[kind] = hosts.get(kind, 0) + 1
    report["http_requests_by_host"] = hosts
    clock_start = report.pop("clock_start", None)
    if clock_start is not None:  # the batch mode's (the naive one's requests are its own)
        report["timeline"] = _timeline(sandbox, clock_start)
    report["dns_answers"] = sandbox.dns.answered  # known once its process has stopped
    return report


def _timeline(sandbox: Any, start: float) -> dict[str, list[float]]:
    """First and last moment (s since the batch began) each kind of server was asked: what
    bound when; for the registries also the two requests one host got closest together (ms)."""
    moments: dict[str, list[float]] = {}
    by_host: dict[tuple[str, str], list[float]] = {}
    for request in sandbox.web.requests:
        if request.path.startswith("/bootstrap/"):
            kind = "bootstrap"
        elif "rdap" in request.host:
            kind = "domain registry" if ".nic." in request.host else "RIRs"
            by_host.setdefault((kind, request.host), []).append(request.at)
        else:
            kind = "security.txt" if request.path.endswith("security.txt") else "other web"
        moments.setdefault(kind, []).append(request.at - start)
    moments["SMTP"] = [m.at - start for m in sandbox.smtp.messages]
    timeline = {k: [round(min(v), 3), round(max(v), 3)] for k, v in moments.items() if v}
    for (kind, _), times in by_host.items():
        times.sort()
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        if gaps:
            closest = round(1000 * min(gaps), 1)
            entry = timeline[kind]
            entry[2:] = [min(entry[2], closest)] if len(entry) > 2 else [closest]
    return timeline


def _fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def table(summary: dict[str, Any]) -> str:
    b = summary.get("batch")
    n = summary.get("naive")
    x = summary.get("naive_extrapolated")
    naive_label = "naive (measured)"
    if n is not None and n["findings"] < summary["findings"]:
        naive_label = f"naive ({n['findings']:,}-finding sample)"
    cols = ["batch", naive_label, f"naive (extrapolated to {summary['findings']:,})"]
    rows: list[tuple[str, str, list[str]]] = []

    def pick(d: dict[str, Any] | None, key: str, digits: int = 2) -> str:
        return _fmt(d.get(key) if d else None, digits)

    for label, target, key, digits in (
        ("findings", "", "findings", 0),
        ("distinct networks", "", "networks", 0),
        ("upstream RDAP requests (RIRs)", "", "rdap_requests", 0),
        ("**RDAP requests ÷ distinct networks**", "≤ 1.05", "rdap_per_network", 2),
        ("HTTP 429 answers", "0", "throttled", 0),
        ("addresses", "", "addresses", 0),
        ("DNS answers (each after the latency)", "", "dns_answers", 0),
        ("security.txt fetches", "", "security_txt_fetches", 0),
        ("wall time (s)", "", "wall", 2),
        ("customer domains (the domain registry's queries)", "", "domains", 0),
        ("rate-limit lower bound (s)", "", "lower_bound", 2),
        ("**wall time ÷ lower bound**", "≤ 1.3", "wall_per_bound", 2),
        ("… ÷ the RIRs' bound alone", "", "wall_per_rir_bound", 2),
        ("messages sent", "", "messages", 0),
        ("… of which composed while the lookups went on", "", "composed_ahead", 0),
        ("distinct recipients", "", "distinct_recipients", 0),
        ("**messages ÷ distinct recipients**", "1.0", "messages_per_recipient", 2),
        ("CPU s per 1,000 addresses (lookups)", "", "cpu_per_1000_addresses", 3),
        ("CPU s per 100 messages (delivery)", "", "cpu_per_100_messages", 3),
        ("… of which in compose workers", "", "workers_cpu_per_100_messages", 3),
        ("… of which in lookup workers (s)", "", "lookup_workers_cpu_s", 2),
        ("CPU s in all (with compose workers)", "", "cpu_s", 2),
        ("… of which collecting garbage (sending process)", "", "gc_cpu_s", 2),
        ("peak RSS (MB)", "", "peak_rss_mb", 0),
        ("peak RSS of compose workers (MB, summed)", "", "workers_peak_rss_mb", 0),
    ):
        values = [pick(mode, key, digits) for mode in (b, n, x)]
        rows.append((label, target, values))
    lines = [
        "| metric | target | " + " | ".join(cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for label, target, values in rows:
        lines.append(f"| {label} | {target} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def derive(
    report: dict[str, Any], per_registry: dict[str, int], domains: int, args: argparse.Namespace
) -> None:
    """Add the ratios to a mode's report (in place)."""
    networks = sum(per_registry.values())
    report["networks"] = networks
    report["networks_by_registry"] = per_registry
    report["domains"] = domains
    report["lower_bound"] = benchlib.lower_bound(per_registry, args.rate, args.latency, domains)
    report["lower_bound_rirs"] = benchlib.lower_bound(per_registry, args.rate, args.latency)
    report["wall_per_rir_bound"] = report["wall"] / report["lower_bound_rirs"]
    report["rdap_per_network"] = report["rdap_requests"] / max(1, networks)
    report["wall_per_bound"] = report["wall"] / report["lower_bound"]
    report["messages_per_recipient"] = report["messages"] / max(1, report["distinct_recipients"])
    report["peak_rss_mb"] = round(report["peak_rss_kb"] / 1024)
    if "workers_peak_rss_kb" in report:
        report["workers_peak_rss_mb"] = round(report["workers_peak_rss_kb"] / 1024)


async def parent_main(args: argparse.Namespace) -> None:
    if args.size:
        args.findings, args.networks, args.addresses_per_network = SIZES[args.size]
    bw = benchlib.build_world(
        args.networks,
        args.addresses_per_network,
        generic_every=args.generic_every,
        named_every=args.named_every,
    )
    rows = benchlib.sample_findings(bw, args.findings, args.seed)
    per_registry = benchlib.registry_networks(bw, (ip for ip, _, _ in rows))
    domains = benchlib.named_domains(bw, [ip for ip, _, _ in rows])
    bound = benchlib.lower_bound(per_registry, args.rate, args.latency, domains)
    busiest = max(per_registry.values())
    summary: dict[str, Any] = {
        "findings": len(rows),
        "networks": sum(per_registry.values()),
        "addresses": len({ip for ip, _, _ in rows}),
        "latency_s": args.latency,
        "dns_latency_s": args.latency,
        "dns_concurrency": args.dns_concurrency,
        "rate_per_s": args.rate,
        "burst": args.burst,
        "keep_alive": not args.no_keep_alive,
        "concurrency": args.concurrency,
        "domains": domains,
        "lower_bound_s": bound,
        "lower_bound_explained": (
            f"busiest registry: {busiest} distinct networks / "
            if busiest >= domains
            else f"the domain registry: {domains} distinct domains / "
        )
        + f"{args.rate:g} requests/s + {args.latency * 1000:g} ms latency",
    }
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="notify-bench-") as scratch:
        work = Path(scratch)
        input_path = work / "findings.csv"
        benchlib.write_csv(input_path, rows)
        if "batch" in modes:
            report = await run_mode("batch", bw, input_path, work, args, -1)
            derive(report, per_registry, domains, args)
            summary["batch"] = report
            print(f"batch: {report['wall']:.2f} s", file=sys.stderr)
        if "naive" in modes and args.naive_findings != 0:
            limit = args.naive_findings if args.naive_findings > 0 else -1
            report = await run_mode("naive", bw, input_path, work, args, limit)
            sample = rows[: report["findings"]]
            sample_ips = [ip for ip, _, _ in sample]
            derive(
                report,
                benchlib.registry_networks(bw, sample_ips),
                benchlib.named_domains(bw, sample_ips),
                args,
            )
            summary["naive"] = report
            print(f"naive: {report['wall']:.2f} s for {report['findings']}", file=sys.stderr)
            if report["findings"] < len(rows):
                scale = len(rows) / report["findings"]
                # one lookup and one message per finding: both grow linearly with the input
                extrapolated = {
                    "findings": len(rows),
                    "networks": summary["networks"],
                    "rdap_requests": round(report["rdap_requests"] * scale),
                    "throttled": round(report["throttled"] * scale),
                    "wall": report["wall"] * scale,
                    "messages": round(report["messages"] * scale),
                    "distinct_recipients": None,
                    "lower_bound": summary["lower_bound_s"],
                    "peak_rss_mb": None,
                }
                extrapolated["rdap_per_network"] = extrapolated["rdap_requests"] / max(
                    1, summary["networks"]
                )
                extrapolated["wall_per_bound"] = extrapolated["wall"] / summary["lower_bound_s"]
                batch_recipients = summary.get("batch", {}).get("distinct_recipients")
                if batch_recipients:
                    # the full input reaches the recipients the batch run reached
                    extrapolated["distinct_recipients"] = batch_recipients
                    extrapolated["messages_per_recipient"] = (
                        extrapolated["messages"] / batch_recipients
                    )
                summary["naive_extrapolated"] = extrapolated
    print(table(summary))
    print()
    print(f"Lower bound: {summary['lower_bound_explained']} = {summary['lower_bound_s']:.2f} s.")
    print(
        f"{summary['addresses']:,} addresses; {args.latency * 1000:g} ms added to every DNS "
        "and every HTTP answer."
    )
    for kind, (first, last, *closest) in summary.get("batch", {}).get("timeline", {}).items():
        apart = f", one host's closest two requests {closest[0]:g} ms apart" if closest else ""
        print(f"  {kind}: first at {first:.2f} s, last at {last:.2f} s{apart}")
    print(json.dumps(summary, separators=(",", ":")))


# the sizes: findings, networks, addresses per network
SIZES = {
    "3k": (10_000, 300, 10),  # 10,000 findings on 3,000 addresses
    "10k": (10_000, 300, 34),  # 10,000 findings on 10,000 addresses
    "30k": (30_000, 1_000, 30),  # 30,000 findings on 30,000 addresses, 200 networks a registry
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="one of the standard sizes")
    parser.add_argument("--generic-every", type=int, default=2)
    parser.add_argument("--named-every", type=int, default=100)
    parser.add_argument("--dns-concurrency", type=int, default=256, help="limits.dns_concurrency")
    parser.add_argument(
        "--lookup-workers", type=int, help="limits.lookup_workers (default: one per core but one)"
    )
    parser.add_argument("--findings", type=int, default=10_000)
    parser.add_argument("--networks", type=int, default=300)
    parser.add_argument("--addresses-per-network", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="s per DNS, HTTP answer")
    parser.add_argument("--rate", type=float, default=20.0, help="RDAP queries/s per registry")
    parser.add_argument("--burst", type=float, default=3.0, help="registries' token-bucket depth")
    parser.add_argument(
        "--no-keep-alive",
        action="store_true",
        help="registries close every connection (a TLS handshake per request)",
    )
    parser.add_argument("--concurrency", type=int, default=20, help="limits.concurrency")
    parser.add_argument(
        "--naive-findings",
        type=int,
        default=1000,
        help="findings the naive mode runs (then extrapolated); -1 all, 0 skip",
    )
    parser.add_argument("--modes", default="batch,naive")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", help="write cProfile stats of each mode to PROFILE.<mode>")
    parser.add_argument(
        "--trace-errors",
        action="store_true",
        help="trace the sources to report their errors (costs CPU per address)",
    )
    parser.add_argument("--child", choices=["batch", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    else:
        asyncio.run(parent_main(args))


if __name__ == "__main__":
    main()
