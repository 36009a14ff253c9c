"""Processes a test starts and kills, and the helpers (workers, fork servers) they leave."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rpartition(")")[2].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_when_ready(script: Path) -> set[int]:
    """Run ``script`` until it prints ``ready``, SIGKILL it: the helpers it had started then."""
    sender = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert sender.stdout is not None and sender.stdout.readline() == b"ready\n"
        return descendants(sender.pid)
    finally:
        sender.kill()
        sender.wait()


def survivors(helpers: set[int], within: float = 15.0) -> list[int]:
    """Those of ``helpers`` still running after ``within`` seconds at most."""
    deadline = time.monotonic() + within
    while any(running(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in helpers if running(pid)]
