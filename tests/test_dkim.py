"""DKIM: every message signed over its final bytes, verified by dkimpy against the loopback DNS."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

import dkim
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from notifier.config import DKIMSettings
from notifier.errors import ConfigError
from notifier.models import DeliveryStatus, Finding
from notifier.pipeline import Notifier
from notifier.sandbox.keys import publish_dkim, publish_wkd
from notifier.testing import Sandbox
from notifier.trust.dkim import DKIMSigner, public_record


def write_key(path: Path, kind: str) -> Path:
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def verify(box: Sandbox, raw: bytes) -> bool:
    """dkimpy's own verification, its key fetched by a real DNS query to the loopback server."""
    resolver = dns.resolver.Resolver(configure=False)
    host, port = box.dns.address
    resolver.nameservers = [host]
    resolver.port = port

    def txt(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(text, "TXT", lifetime=timeout)
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(answer[0].strings)

    return bool(await asyncio.to_thread(dkim.verify, raw, dnsfunc=txt))


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
async def test_every_message_verifies(sandbox: Sandbox, tmp_path: Path, kind: str) -> None:
    key_file = write_key(tmp_path / f"dkim-{kind}.pem", kind)
    publish_dkim(sandbox.dns, "sel1", "research.test", public_record(key_file))
    settings = sandbox.settings(
        dkim={"domain": "research.test", "selector": "sel1", "key_file": str(key_file)}
    )
    finding = Finding(
        ip_address("127.1.0.10"),
        "Redis on 6379 without auth",
        port=6379,
        observed_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    async with Notifier(settings) as notifier:
        result = await notifier.send([finding])
    assert {d.status for d in result.deliveries} == {DeliveryStatus.DELIVERED}
    assert len(sandbox.smtp.messages) == 2
    for message in sandbox.smtp.messages:
        assert message.raw.startswith(b"DKIM-Signature:")
        assert f"a={'ed25519' if kind == 'ed25519' else 'rsa'}-sha256".encode() in message.raw
        assert await verify(sandbox, message.raw)
        for before, after in ((b"Subject:", b"Subject: Re:"), (b"\r\n\r\n", b"\r\n\r\nP.S.")):
            tampered = message.raw.replace(before, after, 1)
            assert tampered != message.raw
            assert not await verify(sandbox, tampered)


async def test_dkim_covers_the_encrypted_bytes(sandbox: Sandbox, tmp_path: Path) -> None:
    from pgp_helpers import OWNER, make_keys, stop_agent

    keys = make_keys(tmp_path / "pgp", refused=False)
    try:
        publish_wkd(sandbox.web, OWNER, keys.owner)
        key_file = write_key(tmp_path / "dkim.pem", "ed25519")
        publish_dkim(sandbox.dns, "s2", "research.test", public_record(key_file))
        settings = sandbox.settings(
            dkim={"domain": "research.test", "selector": "s2", "key_file": str(key_file)},
            pgp={"signing_key": str(keys.signer_file)},
        )
        finding = Finding(ip_address("127.1.0.10"), "MongoDB on 27017 without auth", port=27017)
        async with Notifier(settings) as notifier:
            await notifier.send([finding])
        owner = next(m.raw for m in sandbox.smtp.messages if OWNER in m.rcpt_tos)
        assert b"multipart/encrypted" in owner
        assert await verify(sandbox, owner)
    finally:
        stop_agent(keys.home)


def test_bad_key_files_are_one_line_config_errors(tmp_path: Path) -> None:
    missing = DKIMSettings(domain="d.test", selector="s", key_file=str(tmp_path / "none.pem"))
    with pytest.raises(ConfigError, match="cannot read"):
        DKIMSigner.load(missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        DKIMSigner.load(DKIMSettings(domain="d.test", selector="s", key_file=str(junk)))
