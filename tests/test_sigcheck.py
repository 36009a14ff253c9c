"""The OpenPGP signature of a signed security.txt: verified against the owner's published key."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest
from pgp_helpers import gpg, one_key, stop_agent

from notifier.pipeline import Notifier
from notifier.sandbox.keys import publish_wkd
from notifier.sandbox.web import Reply
from notifier.sources.securitytxt import parse_security_txt
from notifier.testing import Sandbox
from notifier.trust.sigcheck import signature_status

HOST = "records.health-dept.test"
OWNER = "security@health-dept.test"


def signed_file(home: Path, fpr: str, *, encryption: str = "") -> bytes:
    text = f"Contact: mailto:{OWNER}\nExpires: 2099-01-01T00:00:00Z\n"
    if encryption:
        text += f"Encryption: {encryption}\n"
    return gpg(home, "--local-user", fpr, "--clearsign", data=text.encode())


def serve(box: Sandbox, body: bytes) -> None:
    box.web.route(
        "/.well-known/security.txt",
        Reply(200, body, {"Content-Type": "text/plain; charset=utf-8"}),
        host=HOST,
    )


async def provenance(box: Sandbox) -> str:
    async with Notifier(box.settings()) as notifier:
        resolution = await notifier.resolve(ip_address("127.1.0.10"))
    owner = next(c for c in resolution.recipients if c.address == OWNER)
    return " | ".join([*owner.provenance, *resolution.notes])


@pytest.mark.corpus
async def test_corpus_signed_files_have_no_key_here(sandbox: Sandbox, corpus_dir: Path) -> None:
    files = sorted((corpus_dir / "securitytxt").glob("*signed*"))
    assert len(files) >= 3
    async with Notifier(sandbox.settings()) as notifier:
        for path in files:
            body = path.read_bytes()
            url = f"https://{HOST}/.well-known/security.txt"
            parsed = parse_security_txt(body.decode(), url=url, now=notifier.ctx.clock())
            assert parsed.signed, path.name
            status = await signature_status(
                body, url, parsed.encryption, parsed.contacts, notifier.ctx
            )
            assert status == "signature not verified: key not available", path.name


async def test_key_on_the_same_origin_verifies(sandbox: Sandbox, tmp_path: Path) -> None:
    home, fpr, key = one_key(tmp_path, f"Health Dept <{OWNER}>")
    try:
        url = f"https://{HOST}:{sandbox.web.port}/pgp-key.txt"
        sandbox.web.route("/pgp-key.txt", Reply(200, key), host=HOST)
        serve(sandbox, signed_file(home, fpr, encryption=url))
        shown = await provenance(sandbox)
        assert f"signature verified by fingerprint {fpr} (key from {url})" in shown
    finally:
        stop_agent(home)


async def test_wkd_key_of_a_contact_verifies(sandbox: Sandbox, tmp_path: Path) -> None:
    home, fpr, key = one_key(tmp_path, f"Health Dept <{OWNER}>")
    try:
        publish_wkd(sandbox.web, OWNER, key)
        serve(sandbox, signed_file(home, fpr))
        assert f"signature verified by fingerprint {fpr}" in await provenance(sandbox)
    finally:
        stop_agent(home)


async def test_other_key_or_edited_file_does_not_verify(sandbox: Sandbox, tmp_path: Path) -> None:
    home, fpr, key = one_key(tmp_path, f"Health Dept <{OWNER}>")
    other_home, _other_fpr, other_key = one_key(tmp_path, f"Mallory <{OWNER}>")
    try:
        publish_wkd(sandbox.web, OWNER, other_key)
        serve(sandbox, signed_file(home, fpr))
        assert "signature not verified: signed by another key" in await provenance(sandbox)

        publish_wkd(sandbox.web, OWNER, key)
        edited = signed_file(home, fpr).replace(b"2099", b"2098")
        serve(sandbox, edited)
        shown = await provenance(sandbox)
        assert "signature not verified:" in shown and "verified by fingerprint" not in shown
    finally:
        stop_agent(home)
        stop_agent(other_home)
