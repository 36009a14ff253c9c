"""RFC 3161 time-stamps over the chain head.

The ``rfc3161-client`` library builds the query, decodes the reply (status, the token, its
TSTInfo and certificates) and, when ``verify`` is given trusted TSA certificates, checks the
token against them (the chain at genTime, the critical time-stamping key usage). What it cannot
do stays here: checking the token's CMS signature with the certificate the token carries, with
no trust anchor at all (its verifier needs a root and exposes no signer's signed attributes),
which is what ``timestamp_head`` and a verify without ``[audit] tsa_ca`` rely on.

Both libraries, and pyasn1's RFC modules, are imported where they are used: together they cost
a fifth of a second at start-up, and most runs (and every worker process) never timestamp.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

from ..errors import AuditError
from .chain import format_head, parse_head
from .fileio import atomic_write, make_dir

if TYPE_CHECKING:
    from rfc3161_client import TimeStampResponse

__all__ = [
    "MAX_TSA_REPLY",
    "OID_SHA256",
    "TimestampToken",
    "token_name",
    "build_timestamp_request",
    "parse_timestamp_reply",
    "timestamp_head",
    "token_claims",
    "trusted",
]

MAX_TSA_REPLY = 256 * 1024
TOKEN_NAME = re.compile(r"(\d{1,12})-([0-9a-f]{16})\.tsr")


OID_SHA256 = "2.16.840.1.101.3.4.2.1"
_DIGESTS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": hashes.SHA1,
    "2.16.840.1.101.3.4.2.4": hashes.SHA224,
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_SIG_DIGESTS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.5": hashes.SHA1,
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
    "1.2.840.10045.4.1": hashes.SHA1,
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}
_OID_RSA_PSS = "1.2.840.113549.1.1.10"
_STATUS = {
    0: "granted",
    1: "granted with modifications",
    2: "rejection",
    3: "waiting",
    4: "revocation warning",
    5: "revocation notification",
}


@dataclass(frozen=True, slots=True)
class TimestampToken:
    """The checked content of an RFC 3161 reply."""

    gen_time: datetime
    serial: int
    policy: str
    nonce: int | None
    hash_algorithm: str  # OID
    imprint: bytes
    signer: x509.Certificate
    reply: TimeStampResponse = field(repr=False, compare=False)


def token_name(count: int, last_hash: str) -> str:
    return f"{count}-{last_hash[:16]}.tsr"


def build_timestamp_request(head_text: str) -> tuple[bytes, int]:
    """A DER ``TimeStampReq`` over ``sha256(head_text)`` asking for the TSA certificate, and
    the random nonce it carries."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    request = TimestampRequestBuilder(
        data=head_text.encode("utf-8"),
        hash_algorithm=HashAlgorithm.SHA256,
        nonce=True,
        cert_req=True,
    ).build()
    nonce = request.nonce
    assert nonce is not None  # asked for above
    return request.as_bytes(), nonce


def _decode(data: bytes, spec: Any, what: str) -> Any:
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1.error import PyAsn1Error

    try:
        value, rest = der_decoder.decode(data, asn1Spec=spec)
    except (PyAsn1Error, ValueError, TypeError, RecursionError) as exc:
        raise AuditError(f"{what} is not valid DER: {str(exc)[:120]}") from None
    if rest:
        raise AuditError(f"{what} has trailing bytes")
    return value


def parse_timestamp_reply(data: bytes) -> TimestampToken:
    """Decode a DER ``TimeStampResp`` and check it: status, structure, CMS signature.

    The signature is checked with the certificate the token carries; whether that certificate
    deserves trust is a separate question (``verify(..., tsa_trust=...)``, or ``openssl ts
    -verify -CAfile``). Raises ``AuditError`` on anything wrong.
    """
    from pyasn1.error import PyAsn1Error

    try:
        with warnings.catch_warnings():
            # a certificate cryptography only warns about today (a non-positive serial...) is
            # refused here, not printed to the user's terminal
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            return _parse_timestamp_reply(data)
    except AuditError:
        raise
    except (
        CryptographyDeprecationWarning,
        OverflowError,
        PyAsn1Error,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        RecursionError,
        UnsupportedAlgorithm,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        x509.InvalidVersion,
    ) as exc:
        # hostile DER can trip any layer of pyasn1 or cryptography: one error type leaves here
        raise AuditError(f"malformed timestamp reply: {str(exc)[:120]}") from None


