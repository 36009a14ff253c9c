"""Worker processes beside the sending process: how many cores there are, and where they come from.

Composing (``compose/pool.py``), a large batch's lookups (``batch/remote.py``) and the relay
taking part of a run's SMTP (``relay.py``) run in worker processes. All come from one fork
server: clean processes, not forks of one holding threads and open connections, started from a
server that has imported what each kind runs, so a worker starts in a fraction of a second.
Whichever kind starts first starts the server, so the list of what it imports is one, here.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import threading
from multiprocessing.context import ForkServerContext

__all__ = ["forkserver", "other_cores", "warm_forkserver"]

_PRELOAD = [
    "notifier.compose.pool",
    "notifier.compose.warm",
    "notifier.batch.remote",
    "notifier.relay",
]


def other_cores() -> int:
    """The cores this process may run on, but for the one it keeps busy itself."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores - 1


def forkserver() -> ForkServerContext:
    """The fork server's context (it may raise where there is none: not on Linux or macOS)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def warm_forkserver() -> None:
    """Start the fork server now, in a thread, on another core: a run that will want workers
    soon finds it has imported the package by then (half a second that would otherwise delay
    its first worker). Where there is none, the first worker finds out."""

    def start() -> None:
        try:
            forkserver()
            multiprocessing.forkserver.ensure_running()
        except Exception:  # noqa: BLE001 - no fork server here: the workers' start says so
            return

    if other_cores() >= 1:
        threading.Thread(target=start, name="fork-server", daemon=True).start()
