"""The HTTPS client's TLS context: extra CAs read at once, the system's store in a thread."""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

import pytest

from notifier.errors import ConfigError
from notifier.tls import ClientTLS


def test_a_wrong_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    """A missing or unreadable ``http.ca_bundle`` fails when the run opens, in one line."""
    with pytest.raises(ConfigError, match="cannot load CA bundle"):
        ClientTLS(str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot load CA bundle"):
        ClientTLS(str(tmp_path / "junk.pem"))


async def test_connections_wait_for_the_system_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ready`` returns once the system's CAs are in; the context checks names and chains."""
    release = threading.Event()
    real = ssl.SSLContext.load_default_certs

    def slow(self: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        assert release.wait(5)
        real(self, purpose)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", slow)
    tls = ClientTLS()
    assert tls.context.verify_mode == ssl.CERT_REQUIRED and tls.context.check_hostname
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(tls.ready()), 0.1)
    release.set()
    await asyncio.wait_for(tls.ready(), 5)


async def test_a_store_that_cannot_be_read_leaves_the_context_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As ``ssl.create_default_context`` does: the run goes on, its connections are refused
    by their checks (no certificate chains to a CA the context has)."""

    def broken(self: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        raise ssl.SSLError("store unreadable")

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", broken)
    tls = ClientTLS()
    await asyncio.wait_for(tls.ready(), 5)
    assert tls.context.cert_store_stats()["x509_ca"] == 0