def _parse_timestamp_reply(data: bytes) -> TimestampToken:
    from rfc3161_client import decode_timestamp_response

    try:
        reply = decode_timestamp_response(data)
    except ValueError as exc:
        raise AuditError(f"timestamp reply is not valid DER: {str(exc)[:120]}") from None
    status = reply.status
    if status not in (0, 1):
        said = reply.status_string
        text = (": " + " ".join(said)[:200]) if said else ""
        raise AuditError(f"the TSA refused the request ({_STATUS.get(status, status)}{text})")
    try:
        info = reply.tst_info
        token = reply.time_stamp_token()
    except ValueError:
        raise AuditError("the TSA granted the request but sent no token") from None
    certs = [x509.load_der_x509_certificate(der) for der in reply.signed_data.certificates]
    signer = _check_cms_signature(token, certs)
    gen_time = info.gen_time
    gen_time = gen_time.replace(tzinfo=UTC) if gen_time.tzinfo is None else gen_time.astimezone(UTC)
    imprint = info.message_imprint
    return TimestampToken(
        gen_time=gen_time,
        serial=info.serial_number,
        policy=info.policy.dotted_string,
        nonce=info.nonce,
        hash_algorithm=imprint.hash_algorithm.dotted_string,
        imprint=imprint.message,
        signer=signer,
        reply=reply,
    )


def _check_cms_signature(token_der: bytes, certs: list[x509.Certificate]) -> x509.Certificate:
    """Verify the token's single SignerInfo over its TSTInfo (RFC 5652 §5.4) with the
    certificate the token carries; return that certificate.

    The library decoded the same token bytes already; the signed attributes and the signature
    it does not expose are read here.
    """
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1.type import univ
    from pyasn1_modules import rfc3161, rfc5652

    token = _decode(token_der, rfc5652.ContentInfo(), "timestamp token")
    if token["contentType"] != rfc5652.id_signedData:
        raise AuditError("the timestamp token is not CMS SignedData")
    signed = _decode(bytes(token["content"]), rfc5652.SignedData(), "timestamp token")
    encap = signed["encapContentInfo"]
    if encap["eContentType"] != rfc3161.id_ct_TSTInfo or not encap["eContent"].isValue:
        raise AuditError("the timestamp token does not hold a TSTInfo")
    content = bytes(encap["eContent"])
    infos = signed["signerInfos"]
    if len(infos) != 1:
        raise AuditError(f"the timestamp token has {len(infos)} signers, expected 1")
    info = infos[0]
    signer = _find_signer(info["sid"], certs)
    digest_oid = str(info["digestAlgorithm"]["algorithm"])
    if digest_oid not in _DIGESTS:
        raise AuditError(f"unsupported digest algorithm in the timestamp token: {digest_oid}")
    algorithm = _DIGESTS[digest_oid]()
    if not info["signedAttrs"].isValue:
        raise AuditError("the timestamp token has no signed attributes")
    attrs = {str(a["attrType"]): a["attrValues"] for a in info["signedAttrs"]}
    ctype = attrs.get(str(rfc5652.id_contentType))
    mdigest = attrs.get(str(rfc5652.id_messageDigest))
    if ctype is None or mdigest is None or len(ctype) != 1 or len(mdigest) != 1:
        raise AuditError("the timestamp token lacks its content-type or digest attribute")
    if _decode(bytes(ctype[0]), univ.ObjectIdentifier(), "content type") != rfc3161.id_ct_TSTInfo:
        raise AuditError("the signed content type is not TSTInfo")
    expected = hashes.Hash(algorithm)
    expected.update(content)
    if bytes(_decode(bytes(mdigest[0]), univ.OctetString(), "digest")) != expected.finalize():
        raise AuditError("the timestamp token's signed digest does not match its content")
    # the signature covers the DER of the attributes with the SET OF tag, not the [0] tag
    signed_bytes = b"\x31" + bytes(der_encoder.encode(info["signedAttrs"]))[1:]
    signature = bytes(info["signature"])
    sig_oid = str(info["signatureAlgorithm"]["algorithm"])
    key = signer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if sig_oid == _OID_RSA_PSS:
                pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
                key.verify(signature, signed_bytes, pss, algorithm)
            else:
                pkcs = padding.PKCS1v15()
                key.verify(signature, signed_bytes, pkcs, _sig_hash(sig_oid, algorithm))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed_bytes, ec.ECDSA(_sig_hash(sig_oid, algorithm)))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed_bytes)
        else:
            raise AuditError("unsupported key type in the timestamp token's certificate")
    except InvalidSignature:
        raise AuditError("the timestamp token's signature does not verify") from None
    return signer


