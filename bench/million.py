"""Benchmark: a million-line scanner output through ``notify batch``, real delivery, peak RSS.

    .venv/bin/python bench/million.py                      # 1,000,000 lines, SMTP to loopback
    .venv/bin/python bench/million.py --lines 100000 --dry-run

The input (CSV: ip,port,finding) is streamed to a temporary file: ``--addresses`` addresses in
``--networks`` networks of the loopback world, each address with ports 1, 2, 3... so that every
line is a distinct finding. The parent process runs the sandbox (DNS and RIRs with
``--latency`` per answer, the nameserver in a process of its own, ``--rate`` queries a second
enforced, SMTP recording what it accepts); the child is a genuine ``python -m notifier batch
FILE --json`` process whose peak RSS is read with ``wait4``.
The run must stay under ``--max-rss-mb`` (400 MB).

Prints a markdown table and one JSON line; exits 1 when over the memory limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import benchlib  # noqa: E402


def write_input(path: Path, addresses: list[str], lines: int) -> None:
    """``lines`` distinct findings, address after address, the port growing each round."""
    count = len(addresses)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("ip,port,finding\n")
        batch: list[str] = []
        for number in range(lines):
            port = 1 + number // count
            text = benchlib.SERVICES[port % len(benchlib.SERVICES)][1]
            batch.append(f"{addresses[number % count]},{port},{text}\n")
            if len(batch) == 10_000:
                handle.write("".join(batch))
                batch.clear()
        handle.write("".join(batch))


def count_outcomes(path: Path) -> Counter[str]:
    statuses: Counter[str] = Counter()
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(b"{"):
                statuses[json.loads(line)["status"]] += 1
    return statuses


async def main(args: argparse.Namespace) -> int:
    from notifier.testing import Sandbox

    per_network = -(-args.addresses // args.networks)
    bw = benchlib.build_world(args.networks, per_network)
    # interleaved, network after network, as a scan of many ranges reports them
    addresses = [group[j] for j in range(per_network) for group in bw.addresses][: args.addresses]
    if args.lines > len(addresses) * 65_535:
        raise SystemExit("too many lines for that many addresses")
    per_registry = benchlib.registry_networks(bw, addresses)
    with tempfile.TemporaryDirectory(prefix="notify-million-") as scratch:
        work = Path(scratch)
        input_path = work / "findings.csv"
        started = time.perf_counter()
        write_input(input_path, addresses, args.lines)
        generated = time.perf_counter() - started
        input_mb = input_path.stat().st_size / 1e6
        box = Sandbox(bw.world, directory=work / "sandbox", latency=args.latency)
        box.dns.latency = args.latency  # every DNS answer too, from its own process
        box.dns.own_process = True
        async with box:
            benchlib.configure_sandbox(box, args.rate, args.burst)
            benchlib.quiet_collector()
            config = box.write_config(None, **benchlib.bench_sections(args.rate, args.concurrency))
            argv = ["-m", "notifier", "batch", str(input_path), "--config", str(config), "--json"]
            if args.dry_run:
                argv.append("--dry-run")
            result = await asyncio.to_thread(
                benchlib.run_child, argv, work / "out.jsonl", work / "err.txt"
            )
            if result.status not in (0, 1):
                err = (work / "err.txt").read_text(errors="replace")[-3000:]
                raise SystemExit(f"notify batch failed (exit {result.status}):\n{err}")
            statuses = count_outcomes(work / "out.jsonl")
            messages = len(box.smtp.messages)
            recipients = len({r for m in box.smtp.messages for r in m.rcpt_tos})
            rdap = sum(box.registries[k].request_count for k in benchlib.REGISTRY_KEYS)
            throttled = sum(box.registries[k].throttled for k in benchlib.REGISTRY_KEYS)
            state = box.settings().state_dir
            log_mb = (state / "audit.jsonl").stat().st_size / 1e6 if not args.dry_run else 0.0
    peak_mb = result.max_rss_kb / 1024
    summary: dict[str, Any] = {
        "lines": args.lines,
        "input_mb": round(input_mb, 1),
        "addresses": len(addresses),
        "networks": sum(per_registry.values()),
        "dry_run": args.dry_run,
        "exit_code": result.status,
        "wall_s": round(result.wall, 1),
        "peak_rss_mb": round(peak_mb),
        "max_rss_mb": args.max_rss_mb,
        "rdap_requests": rdap,
        "throttled": throttled,
        "messages": messages,
        "distinct_recipients": recipients,
        "audit_log_mb": round(log_mb, 1),
        "statuses": dict(statuses),
        "generate_s": round(generated, 1),
        # resident MB through the run, every 5 s
        "rss_timeline": [(round(t), mb) for t, mb in result.rss_mb[::10]],
    }
    ok = peak_mb < args.max_rss_mb and sum(statuses.values()) == args.lines
    mode = "dry run" if args.dry_run else "SMTP to loopback"
    print(f"| 1M-line run ({mode}) | value |")
    print("|---|---:|")
    for label, value in (
        ("input lines (distinct findings)", f"{args.lines:,} ({input_mb:.0f} MB CSV)"),
        ("addresses / networks", f"{len(addresses):,} / {summary['networks']:,}"),
        ("upstream RDAP requests (429s)", f"{rdap:,} ({throttled})"),
        ("messages sent / distinct recipients", f"{messages:,} / {recipients:,}"),
        ("outcomes", ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items()))),
        ("wall time (process start to exit)", f"{result.wall:.1f} s"),
        ("**peak RSS**", f"**{peak_mb:.0f} MB** (limit {args.max_rss_mb} MB)"),
        ("audit log written", f"{log_mb:.0f} MB"),
    ):
        print(f"| {label} | {value} |")
    print(json.dumps({"million": summary, "ok": ok}, separators=(",", ":")))
    return 0 if ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=5_000)
    parser.add_argument("--networks", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--burst", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true", help="render, send nothing")
    parser.add_argument("--max-rss-mb", type=int, default=400)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args)))


if __name__ == "__main__":
    cli()
