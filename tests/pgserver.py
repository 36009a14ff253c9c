"""A throwaway PostgreSQL server for the tests: the machine's own initdb/pg_ctl, on loopback.

Session-wide: one cluster in a temporary folder, listening only on 127.0.0.1 on a free port,
stopped at the end. Each test gets its own database. Without the binaries the tests that need
them are skipped, except under CI (``NOTIFY_REQUIRE_POSTGRES=1``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        if (Path(out) / "pg_ctl").exists():
            return Path(out)
    except (OSError, subprocess.SubprocessError):
        pass
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return versions[0].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(command: list[str]) -> list[str]:
    # initdb and the server refuse to run as root: run them as the postgres user then
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextlib.contextmanager
def throwaway_server(bindir: Path) -> Iterator[str]:
    """Run a cluster in a temporary folder; yield the URL of its maintenance database."""
    # not under pytest's own temporary folder: the server's user must be able to reach it
    base = Path(tempfile.mkdtemp(prefix="notify-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (base, sockets):
            shutil.chown(path, "postgres", "postgres")
        os.chmod(base, 0o755)
    try:
        subprocess.run(
            _as_owner(
                [str(bindir / "initdb"), "-D", str(data), "-U", "notify", "--auth=trust",
                 "-E", "UTF8", "--no-sync", "--no-instructions"]
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                       str(base / "server.log"), "start"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        try:
            yield f"postgresql://notify@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


def find_bindir() -> Path | None:
    return _bindir()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """``postgresql://...`` of a running throwaway cluster (its maintenance database)."""
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("NOTIFY_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) not found, and CI requires them")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    with throwaway_server(bindir) as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the throwaway server, dropped after the test."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
