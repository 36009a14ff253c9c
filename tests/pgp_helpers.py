"""Throwaway OpenPGP keys made with the real gpg, and checks of captured PGP/MIME messages."""

from __future__ import annotations

import email
import re
import subprocess
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

OWNER = "security@health-dept.test"
SENDER = "disclosure@research.test"


def gpg(home: Path, *args: str, data: bytes | None = None, check: bool = True) -> bytes:
    done = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"gpg {args}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def fast_agent(home: Path) -> None:
    """No S2K calibration at the agent's start: it takes seconds on a loaded machine."""
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")


def fingerprint(home: Path, uid: str) -> str:
    listing = gpg(home, "--with-colons", "--list-keys", uid).decode()
    return re.findall(r"^fpr:+([0-9A-F]+):", listing, re.M)[0]


@dataclass
class Keys:
    home: Path  # holds every secret: the tests decrypt and verify with it
    owner: bytes  # security@health-dept.test, ed25519 + cv25519
    owner_fpr: str
    expired: bytes
    revoked: bytes
    weak: bytes  # RSA 1024
    dsa: bytes
    wrong: bytes  # a valid key whose user ID is another address
    signer_file: Path  # our armoured secret key
    signer_fpr: str


def make_keys(root: Path, *, refused: bool = True) -> Keys:
    """The keys; ``refused=False`` leaves out the unusable ones (slow to make: DSA, RSA)."""
    home = root / "gpg"
    root.mkdir(parents=True, exist_ok=True)
    home.mkdir(mode=0o700)
    fast_agent(home)

    def new(uid: str, algo: str, *, when: str = "", subkey: str = "cv25519") -> bytes:
        faked = ["--faked-system-time", when] if when else []
        gpg(home, *faked, "--quick-gen-key", uid, algo, "cert,sign", "1y")
        fpr = fingerprint(home, uid)
        if subkey:
            gpg(home, *faked, "--quick-add-key", fpr, subkey, "encr", "1y")
        return gpg(home, "--export", fpr)

    owner = new(f"Health Dept <{OWNER}>", "ed25519")
    if not refused:
        signer_fpr, signer_file = signer(home, root)
        return Keys(
            home, owner, fingerprint(home, OWNER), b"", b"", b"", b"", b"", signer_file, signer_fpr
        )
    expired = new(f"Old <{OWNER.replace('security', 'old')}>", "ed25519", when="20200101T000000")
    revoked_uid = f"Gone <{OWNER.replace('security', 'gone')}>"
    new(revoked_uid, "ed25519")
    gone = fingerprint(home, revoked_uid)
    rev = (home / "openpgp-revocs.d" / f"{gone}.rev").read_text().replace(":-----", "-----")
    gpg(home, "--import", data=rev.encode())
    revoked = gpg(home, "--export", gone)
    weak = new(f"Weak <{OWNER.replace('security', 'weak')}>", "rsa1024", subkey="rsa1024")
    dsa = new(f"Dsa <{OWNER.replace('security', 'dsa')}>", "dsa2048", subkey="elg2048")
    wrong = new("Someone <someone@elsewhere.test>", "ed25519")
    signer_fpr, signer_file = signer(home, root)
    return Keys(
        home,
        owner,
        fingerprint(home, OWNER),
        expired,
        revoked,
        weak,
        dsa,
        wrong,
        signer_file,
        signer_fpr,
    )


def signer(home: Path, root: Path) -> tuple[str, Path]:
    gpg(home, "--quick-gen-key", f"Research <{SENDER}>", "ed25519", "sign", "1y")
    signer_fpr = fingerprint(home, SENDER)
    signer_file = root / "signing-key.asc"
    signer_file.write_bytes(gpg(home, "--armor", "--export-secret-keys", signer_fpr))
    return signer_fpr, signer_file


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.SMTP)  # type: ignore[return-value]


def decrypt(keys: Keys, raw: bytes) -> bytes:
    """The plaintext entity of a multipart/encrypted message, decrypted by gpg."""
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/encrypted"
    assert msg.get_param("protocol") == "application/pgp-encrypted"
    control, payload = msg.get_payload()  # type: ignore[misc]
    assert control.get_content_type() == "application/pgp-encrypted"
    assert b"Version: 1" in control.get_payload(decode=True)
    return gpg(keys.home, "--decrypt", data=payload.get_payload(decode=True))


def verify_signed(keys: Keys, entity: bytes, tmp: Path) -> str:
    """Check a multipart/signed entity with gpg; the signing key's fingerprint."""
    head, _, _ = entity.partition(b"\r\n\r\n")
    boundary = re.search(rb'boundary="([^"]+)"', head).group(1)  # type: ignore[union-attr]
    parts = entity.split(b"--" + boundary)
    signed = parts[1][2:-2]  # between "--b\r\n" and "\r\n--b"
    signature = parts[2].partition(b"\r\n\r\n")[2]
    (tmp / "signed").write_bytes(signed)
    (tmp / "sig.asc").write_bytes(signature)
    done = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(keys.home),
            "--batch",
            "--status-fd",
            "1",
            "--verify",
            str(tmp / "sig.asc"),
            str(tmp / "signed"),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    status = done.stdout.decode()
    assert done.returncode == 0 and "GOODSIG" in status, done.stderr.decode()
    return re.findall(r"VALIDSIG \S+ .* ([0-9A-F]{40})$", status, re.M)[0]


def stop_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, timeout=10)


def one_key(root: Path, uid: str) -> tuple[Path, str, bytes]:
    """A gpg home holding one fresh ed25519 key for ``uid``: (home, fingerprint, public key)."""
    home = root / f"gpg-{len(list(root.glob('gpg-*')))}"
    home.mkdir(mode=0o700, parents=True)
    fast_agent(home)
    gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "1y")
    fpr = fingerprint(home, uid)
    return home, fpr, gpg(home, "--export", fpr)
