"""PGP/MIME (RFC 3156) around a finished message, with protected headers (RFC 9788 style).

Works on the exact bytes compose produced, so that what is signed is byte for byte what the
recipient's client checks: the body entity keeps its own MIME headers, gains the message's
headers as ``protected-headers="v1"`` copies, and is then signed (multipart/signed) and/or
encrypted (multipart/encrypted). The outer Subject of an encrypted message names only the case.
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP

from .keyring import CheckedKey, Keyring

__all__ = ["wrap", "neutral_subject", "split_message", "parse_message"]

CRLF = b"\r\n"
# what the recipient's client shows from the inner part; copied into it, the outer copy of
# Subject is replaced when encrypting
_PROTECTED = (
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
)


def neutral_subject(case_ref: str) -> str:
    return f"[{case_ref}] Security notification (encrypted)"


def split_message(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Header fields as (lower-case name, raw folded bytes with CRLF) and the body."""
    head, sep, body = raw.partition(CRLF + CRLF)
    if not sep:
        raise ValueError("message without a header/body separator")
    fields: list[tuple[str, bytes]] = []
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line + CRLF)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower().decode("ascii"), line + CRLF))
    return fields, body


def _boundary() -> str:
    return "=_ntf_" + secrets.token_hex(12)


def _body_entity(fields: list[tuple[str, bytes]], body: bytes) -> bytes:
    """The message body as a MIME entity, its headers protected, without a trailing CRLF."""
    lines: list[bytes] = []
    for name, value in fields:
        if name == "content-type":
            lines.append(value.rstrip(CRLF) + b';\r\n protected-headers="v1"' + CRLF)
        elif name.startswith("content-"):
            lines.append(value)
    if not any(name == "content-type" for name, _ in fields):
        lines.append(b'Content-Type: text/plain; charset="us-ascii"; protected-headers="v1"\r\n')
    lines += [value for name, value in fields if name in _PROTECTED]
    return b"".join(lines) + CRLF + body.rstrip(CRLF)


def _signed(entity: bytes, keyring: Keyring) -> bytes:
    signature, micalg = keyring.sign_detached(entity)
    boundary = _boundary()
    return b"".join(
        [
            f'Content-Type: multipart/signed; micalg="{micalg}";\r\n'
            f' protocol="application/pgp-signature";\r\n boundary="{boundary}"\r\n\r\n'.encode(),
            b"This is an OpenPGP/MIME signed message (RFC 3156).\r\n",
            f"--{boundary}\r\n".encode(),
            entity,
            f"\r\n--{boundary}\r\n".encode(),
            b'Content-Type: application/pgp-signature; name="signature.asc"\r\n',
            b"Content-Description: OpenPGP digital signature\r\n",
            b'Content-Disposition: attachment; filename="signature.asc"\r\n\r\n',
            signature.replace(CRLF, b"\n").replace(b"\n", CRLF).rstrip(CRLF),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )


def _encrypted(entity: bytes, key: CheckedKey, keyring: Keyring) -> bytes:
    armoured = keyring.encrypt(entity + CRLF, key)
    boundary = _boundary()
    return b"".join(
        [
            f'Content-Type: multipart/encrypted;\r\n protocol="application/pgp-encrypted";\r\n'
            f' boundary="{boundary}"\r\n\r\n'.encode(),
            b"This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n",
            f"--{boundary}\r\n".encode(),
            b"Content-Type: application/pgp-encrypted\r\n",
            b"Content-Description: PGP/MIME version identification\r\n\r\n",
            b"Version: 1\r\n",
            f"\r\n--{boundary}\r\n".encode(),
            b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n',
            b"Content-Description: OpenPGP encrypted message\r\n",
            b'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n',
            armoured.replace(CRLF, b"\n").replace(b"\n", CRLF).rstrip(CRLF),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )


def wrap(
    raw: bytes,
    *,
    keyring: Keyring,
    key: CheckedKey | None,
    sign: bool,
    case_ref: str,
) -> tuple[bytes, EmailMessage]:
    """``raw`` signed (when ``sign``) and encrypted to ``key`` (when given), as new bytes."""
    fields, body = split_message(raw)
    entity = _body_entity(fields, body)
    if sign:
        entity = _signed(entity, keyring)
    payload = _encrypted(entity, key, keyring) if key is not None else entity
    outer: list[bytes] = []
    for name, value in fields:
        if name == "content-language":
            outer.append(value)  # the language is not a secret, and every message states it
        elif name.startswith("content-") or name == "mime-version":
            continue
        elif name == "subject" and key is not None:
            outer.append(f"Subject: {neutral_subject(case_ref)}\r\n".encode())
        else:
            outer.append(value)
    outer.append(b"MIME-Version: 1.0\r\n")
    # the payload starts with its own Content-Type: it becomes the message's
    final = b"".join(outer) + payload
    return final, parse_message(final)


def parse_message(raw: bytes) -> EmailMessage:
    return BytesParser(_class=EmailMessage, policy=SMTP).parsebytes(raw)
