"""Crash safety of ``notify batch``: SIGKILL at random moments, and two runs on one state dir.

The test process runs the loopback sandbox; every run of ``notify batch`` is a separate process
that is killed with SIGKILL after a random delay. Python needs over a second to import notifier,
so the killed runs are forked from a launcher that has imported it once: each child runs exactly
what ``python -m notifier`` runs (``runpy`` on ``notifier.__main__``), from a state of no event
loop and no open file, and dies by SIGKILL like any other process. The final run, the re-run and
``notify log verify`` are genuine ``python -m notifier`` processes. ``bench/crash_bench.py`` runs
the same scenario with a genuine interpreter for every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import email
import hashlib
import io
import json
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import policy
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from notifier.ledger import AuditLog, verify
from notifier.models import Finding
from notifier.sandbox.smtp import ReceivedMessage
from notifier.sandbox.world import World, WorldHost, WorldNetwork
from notifier.sources import utcnow
from notifier.testing import Sandbox

KILLS = 50
SEED = 20261101
RUN_TIMEOUT = 60.0  # no single run may take this long: a hang fails the test instead

# four abuse desks; C's refuses every message, so C's findings climb to CERT.br
WORLD = World(
    networks=(
        WorldNetwork("127.20.0.0/16", "ripe", "NET-A", "NET-A", "NL", "A BV", "abuse@a.test"),
        WorldNetwork("127.21.0.0/16", "arin", "NET-B", "NET-B", "US", "B Inc", "abuse@b.test"),
        WorldNetwork("127.22.0.0/16", "lacnic", "NET-C", "NET-C", "BR", "C SA", "abuse@c.test"),
        WorldNetwork("127.23.0.0/16", "apnic", "NET-D", "NET-D", "JP", "D KK", "abuse@d.test"),
    ),
    hosts=tuple(WorldHost(f"127.{n}.0.{h}") for n in (20, 21, 22, 23) for h in (1, 2)),
    mail_script={"abuse@c.test": ["550 5.1.1 unknown user"] * 100_000},
)
ADDRESSES = [f"127.{n}.0.{h}" for n in (20, 21, 22, 23) for h in (1, 2)]
PORTS = (9200, 6379)

# slow SMTP replies: a run spends most of its time inside SMTP transactions, so random kills
# often land between MAIL FROM and the reply to the final dot
SMTP_DELAY = 0.005  # before each reply to EHLO, MAIL, RCPT and DATA
REPLY_DELAY = 0.015  # after a message is accepted, before the server says so


def config_sections() -> dict[str, dict[str, Any]]:
    return {
        # two findings a message: a run carries single-finding (X-ARF) and CSV messages
        "batch": {"max_findings_per_message": 2},
        "limits": {
            "per_recipient_per_day": 100_000,
            "max_messages_per_run": 100_000,
            "per_domain_per_minute": 600_000,
        },
        "smtp": {"timeout": 10},
    }


def generation(number: int) -> list[tuple[str, int, str]]:
    """Fresh findings for one round of runs: every address, two ports, a text naming the round."""
    return [(ip, port, f"round {number} open service {port}") for ip in ADDRESSES for port in PORTS]


def as_csv(rows: list[tuple[str, int, str]]) -> str:
    return "ip,port,finding\n" + "".join(f"{ip},{port},{text}\n" for ip, port, text in rows)


def finding_key(ip: str, port: int | None, text: str) -> str:
    return Finding(ip_address(ip), text, port=port).key


# --------------------------------------------------------------------------- launching runs

FORK_SERVER = r"""
import json, os, runpy, signal, sys, time, traceback

import notifier.cli  # noqa: F401 - the costly imports happen once, before any fork


