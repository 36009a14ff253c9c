"""Benchmark: 1, 2 and 4 ``notify batch`` workers on one input and one store.

    .venv/bin/python bench/workers_bench.py                      # PostgreSQL, 1/2/4 workers
    .venv/bin/python bench/workers_bench.py --store files --workers 3
    .venv/bin/python bench/workers_bench.py --networks 60 --per-network 5

The parent runs the loopback sandbox (DNS, RDAP registries, SMTP) and, for ``--store
postgresql``, a throwaway PostgreSQL cluster from the machine's own ``initdb``/``pg_ctl``. Each
round starts from an empty store and lets N worker processes run ``notify batch`` over the same
findings at once, all naming the same ledger (``[state] url``) and the same state folder (so the
lookup cache and what is in flight are shared). Reported per round: wall time, messages a
second, messages accepted by the SMTP server, duplicate (recipient, finding) pairs (must be 0),
RDAP requests ÷ distinct networks over all workers together, and whether the chain verifies.

Prints a markdown table and one JSON line per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

import benchlib  # noqa: E402
from pgserver import find_bindir, throwaway_server  # noqa: E402


def _database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = server.rsplit("/", 1)[0] + f"/{name}"
    from notifier.ledger.pg import setup

    setup(url, initial=True)
    return url


async def run_round(
    workers: int, url: str, bw: benchlib.BenchWorld, rows: list[Any], work: Path, rate: float
) -> dict[str, Any]:
    from notifier.testing import Sandbox

    directory = work / f"{'pg' if url else 'files'}-{workers}"
    directory.mkdir()
    input_path = directory / "findings.csv"
    benchlib.write_csv(input_path, rows)
    async with Sandbox(bw.world, directory=directory) as sandbox:
        benchlib.configure_sandbox(sandbox, rate, rate)
        sections = benchlib.bench_sections(rate, 20)
        sections["state"] = {"dir": str(directory / "state"), "url": url}
        config = sandbox.write_config(None, **sections)
        command = [sys.executable, "-m", "notifier", "batch", str(input_path)]
        command += ["--config", str(config), "--json"]
        started = time.monotonic()
        procs = [
            await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(workers)
        ]
        results = await asyncio.gather(*(p.communicate() for p in procs))
        wall = time.monotonic() - started
        statuses = [p.returncode for p in procs]
        rirs = [sandbox.registries[k] for k in benchlib.REGISTRY_KEYS]
        rdap = sum(r.request_count for r in rirs)
        throttled = sum(r.throttled for r in rirs)
        pairs: Counter[tuple[str, str]] = Counter()
        for message in sandbox.smtp.messages:
            text = message.raw.decode("utf-8", "replace")
            for ip, port, _ in rows:
                if f"{ip}:{port}" in text or f"{ip} port {port}" in text:
                    for rcpt in message.rcpt_tos:
                        pairs[(rcpt, f"{ip}:{port}")] += 1
        messages = len(sandbox.smtp.messages)
        recipients = len({r.lower() for m in sandbox.smtp.messages for r in m.rcpt_tos})
    verify = subprocess.run(
        [sys.executable, "-m", "notifier", "log", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    networks = sum(benchlib.registry_networks(bw, [r[0] for r in rows]).values())
    return {
        "store": "postgresql" if url else "files",
        "workers": workers,
        "findings": len(rows),
        "wall_s": round(wall, 2),
        "messages": messages,
        "messages_per_s": round(messages / wall, 1),
        "recipients": recipients,
        "messages_per_recipient": round(messages / max(1, recipients), 2),
        "duplicate_pairs": sum(1 for n in pairs.values() if n > 1),
        "rdap_requests": rdap,
        "networks": networks,
        "rdap_per_network": round(rdap / max(1, networks), 2),
        "throttled": throttled,
        "exit_statuses": statuses,
        "stderr_tail": [e.decode(errors="replace")[-300:] for _, e in results if e][:1],
        "verify": verify.stdout.strip() or verify.stderr.strip(),
    }


async def main(args: argparse.Namespace) -> None:
    bw = benchlib.build_world(args.networks, args.per_network)
    rows = benchlib.sample_findings(bw, args.networks * args.per_network, seed=3)
    reports = []
    with tempfile.TemporaryDirectory(prefix="notify-workers-bench-") as scratch:
        work = Path(scratch)
        if args.store == "postgresql":
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL binaries (initdb, pg_ctl) not found")
            with throwaway_server(bindir) as server:
                for n in args.workers:
                    url = _database(server, f"bench{n}")
                    reports.append(await run_round(n, url, bw, rows, work, args.rate))
        else:
            for n in args.workers:
                reports.append(await run_round(n, "", bw, rows, work, args.rate))
    print(
        "| store | workers | wall s | messages | msg/s | messages ÷ recipients | duplicates "
        "| RDAP ÷ networks | 429s | verify |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        print(
            f"| {r['store']} | {r['workers']} | {r['wall_s']} | {r['messages']} | "
            f"{r['messages_per_s']} | {r['messages_per_recipient']} | {r['duplicate_pairs']} | "
            f"{r['rdap_per_network']} | {r['throttled']} | "
            f"{r['verify'][:60]} |"
        )
    for r in reports:
        print(json.dumps(r))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("postgresql", "files"), default="postgresql")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--per-network", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0)
    asyncio.run(main(parser.parse_args()))
