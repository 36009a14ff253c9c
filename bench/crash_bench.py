"""Benchmark: SIGKILL ``notify batch`` at random moments, then finish, then check the evidence.

    .venv/bin/python bench/crash_bench.py                    # 50 kills, a fresh interpreter each
    .venv/bin/python bench/crash_bench.py --kills 200 --launcher fork --seed 7

The scenario is the one ``tests/test_crash.py`` runs (it is imported from there): the parent
process runs the loopback sandbox; round ``n`` of findings is run, then re-run after the crash,
each run killed with SIGKILL after a delay drawn uniformly over the length of a complete run
(half-way, the log is given a torn last line, as a crash inside a write leaves); then one
normal run over every round, a re-run that must send nothing, and ``notify log verify``. The
checks: no (recipient, finding) pair received in two messages; every accepted message has its
outcome or an open intent in the audit log, with matching digest and findings; every torn tail
is moved aside and recorded; the chain verifies.

``--launcher spawn`` (the default) starts every run as ``python -m notifier batch ...``: the
kills land anywhere in a real process's life, including the second or so of imports.
``--launcher fork`` forks the runs from an interpreter that imported notifier already, as the
test does, so most kills land in the run itself.

Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from test_crash import WORLD, CrashFigures, ForkLauncher, crash_scenario, spawn  # noqa: E402

from notifier.testing import Sandbox  # noqa: E402


async def measure_startup() -> float:
    """Seconds a fresh interpreter needs before ``notify`` can do anything (imports)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import notifier.cli", stdin=asyncio.subprocess.DEVNULL
    )
    await asyncio.wait_for(proc.wait(), 60)
    return time.monotonic() - started


async def run(kills: int, seed: int, launcher: str) -> tuple[CrashFigures, float, float]:
    with tempfile.TemporaryDirectory(prefix="notify-crash-bench-") as scratch:
        directory = Path(scratch)
        work = directory / "work"
        work.mkdir()
        started = time.monotonic()
        async with Sandbox(WORLD, directory=directory) as box:
            if launcher == "fork":
                async with ForkLauncher() as fork:
                    figures = await crash_scenario(
                        box, work, fork, kills=kills, seed=seed, tear_at=kills // 2
                    )
                startup = 0.0
            else:
                startup = await measure_startup()
                # kills are spread over the run after its imports: one during them proves nothing
                figures = await crash_scenario(
                    box, work, spawn, kills=kills, seed=seed, startup=startup, tear_at=kills // 2
                )
        return figures, time.monotonic() - started, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument("--launcher", choices=("spawn", "fork"), default="spawn")
    options = parser.parse_args()
    figures, elapsed, startup = asyncio.run(run(options.kills, options.seed, options.launcher))
    evidence = figures.evidence
    assert evidence is not None
    rows = [
        ("launcher", options.launcher),
        ("seed", options.seed),
        ("runs started", figures.runs),
        ("runs killed (SIGKILL)", figures.kills),
        ("runs finished before their kill", figures.completed),
        ("kills that left an intent open", figures.kills_leaving_doubt),
        ("complete run (s)", f"{figures.span:.2f}"),
        ("interpreter start-up (s)", f"{startup:.2f}"),
        ("messages accepted by the server", evidence.messages),
        ("outcome records", evidence.outcomes),
        ("accepted, outcome lost (in doubt)", evidence.in_doubt_delivered),
        ("intent open, nothing accepted", evidence.in_doubt_unsent),
        ("torn tails recovered", evidence.torn_tails),
        ("duplicates (recipient, finding)", len(evidence.duplicates)),
        ("wall time (s)", f"{elapsed:.1f}"),
    ]
    print("| crash bench | |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    summary = {k: v for k, v in asdict(figures).items() if k != "evidence"}
    summary.update(evidence=asdict(evidence), launcher=options.launcher, wall=round(elapsed, 1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