def child(argv, log):
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["notify", *argv]
    code = 0
    try:
        runpy.run_module("notifier", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 99
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    order = json.loads(line)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(order["argv"], order["log"])
    kill_at = None if order["kill_after"] is None else started + order["kill_after"]
    deadline = started + order["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.monotonic()
        if (kill_at is not None and now >= kill_at) or now >= deadline:
            os.kill(pid, signal.SIGKILL)  # our own child, not yet reaped: the pid is still its
            kill_at = float("inf")
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    print(json.dumps({"pid": pid, "code": code, "killed": killed, "elapsed": elapsed}), flush=True)
"""


@dataclass(frozen=True, slots=True)
class Run:
    """How one run of ``notify`` ended."""

    code: int
    killed: bool
    elapsed: float
    output: str


Runner = Callable[[list[str], "float | None", Path], Awaitable[Run]]


class ForkLauncher:
    """Runs ``notify`` commands as children of one interpreter that imported notifier already."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ForkLauncher:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FORK_SERVER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __call__(self, argv: list[str], kill_after: float | None, log: Path) -> Run:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        order = {"argv": argv, "kill_after": kill_after, "timeout": RUN_TIMEOUT, "log": str(log)}
        self._proc.stdin.write(json.dumps(order).encode() + b"\n")
        await self._proc.stdin.drain()
        line = await asyncio.wait_for(self._proc.stdout.readline(), RUN_TIMEOUT + 10)
        if not line:
            raise RuntimeError("the fork launcher died")
        answer = json.loads(line)
        output = log.read_text(errors="replace") if log.exists() else ""
        return Run(answer["code"], answer["killed"], answer["elapsed"], output)


async def spawn(argv: list[str], kill_after: float | None, log: Path) -> Run:
    """Run ``python -m notifier ARGV`` as a fresh interpreter; SIGKILL it after ``kill_after``."""
    started = time.monotonic()
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        killed = False
        try:
            await asyncio.wait_for(proc.wait(), RUN_TIMEOUT if kill_after is None else kill_after)
        except TimeoutError:
            # it may end just as its kill is due: then there is nothing left to kill
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
            killed = proc.returncode == -signal.SIGKILL
    assert proc.returncode is not None
    return Run(proc.returncode, killed, time.monotonic() - started, log.read_text(errors="replace"))


# --------------------------------------------------------------------------- evidence


def carried_findings(message: ReceivedMessage) -> list[tuple[str, int | None, str]]:
    """The findings a received message reports, read from its X-ARF or CSV attachment."""
    parsed = email.message_from_bytes(message.raw, policy=policy.default)
    found: list[tuple[str, int | None, str]] = []
    for part in parsed.iter_attachments():  # type: ignore[attr-defined]
        name = part.get_filename()
        if name == "xarf.json":
            report = json.loads(part.get_content())
            found.append(
                (report["source_identifier"], report.get("source_port"), report["description"])
            )
        elif name == "findings.csv":
            for row in csv.DictReader(io.StringIO(part.get_content())):
                found.append((row["ip"], int(row["port"]) if row["port"] else None, row["finding"]))
    return found


@dataclass(slots=True)
class Evidence:
    """What the server received set against what the audit log says."""

    messages: int = 0
    outcomes: int = 0
    in_doubt_delivered: int = 0  # accepted by the server, but the run died before the outcome
    in_doubt_unsent: int = 0  # intent written, the message never completed
    torn_tails: int = 0
    duplicates: list[str] = field(default_factory=list)


def check_evidence(box: Sandbox, state: Path) -> Evidence:
    """Assert the crash invariants; return the figures."""
    log = AuditLog(state / "audit.jsonl", clock=utcnow)
    records = list(log.records())
    intents = {r["message_id"]: r for r in records if r["event"] == "intent"}
    outcomes = {r["message_id"]: r for r in records if r["event"] == "outcome"}
    open_intents = {r["message_id"]: r for r in log.in_doubt()}
    evidence = Evidence(messages=len(box.smtp.messages), outcomes=len(outcomes))

    # no (recipient, finding) pair reached the server in two messages
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for message in box.smtp.messages:
        carried = carried_findings(message)
        assert carried, f"no findings in {message.message_id}"
        for recipient in message.rcpt_tos:
            for ip, port, text in carried:
                seen[(recipient, finding_key(ip, port, text))].append(message.message_id)
    evidence.duplicates = [f"{r} {k[:12]}: {ids}" for (r, k), ids in seen.items() if len(ids) > 1]
    assert not evidence.duplicates, evidence.duplicates

    # every accepted message is in the log: delivered, or in doubt; never unknown, never "failed"
    accepted = set()
    for message in box.smtp.messages:
        mid = message.message_id
        accepted.add(mid)
        assert mid in intents, f"{mid} reached the server with no intent on disk"
        intent = intents[mid]
        assert set(message.rcpt_tos) == {intent["recipient"]}
        assert hashlib.sha256(message.raw).hexdigest() == intent["digest"]
        keys = {finding_key(*f) for f in carried_findings(message)}
        assert keys == set(intent["finding_keys"])
        if mid in outcomes:
            assert outcomes[mid]["status"] == "delivered", outcomes[mid]
        else:
            assert mid in open_intents, f"{mid}: neither an outcome nor an open intent"
            evidence.in_doubt_delivered += 1
    for mid, outcome in outcomes.items():
        if outcome["status"] == "delivered":
            assert mid in accepted, f"{mid} recorded delivered but the server never accepted it"
    evidence.in_doubt_unsent = len(set(open_intents) - accepted)

    # torn tails are moved aside and recorded, never silently dropped
    torn_files = sorted(p.name for p in state.glob("audit.jsonl.torn-*"))
    torn_records = [r for r in records if r["event"] == "torn-tail"]
    assert sorted(r["file"] for r in torn_records) == torn_files
    for record in torn_records:
        data = (state / record["file"]).read_bytes()
        assert len(data) == record["length"]
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
    evidence.torn_tails = len(torn_records)

    report = verify(state / "audit.jsonl", messages_dir=state / "messages")
    assert report.ok, report.summary()
    return evidence


# --------------------------------------------------------------------------- the scenario


def slow_smtp(box: Sandbox) -> None:
    """Slow every reply, and answer an accepted message only after ``REPLY_DELAY``.

    The server then holds a message it has accepted while the client still waits for the reply:
    a kill in that window leaves a delivered message with no outcome on disk, the in-doubt case
    the audit log exists for. (aiosmtpd reads the handler's hooks per connection, so wrapping the
    sandbox handler's DATA hook before the first run applies to every connection.)
    """
    box.smtp.delay = SMTP_DELAY
    handler = box.smtp._handler
    accept = handler.handle_DATA

    async def handle_DATA(server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await accept(server, session, envelope)
        await asyncio.sleep(REPLY_DELAY)
        return reply

    handler.handle_DATA = handle_DATA  # type: ignore[method-assign]


def tear(log: Path) -> None:
    """Leave what a crash in the middle of writing a record would: a line without its end."""
    with log.open("ab") as handle:
        handle.write(b'{"attempt_id":"torn","event":"intent","finding_keys":["')


@dataclass(slots=True)
class CrashFigures:
    runs: int = 0
    kills: int = 0
    completed: int = 0
    kills_leaving_doubt: int = 0  # kills after an intent and before its outcome
    span: float = 0.0
    evidence: Evidence | None = None


async def crash_scenario(
    box: Sandbox,
    workdir: Path,
    runner: Runner,
    *,
    kills: int,
    seed: int,
    startup: float = 0.0,
    final: Runner = spawn,
    tear_at: int | None = None,
) -> CrashFigures:
    """Kill ``kills`` batch runs at random moments, then finish normally; check the evidence.

    Round ``n`` of findings is run twice (a first run, then a re-run of the same file after the
    crash), each time killed after a delay drawn uniformly over ``startup`` .. the duration of a
    complete run measured first. A run that finishes before its delay counts as completed.
    Before run number ``tear_at`` the log gets a torn last line, as a crash inside a write
    leaves (a SIGKILL rarely tears a write this small, so one is made for the next run to find).
    """
    rng = random.Random(seed)
    slow_smtp(box)
    config = box.write_config(**config_sections())
    state = box.settings().state_dir
    figures = CrashFigures()

    def args(path: Path) -> list[str]:
        return ["batch", str(path), "--config", str(config)]

    def doubtful() -> int:
        log = AuditLog(state / "audit.jsonl", clock=utcnow)
        return len(log.in_doubt())

    # a complete run of round 0 measures how long one takes
    first = workdir / "round-0.csv"
    first.write_text(as_csv(generation(0)))
    calibration = await runner(args(first), None, workdir / "run-0.log")
    assert calibration.code == 0, calibration.output
    figures.span = calibration.elapsed
    figures.runs += 1
    figures.completed += 1

    # a first run of each round and its re-run take different times: a span for each, moved
    # halfway to a run's length whenever one ends before its kill, keeps kills spread over runs
    spans = {"first": figures.span, "again": figures.span}
    number = 0
    while figures.kills < kills:
        assert figures.runs < 3 * kills, "runs keep finishing before their kill"
        kind = "first" if number % 2 == 0 else "again"
        round_file = workdir / f"round-{1 + number // 2}.csv"
        if kind == "first":
            round_file.write_text(as_csv(generation(1 + number // 2)))
        delay = rng.uniform(startup, startup + 1.05 * max(spans[kind] - startup, 0.05))
        before = doubtful()
        number += 1
        if number == tear_at:
            tear(state / "audit.jsonl")
        run = await runner(args(round_file), delay, workdir / f"run-{number}.log")
        figures.runs += 1
        if run.killed:
            figures.kills += 1
            figures.kills_leaving_doubt += doubtful() > before
        else:
            assert run.code == 0, run.output
            figures.completed += 1
            spans[kind] = (spans[kind] + run.elapsed) / 2

    # every round at once, with a genuine interpreter: it finishes what can be finished
    rounds = sorted(workdir.glob("round-*.csv"))
    everything = workdir / "all.csv"
    everything.write_text(
        "ip,port,finding\n" + "".join(p.read_text().split("\n", 1)[1] for p in rounds)
    )
    finish = await final([*args(everything), "--json"], None, workdir / "final.log")
    assert finish.code == 0, finish.output
    statuses = {
        json.loads(line)["status"] for line in finish.output.splitlines() if line.startswith("{")
    }
    assert statuses <= {"sent", "already-sent", "in-doubt"}, statuses
    sent = len(box.smtp.messages)
    again = await final([*args(everything), "--json"], None, workdir / "again.log")
    assert again.code == 0, again.output
    assert len(box.smtp.messages) == sent, "a complete re-run sent something again"

    verified = await final(["log", "verify", "--config", str(config)], None, workdir / "v.log")
    assert verified.code == 0, verified.output
    figures.evidence = check_evidence(box, state)
    return figures


# --------------------------------------------------------------------------- tests


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(WORLD, directory=tmp_path) as box:
        yield box


class TestSigkill:
    async def test_killed_runs_never_send_twice_and_leave_evidence(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """50 runs SIGKILLed at random moments, then a normal run: no duplicate, log intact."""
        work = tmp_path / "work"
        work.mkdir()
        async with ForkLauncher() as launcher:
            figures = await crash_scenario(
                sandbox, work, launcher, kills=KILLS, seed=SEED, tear_at=KILLS // 2
            )
        assert figures.kills == KILLS
        assert figures.evidence is not None and not figures.evidence.duplicates
        assert figures.evidence.torn_tails >= 1  # moved aside and recorded, not dropped
        # the kills did land inside transactions, not only before or after them (the intent is
        # written right before DATA, so that window is short: one to four kills in fifty land
        # in it, fewer on a loaded machine, where the runs around the window are slower)
        assert figures.kills_leaving_doubt >= 1, figures


class TestConcurrentRuns:
    async def test_two_batches_on_one_state_dir(self, sandbox: Sandbox, tmp_path: Path) -> None:
        """Two `notify batch` processes at once: the log stays one chain, nothing is sent twice."""
        slow_smtp(sandbox)
        config = sandbox.write_config(**config_sections())
        data = tmp_path / "findings.csv"
        data.write_text(as_csv(generation(0) + generation(1)))
        argv = ["batch", str(data), "--config", str(config)]
        runs = await asyncio.gather(
            spawn(argv, None, tmp_path / "one.log"), spawn(argv, None, tmp_path / "two.log")
        )
        assert [r.code for r in runs] == [0, 0], [r.output for r in runs]
        state = sandbox.settings().state_dir
        evidence = check_evidence(sandbox, state)
        assert not evidence.duplicates
        assert evidence.in_doubt_delivered == 0 and evidence.in_doubt_unsent == 0
        delivered = {
            (r["recipient"], k)
            for r in AuditLog(state / "audit.jsonl", clock=utcnow).records()
            if r["event"] == "outcome" and r["status"] == "delivered"
            for k in r["finding_keys"]
        }
        # every finding reached its desk (C's through CERT.br) exactly once between the two runs
        assert len(delivered) == 2 * len(generation(0))


class TestConcurrentSends:
    async def test_second_send_says_another_process_is_sending(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """Two `notify send` for one finding at once: one delivers; the other says the message
        is being sent by another process (not "in doubt"), and nothing goes out twice."""
        handler = sandbox.smtp._handler
        accept = handler.handle_DATA

        async def held_DATA(server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            await asyncio.sleep(HOLD)  # the first sender waits inside DATA meanwhile
            return await accept(server, session, envelope)

        handler.handle_DATA = held_DATA  # type: ignore[method-assign]
        config = sandbox.write_config(**config_sections())
        argv = ["send", "127.20.0.1", "--port", "9200", "--finding", "open", "--json"]
        argv += ["--config", str(config)]
        first = asyncio.create_task(spawn(argv, None, tmp_path / "first.log"))
        log = sandbox.settings().state_dir / "audit.jsonl"
        for _ in range(400):  # until the first has written its intent, right before DATA
            if log.exists() and '"event":"intent"' in log.read_text():
                break
            await asyncio.sleep(0.025)
        second = await spawn(argv, None, tmp_path / "second.log")
        done = await first
        assert done.code == 0 and second.code == 0, (done.output, second.output)
        report = json.loads(second.output[second.output.index("{") :])
        statuses = {d["status"] for d in report["deliveries"] if d["recipient"] == "abuse@a.test"}
        assert statuses == {"in-flight"}, report["deliveries"]
        assert "being sent by another process" in second.output
        assert [m for m in sandbox.smtp.messages if "abuse@a.test" in m.rcpt_tos] != []
        assert len([m for m in sandbox.smtp.messages if "abuse@a.test" in m.rcpt_tos]) == 1


HOLD = 6.0  # seconds the first sender is held inside DATA
