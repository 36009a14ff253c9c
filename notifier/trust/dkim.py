"""DKIM signatures (RFC 6376, RFC 8463) over the final bytes of every message, with dkimpy."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..config import DKIMSettings
from ..errors import ConfigError

__all__ = ["DKIMSigner", "public_record"]

# the headers a recipient sees and a forger would change; each listed once more than present
# (RFC 6376 §8.15 over-signing) so that none can be added after signing
_SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-language",
    b"auto-submitted",
    b"x-notifier-case",
    b"x-notifier-log-head",
)


@dataclass(frozen=True, slots=True)
class DKIMSigner:
    domain: str
    selector: str
    key: bytes  # PKCS#1 PEM for RSA, base64 of the 32-byte seed for Ed25519
    algorithm: bytes  # rsa-sha256 or ed25519-sha256

    @classmethod
    def load(cls, settings: DKIMSettings) -> DKIMSigner:
        path = Path(settings.key_file)
        try:
            data = path.read_bytes()
            private = serialization.load_pem_private_key(data, password=None)
        except OSError as exc:
            raise ConfigError(f"[dkim] key_file: cannot read {path}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"[dkim] key_file: {path} is not a PEM private key: {exc}") from None
        if isinstance(private, rsa.RSAPrivateKey):
            if private.key_size < 1024:
                raise ConfigError(
                    f"[dkim] key_file: RSA key of {private.key_size} bits is too weak"
                )
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            return cls(settings.domain, settings.selector, pem, b"rsa-sha256")
        if isinstance(private, ed25519.Ed25519PrivateKey):
            seed = private.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            return cls(
                settings.domain, settings.selector, base64.b64encode(seed), b"ed25519-sha256"
            )
        raise ConfigError(f"[dkim] key_file: {path}: only RSA and Ed25519 keys are supported")

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature header in front."""
        import dkim  # a tenth of a second to import: only runs that sign pay it

        present = {line.split(b":", 1)[0].strip().lower() for line in _header_lines(raw)}
        names = [h for h in _SIGNED_HEADERS if h in present] * 2
        header = dkim.sign(
            raw,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.key,
            signature_algorithm=self.algorithm,
            include_headers=names,
            canonicalize=(b"relaxed", b"relaxed"),
            linesep=b"\r\n",
        )
        return bytes(header) + raw


def _header_lines(raw: bytes) -> list[bytes]:
    head = raw.partition(b"\r\n\r\n")[0]
    return [line for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]


def public_record(key_file: str | Path) -> str:
    """The TXT record to publish at ``SELECTOR._domainkey.DOMAIN`` for the key in ``key_file``."""
    private = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    public = private.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
