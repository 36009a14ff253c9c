"""Shared fixtures: the captured corpus, a clean environment, settings pointed at loopback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from notifier.config import Settings
from notifier.net import RateLimiter, make_http_client, make_resolver
from notifier.sandbox.dns import DNSServer
from notifier.sandbox.web import SandboxCA
from notifier.sources import LookupContext
from notifier.testing import Sandbox

# an empty NOTIFY_CORPUS counts as unset, not as the current folder
CORPUS = Path(
    os.environ.get("NOTIFY_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)


@pytest.fixture
def corpus_dir() -> Path:
    """The real captured RDAP/WHOIS answers, read in place (never copied into the project)."""
    if not CORPUS.is_dir():
        pytest.skip(f"captured corpus not found at {CORPUS} (set NOTIFY_CORPUS)")
    return CORPUS


@pytest.fixture(scope="module")
def ca() -> SandboxCA:
    """A test certificate authority for the loopback HTTPS servers of one module."""
    return SandboxCA()


@pytest.fixture(scope="module")
def ca_pem(ca: SandboxCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Its certificate, as a file for ``[http] ca_bundle``."""
    yield ca.pem_path(tmp_path_factory.mktemp("ca"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test picks up the developer's own configuration."""
    monkeypatch.delenv("NOTIFY_CONFIG", raising=False)


# the throwaway PostgreSQL server (tests/pgserver.py), for the tests of the database store
from pgserver import pg_server, pg_url  # noqa: E402, F401


def pytest_addoption(parser: pytest.Parser) -> None:
    # tests/test_golden.py: rewrite tests/golden/ from the current templates instead of comparing
    parser.addoption("--update-golden", action="store_true", help="Rewrite tests/golden/ files.")


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """The default loopback internet (the demo's world), fresh for each test, in tmp_path.

    Modules that need another world define their own ``sandbox`` fixture, which wins.
    """
    async with Sandbox(directory=tmp_path) as box:
        yield box


@pytest.fixture
async def dns_server() -> AsyncIterator[DNSServer]:
    """A loopback nameserver with an empty zone; the test adds the records it needs."""
    server = DNSServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def ctx(dns_server: DNSServer) -> AsyncIterator[LookupContext]:
    """A source's lookup context on ``dns_server``; modules that need another define their own."""
    settings = Settings.from_mapping(
        {"dns": {"nameservers": [dns_server.nameserver], "timeout": 0.3}}
    )
    resolver = make_resolver(settings.dns)
    http = make_http_client(settings.http, resolver, user_agent="notifier-test")
    yield LookupContext(settings=settings, resolver=resolver, http=http, limiter=RateLimiter(100))
    await http.aclose()
