"""Several workers on one database, some killed by SIGKILL mid-run: nothing twice, none lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from notifier.config import Settings
from notifier.ledger import open_ledger

# a worker claims each finding under the chain's lock (the check and the intent in one
# transaction), "delivers" it, and records the outcome; it prints every record it was told is
# stored, so that the test can check none was lost
_WORKER = """
import json, sys, time
from datetime import UTC, datetime
from notifier.config import Settings
from notifier.ledger import open_ledger
settings = Settings.from_mapping({"state": {"dir": sys.argv[1], "url": sys.argv[2]}})
ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
view = ledger.view()
keys = [f"k{n}" for n in range(int(sys.argv[3]))]
for key in keys:
    def free(key=key):
        return view.refresh().prior(key, "desk@example.net") is None
    written = ledger._append_guarded(
        [("intent", {"attempt_id": key, "recipient": "desk@example.net", "finding_keys": [key]})],
        [free],
    )[0]
    if written is None:
        continue
    print(json.dumps([written["seq"], written["hash"]]), flush=True)
    time.sleep(0.002)  # the SMTP transaction
    done = ledger.append("outcome", attempt_id=key, recipient="desk@example.net",
                         status="delivered", finding_keys=[key])
    print(json.dumps([done["seq"], done["hash"]]), flush=True)
"""


def _start(state: Path, url: str, findings: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(state), url, str(findings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def test_workers_killed_mid_run_leave_no_duplicate_and_lose_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    from notifier.ledger.pg import setup

    setup(pg_url, initial=True)
    findings = 300
    rng = random.Random(7)
    acknowledged: list[tuple[int, str]] = []
    killed = 0
    workers = [_start(tmp_path, pg_url, findings) for _ in range(4)]
    deadline = time.monotonic() + 90
    while workers and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.4))
        if killed < 3:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            out, _ = victim.communicate()
            acknowledged += [tuple(json.loads(line)) for line in out.splitlines() if line]
            killed += 1
            workers.append(_start(tmp_path, pg_url, findings))  # a replacement takes over
        for worker in [w for w in workers if w.poll() is not None]:
            out, _ = worker.communicate()
            acknowledged += [tuple(json.loads(line)) for line in out.splitlines() if line]
            workers.remove(worker)
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        acknowledged += [tuple(json.loads(line)) for line in out.splitlines() if line]
    assert killed == 3

    settings = Settings.from_mapping({"state": {"dir": str(tmp_path), "url": pg_url}})
    ledger = open_ledger(settings, clock=lambda: datetime.now(UTC))
    records = list(ledger.records())
    by_seq = {r["seq"]: r["hash"] for r in records}
    # 0 lost: every record a worker was told is stored is in the chain, unchanged
    assert all(by_seq.get(seq) == digest for seq, digest in acknowledged)
    # 0 duplicates: each finding was claimed (and so sent) once, over all workers
    intents = Counter(r["attempt_id"] for r in records if r["event"] == "intent")
    assert intents and max(intents.values()) == 1
    model = ledger.view().refresh()
    delivered = {k for k, _ in model.delivered}
    in_doubt = {i.attempt_id for i in model.in_doubt()}
    # every finding ended delivered, except at most one in doubt per killed worker
    assert len(in_doubt) <= killed
    assert delivered | in_doubt == {f"k{n}" for n in range(findings)}
    report = ledger.verify()
    assert report.ok, report.problems
