"""Signed outcome records and RFC 3161 timestamps of the chain head, against a loopback TSA."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc3161

from notifier.config import Settings
from notifier.errors import AuditError, ConfigError
from notifier.ledger import (
    AuditLog,
    TimestampToken,
    build_timestamp_request,
    format_head,
    head,
    key_id,
    load_signing_key,
    load_verify_key,
    parse_timestamp_reply,
    record_hash,
    timestamp_head,
    verify,
)
from notifier.ledger.timestamps import trusted
from notifier.sandbox.tsa import TimestampAuthority
from notifier.sandbox.web import Reply, WebServer

SAMPLE_TSA = TimestampAuthority()
SAMPLE_REPLY = SAMPLE_TSA.respond(build_timestamp_request("5:" + "e" * 64)[0])

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class StepClock:
    """A frozen clock that moves one second per reading."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def signer() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def signed_log(tmp_path: Path, signer: ed25519.Ed25519PrivateKey) -> AuditLog:
    log = AuditLog(tmp_path / "state" / "audit.jsonl", clock=StepClock(), signer=signer)
    log.append("intent", attempt_id="a1", recipient="abuse@example.net")
    log.append("outcome", attempt_id="a1", recipient="abuse@example.net", status="delivered")
    log.append("ack", attempt_id="a1")
    return log