def _sig_hash(oid: str, fallback: hashes.HashAlgorithm) -> hashes.HashAlgorithm:
    return _SIG_DIGESTS[oid]() if oid in _SIG_DIGESTS else fallback


def _find_signer(sid: Any, certs: list[x509.Certificate]) -> x509.Certificate:
    from pyasn1.codec.der import encoder as der_encoder

    if not certs:
        raise AuditError("the timestamp token carries no certificate to check it with")
    if sid.getName() == "issuerAndSerialNumber":
        ias = sid["issuerAndSerialNumber"]
        issuer = bytes(der_encoder.encode(ias["issuer"]))
        serial = int(ias["serialNumber"])
        for cert in certs:
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer:
                return cert
    else:
        ski = bytes(sid["subjectKeyIdentifier"])
        for cert in certs:
            try:
                ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ext.value.digest == ski:
                return cert
    raise AuditError("the timestamp token's signer certificate is not in the token")


def trusted(token: TimestampToken, trust: Iterable[x509.Certificate]) -> bool:
    """Whether one of the ``trust`` certificates vouches for the token at its genTime."""
    from rfc3161_client import VerificationError, VerifierBuilder

    anchors = list(trust)
    signer = token.signer
    # a trust list may name the TSA's own certificate, which OpenSSL only accepts with its issuer
    if (
        signer in anchors
        and signer.not_valid_before_utc <= token.gen_time <= signer.not_valid_after_utc
    ):
        return True
    if not anchors:
        return False
    try:
        VerifierBuilder(roots=anchors).build().verify(token.reply, token.imprint)
    except (VerificationError, ValueError):
        return False
    return True


async def timestamp_head(
    url: str,
    head: str,
    http: httpx.AsyncClient,
    *,
    timeout: float,  # noqa: ASYNC109 - one deadline for the whole TSA exchange
    store_dir: str | os.PathLike[str] | None = None,
) -> bytes:
    """Ask the RFC 3161 TSA at ``url`` to timestamp the chain head ``"N:HASH"``.

    Sends a ``TimeStampReq`` over ``sha256(head)`` with a random nonce and ``certReq``, checks
    the reply's status, signature, nonce and message imprint, and returns the DER
    ``TimeStampResp``. With ``store_dir`` it is also kept as ``<N>-<hash16>.tsr`` (0600), the
    form ``openssl ts -verify -in FILE -data HEADFILE -CAfile TSA.pem`` reads.
    """
    count, digest = parse_head(head)
    text = format_head(count, digest)
    query, nonce = build_timestamp_request(text)
    headers = {
        "Content-Type": "application/timestamp-query",
        "Accept": "application/timestamp-reply",
    }
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("POST", url, content=query, headers=headers) as response:
                if response.status_code != 200:
                    raise AuditError(f"the TSA answered HTTP {response.status_code}")
                body = bytearray()
                async for block in response.aiter_bytes():
                    body += block
                    if len(body) > MAX_TSA_REPLY:
                        raise AuditError("the TSA's reply is too large")
    except TimeoutError:
        raise AuditError(f"the TSA did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise AuditError(f"cannot reach the TSA: {exc.__class__.__name__}") from None
    reply = bytes(body)
    token = parse_timestamp_reply(reply)
    if token.nonce != nonce:
        raise AuditError("the TSA's reply carries another nonce: not an answer to our request")
    if (
        token.hash_algorithm != OID_SHA256
        or token.imprint != hashlib.sha256(text.encode("utf-8")).digest()
    ):
        raise AuditError("the TSA timestamped something other than our head")
    if store_dir is not None:
        directory = Path(store_dir)
        try:
            make_dir(directory.parent)
            make_dir(directory)
            atomic_write(directory / token_name(count, digest), reply)
        except OSError as exc:
            raise AuditError(f"cannot store the timestamp token: {exc.strerror}") from None
    return reply


def token_claims(directory: Path) -> list[tuple[int, str, Path]]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(f"cannot read {directory}: {exc.strerror}") from None
    claims = []
    for entry in entries:
        match = TOKEN_NAME.fullmatch(entry.name)
        if match and int(match.group(1)) > 0:
            claims.append((int(match.group(1)), match.group(2), entry))
    return claims
