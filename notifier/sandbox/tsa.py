"""A loopback RFC 3161 time-stamping authority with throwaway keys.

It answers real DER ``TimeStampReq`` queries with real ``TimeStampResp`` replies: a TSTInfo inside
CMS SignedData, signed (ECDSA P-256, SHA-256) by a TSA certificate that a throwaway CA issued, with
the signed attributes RFC 3161 and RFC 5816 ask for (content type, message digest,
signing-certificate-v2). ``openssl ts -verify -CAfile <ca_pem>`` accepts its tokens.

Mount it on a :class:`~notifier.sandbox.web.WebServer` (``tsa.mount(server, "/tsa")``) or call
:meth:`TimestampAuthority.respond` directly. ``mode`` makes it misbehave for tests.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ, useful
from pyasn1_modules import rfc3161, rfc5035, rfc5280, rfc5652

from .web import Reply, Request, WebServer

__all__ = ["TimestampAuthority", "Mode"]

Mode = Literal[
    "ok",  # a correct reply
    "reject",  # status rejection (badRequest)
    "wrong-nonce",  # a signed token answering some other request's nonce
    "wrong-imprint",  # a signed token over some other hash
    "bad-signature",  # the signature bytes are corrupted
    "garbage",  # not DER at all
    "http-error",  # HTTP 500
]

_OID_SHA256 = univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_OID_ECDSA_SHA256 = univ.ObjectIdentifier("1.2.840.10045.4.3.2")
_POLICY = univ.ObjectIdentifier("2.999.1")  # the ITU example arc: never a real policy
# PKIFailureInfo bit numbers (RFC 3161 §2.4.2)
_BAD_ALG, _BAD_REQUEST, _BAD_DATA_FORMAT = 0, 2, 5


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "notifier sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sha256_alg() -> Any:
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = _OID_SHA256
    return algorithm


class TimestampAuthority:
    """A throwaway TSA: ``respond(query_der) -> reply_der``, or an HTTP route via ``mount``."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        # valid around both the real time and the injected one, so a frozen clock still issues
        # tokens that fall inside the certificate's validity
        now = datetime.now(UTC)
        moment = self._clock().astimezone(UTC)
        start, end = min(now, moment) - timedelta(days=1), max(now, moment) + timedelta(days=30)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("sandbox TSA root"))
            .issuer_name(_name("sandbox TSA root"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("sandbox TSA"))
            .issuer_name(self.ca_cert.subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .sign(ca_key, hashes.SHA256())
        )
        self._cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        self._serial = secrets.randbits(40)
        self.mode: Mode = "ok"
        self.queries: list[bytes] = []

    def ca_pem(self) -> bytes:
        """The root certificate in PEM: the trust anchor for ``openssl ts -verify -CAfile``."""
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    def mount(self, server: WebServer, path: str = "/tsa") -> None:
        """Answer POSTs to ``path`` on ``server``."""
        server.route(path, self.handle)

    def handle(self, request: Request) -> Reply:
        """The HTTP face (RFC 3161 §3.4): POST ``application/timestamp-query``."""
        if self.mode == "http-error":
            return Reply(500, b"internal error", {"Content-Type": "text/plain"})
        if request.method != "POST":
            return Reply(405, b"POST a timestamp query\n", {"Content-Type": "text/plain"})
        return Reply(
            200, self.respond(request.body), {"Content-Type": "application/timestamp-reply"}
        )

    def respond(self, query: bytes) -> bytes:
        """A DER ``TimeStampResp`` for the DER ``TimeStampReq`` ``query``."""
        self.queries.append(query)
        if self.mode == "garbage":
            return b"\x30\x03not a reply"
        try:
            request, rest = der_decoder.decode(query, asn1Spec=rfc3161.TimeStampReq())
        except (PyAsn1Error, ValueError, TypeError):
            return self._refusal(_BAD_DATA_FORMAT, "request is not DER")
        if rest:
            return self._refusal(_BAD_DATA_FORMAT, "trailing bytes after the request")
        if self.mode == "reject":
            return self._refusal(_BAD_REQUEST, "rejected on purpose")
        imprint = request["messageImprint"]
        if imprint["hashAlgorithm"]["algorithm"] != _OID_SHA256:
            return self._refusal(_BAD_ALG, "only SHA-256 imprints")
        hashed = bytes(imprint["hashedMessage"])
        nonce = int(request["nonce"]) if request["nonce"].isValue else None
        if self.mode == "wrong-imprint":
            hashed = hashlib.sha256(b"something else").digest()
        if self.mode == "wrong-nonce" and nonce is not None:
            nonce += 1
        token = self._token(hashed, nonce, bool(request["certReq"]))
        reply = rfc3161.TimeStampResp()
        reply["status"]["status"] = 0
        reply["timeStampToken"]["contentType"] = token["contentType"]
        reply["timeStampToken"]["content"] = token["content"]
        return bytes(der_encoder.encode(reply))

    def _refusal(self, fail_bit: int, text: str) -> bytes:
        reply = rfc3161.TimeStampResp()
        status = reply["status"]
        status["status"] = 2
        status["statusString"].append(text)
        status["failInfo"] = rfc3161.PKIFailureInfo(binValue="0" * fail_bit + "1")
        return bytes(der_encoder.encode(reply))

    def _token(self, hashed: bytes, nonce: int | None, with_cert: bool) -> Any:
        self._serial += 1
        moment = self._clock().astimezone(UTC)
        info = rfc3161.TSTInfo()
        info["version"] = 1
        info["policy"] = _POLICY
        info["messageImprint"]["hashAlgorithm"]["algorithm"] = _OID_SHA256
        info["messageImprint"]["hashedMessage"] = hashed
        info["serialNumber"] = self._serial
        info["genTime"] = useful.GeneralizedTime(moment.strftime("%Y%m%d%H%M%SZ"))
        info["accuracy"]["seconds"] = 1
        if nonce is not None:
            info["nonce"] = nonce
        tst_der = bytes(der_encoder.encode(info))

        signer = rfc5652.SignerInfo()
        signer["version"] = 1
        cert, _ = der_decoder.decode(self._cert_der, asn1Spec=rfc5280.Certificate())
        sid = signer["sid"]["issuerAndSerialNumber"]
        sid["issuer"] = cert["tbsCertificate"]["issuer"]
        sid["serialNumber"] = cert["tbsCertificate"]["serialNumber"]
        signer["digestAlgorithm"] = _sha256_alg()
        for attribute in self._signed_attributes(tst_der):
            signer["signedAttrs"].append(attribute)
        to_sign = b"\x31" + bytes(der_encoder.encode(signer["signedAttrs"]))[1:]
        signature = self._key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        if self.mode == "bad-signature":
            signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
        signer["signatureAlgorithm"]["algorithm"] = _OID_ECDSA_SHA256
        signer["signature"] = signature

        signed = rfc5652.SignedData()
        signed["version"] = 3
        signed["digestAlgorithms"].append(_sha256_alg())
        signed["encapContentInfo"]["eContentType"] = rfc3161.id_ct_TSTInfo
        signed["encapContentInfo"]["eContent"] = tst_der
        if with_cert:
            choice = rfc5652.CertificateChoices()
            choice["certificate"] = cert
            signed["certificates"].append(choice)
        signed["signerInfos"].append(signer)

        token = rfc5652.ContentInfo()
        token["contentType"] = rfc5652.id_signedData
        token["content"] = der_encoder.encode(signed)
        return token

    def _signed_attributes(self, tst_der: bytes) -> list[Any]:
        def attribute(oid: Any, value: Any) -> Any:
            item = rfc5652.Attribute()
            item["attrType"] = oid
            item["attrValues"].append(der_encoder.encode(value))
            return item

        cert_id = rfc5035.ESSCertIDv2()
        cert_id["certHash"] = hashlib.sha256(self._cert_der).digest()
        signing_cert = rfc5035.SigningCertificateV2()
        signing_cert["certs"].append(cert_id)
        return [
            attribute(rfc5652.id_contentType, rfc3161.id_ct_TSTInfo),
            attribute(rfc5652.id_messageDigest, univ.OctetString(hashlib.sha256(tst_der).digest())),
            attribute(rfc5035.id_aa_signingCertificateV2, signing_cert),
        ]
