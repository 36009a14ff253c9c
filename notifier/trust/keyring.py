"""OpenPGP through GnuPG: a private keyring per run, key checks, encryption, signatures.

Every run gets its own temporary GNUPGHOME, so nothing from the operator's own keyring (or
another run) is ever used by accident, and it is removed with its agent when the run ends.
Keys from the network are judged with ``--import-options show-only`` before they touch that
keyring, and a message is encrypted only to the fingerprint that passed the checks.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg

from ..addresses import clean_address
from ..errors import ConfigError

__all__ = [
    "Keyring",
    "KeyRejected",
    "CheckedKey",
    "Verification",
    "MAX_KEY_BYTES",
    "verify_cleartext",
]

# a certificate with a few hundred signatures is tens of kilobytes; more is a flooded key
MAX_KEY_BYTES = 262_144
_RSA_BITS = (2048, 8192)
# RSA, ECDH, ECDSA, EdDSA, and the RFC 9580 X25519/X448/Ed25519/Ed448 codes; DSA and ElGamal
# are gone from current implementations and are refused
_RSA = {"1", "2", "3"}
_ELLIPTIC = {"18", "19", "22", "25", "26", "27", "28"}
_CURVES = {
    "ed25519",
    "cv25519",
    "ed448",
    "cv448",
    "nistp256",
    "nistp384",
    "nistp521",
    "brainpoolp256r1",
    "brainpoolp384r1",
    "brainpoolp512r1",
    "",  # the RFC 9580 algorithms name no curve: the algorithm is the curve
}
_HASHES = {"2": "sha1", "8": "sha256", "9": "sha384", "10": "sha512", "11": "sha224"}
_GPG_TIMEOUT = 30.0


class KeyRejected(Exception):
    """A key that must not be used, with the reason in plain words."""


@dataclass(frozen=True, slots=True)
class CheckedKey:
    """A certificate that passed every check for ``address``."""

    fingerprint: str
    address: str
    data: bytes  # the certificate as fetched
    algorithm: str  # e.g. "ed25519/cv25519", "rsa3072"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking an OpenPGP signature."""

    valid: bool
    fingerprint: str = ""
    reason: str = ""


def _algorithm_problem(record: dict[str, Any]) -> str | None:
    algo = str(record.get("algo") or "")
    length = int(record.get("length") or 0)
    curve = str(record.get("curve") or "").lower()
    if algo in _RSA:
        if not _RSA_BITS[0] <= length <= _RSA_BITS[1]:
            return f"RSA key of {length} bits (accepted: {_RSA_BITS[0]} to {_RSA_BITS[1]})"
        return None
    if algo in _ELLIPTIC:
        return None if curve in _CURVES else f"unsupported curve {curve or '?'}"
    return f"unusable public-key algorithm {algo or '?'} (DSA, ElGamal and unknown are refused)"


def _describe(record: dict[str, Any]) -> str:
    curve = str(record.get("curve") or "")
    return curve or f"algo{record.get('algo')}-{record.get('length')}"


def _uid_address(uid: str) -> str | None:
    inner = uid.rpartition("<")[2].rstrip(">") if "<" in uid else uid
    return clean_address(inner.strip())