def write_pem(path: Path, key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def replace_line(path: Path, index: int, record: dict[str, object]) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    lines[index] = line.encode()
    path.write_bytes(b"".join(lines))


class TestSigning:
    def test_only_outcomes_are_signed(
        self, signed_log: AuditLog, signer: ed25519.Ed25519PrivateKey
    ) -> None:
        """Outcome records carry key_id and an Ed25519 signature over their hash bytes."""
        records = list(signed_log.records())
        assert ["sig" in r for r in records] == [False, True, False]
        outcome = records[1]
        assert outcome["key_id"] == key_id(signer.public_key())
        assert len(outcome["key_id"]) == 16
        signature = base64.b64decode(outcome["sig"])
        signer.public_key().verify(signature, bytes.fromhex(outcome["hash"]))

    def test_signatures_verify_with_the_public_key(
        self, signed_log: AuditLog, signer: ed25519.Ed25519PrivateKey
    ) -> None:
        """verify with the public key checks every signature."""
        report = verify(signed_log.path, public_key=signer.public_key())
        assert report.ok and report.signatures == 1

    def test_forged_signature_fails(
        self, signed_log: AuditLog, signer: ed25519.Ed25519PrivateKey
    ) -> None:
        """A signature made with another key under the same key_id is caught."""
        outcome = list(signed_log.records())[1]
        forger = ed25519.Ed25519PrivateKey.generate()
        forged = base64.b64encode(forger.sign(bytes.fromhex(outcome["hash"]))).decode()
        replace_line(signed_log.path, 1, dict(outcome, sig=forged))
        assert verify(signed_log.path).ok  # the signature is outside the hash chain...
        report = verify(signed_log.path, public_key=signer.public_key())
        assert (report.first_bad, report.problems[0].kind) == (2, "signature")

    def test_signature_over_another_record_fails(
        self, signed_log: AuditLog, signer: ed25519.Ed25519PrivateKey
    ) -> None:
        """A valid signature copied from elsewhere does not fit this record's hash."""
        outcome = list(signed_log.records())[1]
        other = base64.b64encode(signer.sign(b"\x00" * 32)).decode()
        replace_line(signed_log.path, 1, dict(outcome, sig=other))
        report = verify(signed_log.path, public_key=signer.public_key())
        assert report.problems[0].kind == "signature"

    def test_removed_signature_is_caught_without_a_key(self, signed_log: AuditLog) -> None:
        """key_id is inside the hash, so stripping sig shows even with no key at hand."""
        outcome = list(signed_log.records())[1]
        del outcome["sig"]
        replace_line(signed_log.path, 1, outcome)
        report = verify(signed_log.path)
        assert (report.first_bad, report.problems[0].kind) == (2, "signature")

    def test_wrong_public_key_is_reported(self, signed_log: AuditLog) -> None:
        """Records signed by a key other than the one given are named with their key_id."""
        other = ed25519.Ed25519PrivateKey.generate().public_key()
        report = verify(signed_log.path, public_key=other)
        assert report.problems[0].kind == "signature"
        assert "another key" in report.problems[0].detail

    def test_garbage_signature_is_reported(
        self, signed_log: AuditLog, signer: ed25519.Ed25519PrivateKey
    ) -> None:
        """A sig that is not even base64 is a signature problem, not a crash."""
        outcome = list(signed_log.records())[1]
        replace_line(signed_log.path, 1, dict(outcome, sig="***"))
        report = verify(signed_log.path, public_key=signer.public_key())
        assert report.problems[0].kind == "signature"

    def test_key_id_is_covered_by_the_hash(self, signed_log: AuditLog) -> None:
        """Changing key_id breaks the record's own hash."""
        outcome = list(signed_log.records())[1]
        assert outcome["hash"] == record_hash(outcome)
        replace_line(signed_log.path, 1, dict(outcome, key_id="0" * 16))
        assert verify(signed_log.path).problems[0].kind == "edited"


class TestKeys:
    def test_load_signing_key(self, tmp_path: Path, signer: ed25519.Ed25519PrivateKey) -> None:
        """An unencrypted PKCS#8 PEM Ed25519 key loads, and its public half too."""
        path = write_pem(tmp_path / "k.pem", signer)
        loaded = load_signing_key(path)
        assert key_id(loaded.public_key()) == key_id(signer.public_key())
        assert key_id(load_verify_key(path)) == key_id(signer.public_key())
        public = tmp_path / "k.pub"
        public.write_bytes(
            signer.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        assert key_id(load_verify_key(public)) == key_id(signer.public_key())

    def test_bad_key_file_never_echoes_its_content(self, tmp_path: Path) -> None:
        """A broken key file is a ConfigError that does not quote the file."""
        path = tmp_path / "k.pem"
        path.write_text(
            "-----BEGIN PRIVATE KEY-----\nSUPERSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_signing_key(path)
        assert "SUPERSECRET" not in str(caught.value)

    def test_other_key_types_are_refused(self, tmp_path: Path) -> None:
        """Only Ed25519 signs the log."""
        path = write_pem(tmp_path / "rsa.pem", rsa.generate_private_key(65537, 1024))
        with pytest.raises(ConfigError, match="Ed25519"):
            load_signing_key(path)

    def test_missing_key_file(self, tmp_path: Path) -> None:
        """A missing file is bad configuration."""
        with pytest.raises(ConfigError, match="cannot read"):
            load_signing_key(tmp_path / "absent.pem")

    def test_settings_turn_signing_on(
        self, tmp_path: Path, signer: ed25519.Ed25519PrivateKey
    ) -> None:
        """audit.signing_key in the settings makes from_settings sign outcomes."""
        key = write_pem(tmp_path / "k.pem", signer)
        settings = Settings.from_mapping(
            {"state": {"dir": str(tmp_path / "st")}, "audit": {"signing_key": str(key)}}
        )
        log = AuditLog.from_settings(settings, clock=StepClock())
        assert log.path == tmp_path / "st" / "audit.jsonl"
        assert "sig" in log.append("outcome", status="delivered")
        assert log.verify().signatures == 1


@pytest.fixture
async def tsa() -> AsyncIterator[tuple[TimestampAuthority, WebServer]]:
    authority = TimestampAuthority(clock=lambda: START)
    server = WebServer()
    authority.mount(server, "/tsa")
    server.route(
        "/slow",
        Reply(200, b"\x30" * 40, {"Content-Type": "application/timestamp-reply"}, drip=0.05),
    )
    await server.start()
    try:
        yield authority, server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


class TestTimestamp:
    async def test_round_trip(
        self,
        signed_log: AuditLog,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
    ) -> None:
        """The head is timestamped, the token kept beside the log, and verify checks it."""
        authority, server = tsa
        count, last = head(signed_log.path)
        path, anchor = await signed_log.timestamp(server.url() + "tsa", http, timeout=5)
        assert path == signed_log.timestamps_dir / f"{count}-{last[:16]}.tsr"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(signed_log.timestamps_dir.stat().st_mode) == 0o700
        assert anchor["event"] == "anchor" and anchor["head"] == format_head(count, last)
        assert anchor["gen_time"] == "2024-05-01T12:00:00Z"
        seen = server.requests[-1]
        assert seen.method == "POST"
        assert seen.headers["content-type"] == "application/timestamp-query"
        report = signed_log.verify(tsa_trust=[authority.ca_cert])
        assert report.ok, report.summary()
        assert report.timestamps == [(count, START)]

    async def test_returned_reply_is_what_was_stored(
        self,
        signed_log: AuditLog,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
    ) -> None:
        """timestamp_head returns the DER reply and stores the same bytes."""
        _, server = tsa
        text = format_head(*head(signed_log.path))
        reply = await timestamp_head(
            server.url() + "tsa", text, http, timeout=5, store_dir=signed_log.timestamps_dir
        )
        token = parse_timestamp_reply(reply)
        assert token.imprint == hashlib.sha256(text.encode()).digest()
        assert token.gen_time == START
        stored = list(signed_log.timestamps_dir.iterdir())
        assert [p.read_bytes() for p in stored] == [reply]

    @pytest.mark.parametrize(
        ("mode", "message"),
        [
            ("reject", "refused"),
            ("wrong-nonce", "nonce"),
            ("wrong-imprint", "something other"),
            ("bad-signature", "signature"),
            ("garbage", "DER"),
            ("http-error", "HTTP 500"),
        ],
    )
    async def test_bad_replies_are_refused(
        self,
        tmp_path: Path,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
        mode: str,
        message: str,
    ) -> None:
        """Every way a TSA reply can be wrong is an AuditError, and nothing is stored."""
        authority, server = tsa
        authority.mode = mode  # type: ignore[assignment]
        with pytest.raises(AuditError, match=message):
            await timestamp_head(
                server.url() + "tsa", "1:" + "a" * 64, http, timeout=5, store_dir=tmp_path / "ts"
            )
        assert not (tmp_path / "ts").exists()

    async def test_slow_tsa_times_out(
        self, tsa: tuple[TimestampAuthority, WebServer], http: httpx.AsyncClient
    ) -> None:
        """A TSA dripping its answer cannot hold the run past the timeout."""
        _, server = tsa
        with pytest.raises(AuditError, match="did not answer"):
            await timestamp_head(server.url() + "slow", "1:" + "a" * 64, http, timeout=0.2)

    async def test_unreachable_tsa(self, http: httpx.AsyncClient) -> None:
        """A closed port is an AuditError, not an httpx exception."""
        with pytest.raises(AuditError, match="cannot reach"):
            await timestamp_head("http://127.0.0.1:9/tsa", "1:" + "a" * 64, http, timeout=2)

    async def test_rewritten_chain_contradicts_its_timestamp(
        self,
        signed_log: AuditLog,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
    ) -> None:
        """Re-hashing the whole chain after a timestamp is caught by the stored token."""
        _, server = tsa
        await signed_log.timestamp(server.url() + "tsa", http, timeout=5)
        records = list(signed_log.records())
        prev = "0" * 64
        lines = []
        for record in records:
            body = {k: v for k, v in record.items() if k not in ("hash", "sig", "key_id")}
            body["prev"] = prev
            if body["event"] == "ack":
                body["attempt_id"] = "rewritten"
            body["hash"] = record_hash(body)
            prev = body["hash"]
            lines.append(json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n")
        signed_log.path.write_text("".join(lines))
        assert verify(signed_log.path).ok
        report = signed_log.verify()
        # caught twice: by the token, and by the head the store recorded after its last append
        assert report.first_bad == 3
        assert {"timestamp", "head-mismatch"} <= {p.kind for p in report.problems}

    async def test_truncation_below_a_timestamp_is_caught(
        self,
        signed_log: AuditLog,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
    ) -> None:
        """A token for line N proves the log once had N lines."""
        _, server = tsa
        await signed_log.timestamp(server.url() + "tsa", http, timeout=5)
        lines = signed_log.path.read_bytes().splitlines(keepends=True)
        signed_log.path.write_bytes(b"".join(lines[:2]))
        report = signed_log.verify()
        assert (report.first_bad, report.problems[0].kind) == (3, "truncated")

    async def test_untrusted_tsa_is_reported(
        self,
        signed_log: AuditLog,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
    ) -> None:
        """With a trust list, a token from any other TSA is a problem."""
        _, server = tsa
        await signed_log.timestamp(server.url() + "tsa", http, timeout=5)
        stranger = TimestampAuthority()
        report = signed_log.verify(tsa_trust=[stranger.ca_cert])
        assert report.problems[0].kind == "timestamp"
        assert "untrusted" in report.problems[0].detail

    async def test_altered_token_is_reported(
        self,
        signed_log: AuditLog,
        tsa: tuple[TimestampAuthority, WebServer],
        http: httpx.AsyncClient,
    ) -> None:
        """A stored token that was tampered with no longer verifies."""
        _, server = tsa
        path, _ = await signed_log.timestamp(server.url() + "tsa", http, timeout=5)
        data = bytearray(path.read_bytes())
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
        report = signed_log.verify()
        assert report.problems[0].kind == "timestamp"

    @pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
    def test_openssl_accepts_the_sandbox_tokens(self, tmp_path: Path) -> None:
        """The loopback TSA's replies are real RFC 3161: openssl ts -verify accepts them."""
        authority = TimestampAuthority()
        text = "7:" + "c" * 64
        (tmp_path / "head").write_text(text)
        (tmp_path / "ca.pem").write_bytes(authority.ca_pem())
        (tmp_path / "r.tsr").write_bytes(authority.respond(build_timestamp_request(text)[0]))
        result = subprocess.run(
            ["openssl", "ts", "-verify", "-in", "r.tsr", "-data", "head", "-CAfile", "ca.pem"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        assert "Verification: OK" in result.stdout

    def test_sandbox_refuses_queries_it_cannot_serve(self) -> None:
        """Not-DER queries and non-SHA-256 imprints get a rejection status, not a token."""
        authority = TimestampAuthority()
        with pytest.raises(AuditError, match="refused.*not DER"):
            parse_timestamp_reply(authority.respond(b"junk"))
        request = rfc3161.TimeStampReq()
        request["version"] = 1
        request["messageImprint"]["hashAlgorithm"]["algorithm"] = univ.ObjectIdentifier(
            "1.3.14.3.2.26"
        )
        request["messageImprint"]["hashedMessage"] = hashlib.sha1(b"head").digest()  # noqa: S324
        sha1_query = der_encoder.encode(request)
        with pytest.raises(AuditError, match="SHA-256"):
            parse_timestamp_reply(authority.respond(sha1_query))

    @pytest.mark.parametrize("data", [b"", b"\x30\x00", b"\x30\x80\x00\x00", b"garbage" * 10])
    def test_garbage_replies_raise_audit_errors(self, data: bytes) -> None:
        """Whatever bytes come back, parsing fails with an AuditError."""
        with pytest.raises(AuditError):
            parse_timestamp_reply(data)


class TestTimestampParsingProperties:
    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=400))
    def test_arbitrary_bytes_only_raise_audit_errors(self, data: bytes) -> None:
        """Random bytes from a TSA are refused with an AuditError and nothing else."""
        with pytest.raises(AuditError):
            parse_timestamp_reply(data)

    @settings(max_examples=100, deadline=None)
    @given(
        st.integers(min_value=0, max_value=len(SAMPLE_REPLY) - 1),
        st.integers(min_value=1, max_value=255),
    )
    def test_damaged_replies_never_crash(self, offset: int, flip: int) -> None:
        """A reply with one changed byte either still checks out or is an AuditError."""
        data = bytearray(SAMPLE_REPLY)
        data[offset] ^= flip
        try:
            token = parse_timestamp_reply(bytes(data))
        except AuditError:
            return
        # only bytes outside what the signature covers may change without notice
        assert token.imprint == hashlib.sha256(("5:" + "e" * 64).encode()).digest()


class TestTimestampTrust:
    """Trust in a token's TSA is checked by rfc3161-client: the chain at the token's genTime."""

    @staticmethod
    def _token(authority: TimestampAuthority) -> TimestampToken:
        return parse_timestamp_reply(authority.respond(build_timestamp_request("3:" + "d" * 64)[0]))

    def test_the_ca_or_the_tsas_own_certificate_vouch_for_it(self) -> None:
        authority = TimestampAuthority(clock=lambda: START)
        token = self._token(authority)
        assert trusted(token, [authority.ca_cert])
        assert trusted(token, [authority.cert])  # the TSA's own certificate as the anchor
        assert not trusted(token, [TimestampAuthority().ca_cert])
        assert not trusted(token, [])

    def test_a_reply_that_is_not_der_is_refused(self) -> None:
        """BER where DER is required (a BOOLEAN TRUE that is not 0xFF) is refused whole."""
        reply = SAMPLE_REPLY
        at = reply.index(b"\x01\x01\xff")
        bent = reply[:at] + b"\x01\x01\x01" + reply[at + 3 :]
        with pytest.raises(AuditError, match="not valid DER"):
            parse_timestamp_reply(bent)
