"""Ed25519 keys that sign outcome records."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import ConfigError

__all__ = ["key_id", "load_signing_key", "load_verify_key"]


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key: names the key in records."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_signing_key(path: str | os.PathLike[str]) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at ``path``; ``ConfigError`` otherwise.

    The error never quotes the file's contents.
    """
    file = Path(path)
    data = _read_key_file(file, "signing key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{file}: not an unencrypted PEM Ed25519 private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{file}: the signing key must be Ed25519")
    return key


def load_verify_key(path: str | os.PathLike[str]) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key in a PEM file (a public key, or the private key it belongs to)."""
    file = Path(path)
    data = _read_key_file(file, "key file")
    if b"PRIVATE KEY" in data:
        return load_signing_key(file).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{file}: not a PEM Ed25519 public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{file}: the verification key must be Ed25519")
    return key