class Keyring:
    """A throwaway GnuPG home for one run, made on first use; close() deletes it and stops its
    agent."""

    def __init__(self) -> None:
        gpg_binary = shutil.which("gpg")
        if gpg_binary is None:
            raise ConfigError("OpenPGP needs GnuPG: no 'gpg' program found on PATH")
        self._binary = gpg_binary
        self._home: Path | None = None
        self._handle: gnupg.GPG | None = None
        self._lock = threading.Lock()
        self._signer: tuple[str, str | None] | None = None
        self._imported: set[str] = set()  # recipients' fingerprints already in this home

    @property
    def _gpg(self) -> gnupg.GPG:
        if self._handle is None:
            # short path: gpg-agent's socket path must fit in a sockaddr_un
            self._home = Path(tempfile.mkdtemp(prefix="ntf-gpg-"))
            # a fixed S2K count spares the agent its start-up calibration (seconds on a busy
            # machine); the keys in this home live only as long as the run, whose passphrase
            # is in its environment anyway
            (self._home / "gpg-agent.conf").write_text("s2k-count 65536\n")
            self._handle = gnupg.GPG(gpgbinary=self._binary, gnupghome=str(self._home))
            self._handle.encoding = "utf-8"
        return self._handle

    def close(self) -> None:
        if self._home is None:
            return
        gpgconf = shutil.which("gpgconf")
        if gpgconf is not None:
            subprocess.run(  # noqa: S603 - fixed arguments, our own temporary home
                [gpgconf, "--homedir", str(self._home), "--kill", "all"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        shutil.rmtree(self._home, ignore_errors=True)
        self._home = None
        self._handle = None
        self._imported.clear()

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recipients' keys --------------------------------------------------------------------

    def check(self, data: bytes, address: str) -> CheckedKey:
        """The one certificate in ``data`` usable to encrypt to ``address``; else KeyRejected.

        Refused: over the size cap; nothing parseable; expired, revoked or invalid; a primary
        key or encryption subkey of a weak or unknown algorithm; no valid encryption subkey;
        no valid user ID with ``address``. When several certificates pass, the newest is used.
        """
        if len(data) > MAX_KEY_BYTES:
            raise KeyRejected(f"key of {len(data)} bytes is over the {MAX_KEY_BYTES}-byte cap")
        wanted = address.lower()
        with tempfile.TemporaryDirectory(prefix="ntf-key-") as scratch:
            path = Path(scratch) / "key"
            path.write_bytes(data)
            with self._lock:
                scanned = self._gpg.scan_keys(str(path))
        certs = list(scanned)
        if not certs:
            raise KeyRejected("no OpenPGP key found in the data")
        reasons: list[str] = []
        passed: list[tuple[int, CheckedKey]] = []
        for cert in certs:
            fingerprint = str(cert.get("fingerprint") or "")
            try:
                algorithm = self._judge(cert, scanned.uid_map, wanted)
            except KeyRejected as exc:
                reasons.append(f"{fingerprint or 'key'}: {exc}")
                continue
            created = int(cert.get("date") or 0)
            passed.append((created, CheckedKey(fingerprint, wanted, data, algorithm)))
        if not passed:
            raise KeyRejected("; ".join(reasons[:3]))
        return max(passed, key=lambda item: item[0])[1]

    @staticmethod
    def _judge(cert: dict[str, Any], uid_map: dict[str, dict[str, str]], wanted: str) -> str:
        validity = str(cert.get("trust") or "")
        if validity == "r":
            raise KeyRejected("revoked")
        if validity == "e":
            raise KeyRejected("expired")
        if validity == "i":
            raise KeyRejected("invalid (bad self-signature)")
        problem = _algorithm_problem(cert)
        if problem:
            raise KeyRejected(problem)
        live = [
            uid
            for uid in cert.get("uids") or []
            if uid_map.get(uid, {}).get("trust") not in ("r", "e", "i")
        ]
        if not any(_uid_address(uid) == wanted for uid in live):
            shown = ", ".join(repr(u[:80]) for u in (cert.get("uids") or [])[:3]) or "none"
            raise KeyRejected(f"no valid user ID for {wanted} (user IDs: {shown})")
        if "E" not in str(cert.get("cap") or ""):
            raise KeyRejected("no valid encryption subkey")
        encrypting: list[dict[str, Any]] = []
        if "e" in str(cert.get("cap") or "").replace("E", ""):
            encrypting.append(cert)
        for sub in (cert.get("subkey_info") or {}).values():
            if "e" in str(sub.get("cap") or "") and sub.get("trust") not in ("r", "e", "i"):
                encrypting.append(sub)
        for sub in encrypting:
            problem = _algorithm_problem(sub)
            if problem:
                raise KeyRejected(f"encryption subkey: {problem}")
        names = dict.fromkeys([_describe(cert), *(_describe(s) for s in encrypting)])
        return "/".join(names)

    def encrypt(self, data: bytes, key: CheckedKey, *, sign: bool = False) -> bytes:
        """``data`` encrypted (ASCII-armoured) to exactly ``key``'s fingerprint."""
        with self._lock:
            if key.fingerprint not in self._imported:
                imported = self._gpg.import_keys(key.data)
                if key.fingerprint not in (imported.fingerprints or []):
                    raise KeyRejected(f"{key.fingerprint} did not import")
                self._imported.add(key.fingerprint)
            result = self._gpg.encrypt(
                data,
                [key.fingerprint],
                armor=True,
                always_trust=True,  # trust comes from where the key was found, checked above
                extra_args=["--no-encrypt-to", "--compliance", "gnupg"],
            )
        if not result.ok:
            raise KeyRejected(f"gpg could not encrypt: {result.status or result.stderr[-200:]}")
        return bytes(result.data)

    # -- our own signing key -----------------------------------------------------------------

    def load_signer(self, path: str, passphrase: str | None) -> str:
        """Import the armoured secret key at ``path``; its fingerprint. ConfigError if unusable."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"[pgp] signing_key: cannot read {path}: {exc.strerror}") from None
        with self._lock:
            imported = self._gpg.import_keys(data, passphrase=passphrase)
            secrets = self._gpg.list_keys(secret=True)
        if not secrets:
            raise ConfigError(f"[pgp] signing_key: {path} holds no OpenPGP secret key")
        fingerprint = str(secrets[0]["fingerprint"])
        if fingerprint not in (imported.fingerprints or []):
            raise ConfigError(f"[pgp] signing_key: {path} did not import")
        self._signer = (fingerprint, passphrase)
        try:
            self.sign_detached(b"probe\r\n")
        except ConfigError as exc:
            self._signer = None
            raise ConfigError(f"[pgp] signing_key: {path} cannot sign: {exc}") from None
        return fingerprint

    @property
    def signer(self) -> str | None:
        return self._signer[0] if self._signer else None

    def sign_detached(self, data: bytes) -> tuple[bytes, str]:
        """An armoured detached signature over ``data`` and its RFC 3156 ``micalg``."""
        if self._signer is None:
            raise ConfigError("no OpenPGP signing key loaded")
        fingerprint, passphrase = self._signer
        with self._lock:
            result = self._gpg.sign(
                data,
                keyid=fingerprint,
                passphrase=passphrase,
                detach=True,
                binary=False,
                extra_args=["--digest-algo", "SHA512"],
            )
        if not result.data:
            said = [line for line in str(result.stderr).splitlines() if line.startswith("gpg: ")]
            raise ConfigError(said[-1].removeprefix("gpg: ") if said else "gpg did not sign")
        micalg = "pgp-" + _HASHES.get(str(result.hash_algo), "sha512")
        return bytes(result.data), micalg


def verify_cleartext(text: bytes, key: bytes) -> Verification:
    """Check a cleartext-signed document against ``key`` (and only that key)."""
    gpg_binary = shutil.which("gpg")
    if gpg_binary is None:
        return Verification(False, reason="GnuPG is not installed")
    if len(key) > MAX_KEY_BYTES:
        return Verification(False, reason="the signer's key is over the size cap")
    # a fresh home holding this key alone: the signature must come from it
    home = tempfile.mkdtemp(prefix="ntf-v-")
    try:
        gpg = gnupg.GPG(gpgbinary=gpg_binary, gnupghome=home)
        imported = gpg.import_keys(key)
        if not imported.fingerprints:
            return Verification(False, reason="the signer's key could not be read")
        result = gpg.verify(text, extra_args=["--trust-model", "always"])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    primary = str(getattr(result, "pubkey_fingerprint", "") or result.fingerprint or "")
    if result.valid and primary in imported.fingerprints:
        return Verification(True, fingerprint=primary)
    if result.status == "no public key" or not primary:
        return Verification(False, reason="signed by another key")
    return Verification(False, fingerprint=primary, reason=str(result.status or "bad signature"))
