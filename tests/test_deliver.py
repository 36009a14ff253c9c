"""Delivery over real SMTP on loopback: retries, refusals, timeouts, TLS, AUTH, reuse, mapping."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from notifier.compose import ComposedMessage, compose
from notifier.config import Settings
from notifier.deliver import SMTP_ERROR_RULES, Mailer, _wire, classify, envelope_sender
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from notifier.models import Contact, DeliveryStatus, Finding, Role
from notifier.sandbox.smtp import DISCONNECT, SMTPServer
from notifier.sandbox.web import SandboxCA

NOW = datetime(2025, 1, 13, 10, 0, tzinfo=UTC)
PASSWORD = "s3cret-Pa55word!"
PASSWORD_B64 = base64.b64encode(b"\0mailer\0" + PASSWORD.encode()).decode()

ServerFactory = Callable[..., Any]


@pytest.fixture
async def smtp_server() -> AsyncIterator[ServerFactory]:
    """Start SMTPServer instances on loopback; all are stopped at the end of the test."""
    started: list[SMTPServer] = []

    async def start(**kw: Any) -> SMTPServer:
        server = SMTPServer(**kw)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


def settings_for(server: SMTPServer | None = None, **smtp: Any) -> Settings:
    section: dict[str, Any] = {"retry_wait": 0, "retry_wait_max": 0, "timeout": 2}
    if server is not None:
        section.update(server.smtp_settings())
    section.update(smtp)
    return Settings.from_mapping(
        {
            "sender": {
                "address": "Example Research <disclosure@research.example>",
                "organisation": "Example Research",
            },
            "smtp": section,
        }
    )


def message(
    settings: Settings, to: str = "abuse@ripe.net", text: str = "Redis open"
) -> ComposedMessage:
    return compose(
        [Finding(ip_address("193.0.6.139"), text, port=6379, observed_at=NOW)],
        Contact(to, Role.NETWORK, ("rdap",), 0.9),
        settings=settings,
        template=None,
        case_ref="NTF-TESTCASE01",
        now=NOW,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, DeliveryError | None, str]] = []

    def __call__(self, number: int, error: DeliveryError | None, reply: str) -> None:
        self.calls.append((number, error, reply))


class TestDelivery:
    async def test_accepted(self, smtp_server: ServerFactory) -> None:
        """An accepted message is DELIVERED with the server's reply, byte for byte as composed."""
        server = await smtp_server()
        settings = settings_for(server)
        composed = message(settings)
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(composed)
        assert delivery.status == DeliveryStatus.DELIVERED
        assert delivery.smtp_code == 250
        assert re.fullmatch(r"2\.0\.0 OK: queued as [0-9A-F]{10}", delivery.smtp_reply)
        assert delivery.attempts == 1
        assert delivery.digest == composed.digest
        assert delivery.message_id == composed.message_id
        [received] = server.messages
        assert received.raw == composed.raw
        assert hashlib.sha256(received.raw).hexdigest() == composed.digest
        assert received.mail_from == "disclosure@research.example"
        assert received.rcpt_tos == ("abuse@ripe.net",)
        assert received.message_id == composed.message_id
        assert received.mail_options == (f"SIZE={len(composed.raw)}",)
        assert delivery.smtp_reply.endswith(received.reply.split()[-1])

    async def test_greylisted_then_accepted(self, smtp_server: ServerFactory) -> None:
        """A 451 is retried; on_attempt reports the failed and the successful attempt."""
        server = await smtp_server(script={"abuse@ripe.net": ["451 4.7.1 Greylisted, retry"]})
        settings = settings_for(server)
        recorder = Recorder()
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings), on_attempt=recorder)
        assert delivery.status == DeliveryStatus.DELIVERED
        assert delivery.attempts == 2
        (n1, e1, r1), (n2, e2, r2) = recorder.calls
        assert (n1, n2) == (1, 2)
        assert isinstance(e1, TransientDeliveryError) and e1.smtp_code == 451
        assert r1 == "4.7.1 Greylisted, retry"
        assert e2 is None and r2.startswith("2.0.0 OK: queued as")
        assert len(server.messages) == 1

    async def test_async_hook_awaited(self, smtp_server: ServerFactory) -> None:
        """An async on_attempt callback is awaited after each attempt."""
        server = await smtp_server(script={"*": ["450 4.2.0 Busy"]})
        settings = settings_for(server)
        seen: list[int] = []

        async def hook(number: int, error: DeliveryError | None, reply: str) -> None:
            await asyncio.sleep(0)
            seen.append(number)

        async with Mailer(settings) as mailer:
            await mailer.send(message(settings), on_attempt=hook)
        assert seen == [1, 2]

    async def test_permanent_refusal_not_retried(self, smtp_server: ServerFactory) -> None:
        """A 550 fails at once: FAILED, one attempt, the code and reply kept."""
        server = await smtp_server(script={"abuse@ripe.net": ["550 5.1.1 No such user"]})
        settings = settings_for(server, retry_attempts=5)
        recorder = Recorder()
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings), on_attempt=recorder)
        assert delivery.status == DeliveryStatus.FAILED
        assert (delivery.attempts, delivery.smtp_code) == (1, 550)
        assert delivery.smtp_reply == "5.1.1 No such user"
        [(number, error, _reply)] = recorder.calls
        assert number == 1 and isinstance(error, PermanentDeliveryError)
        assert "abuse@ripe.net" in str(error) and "550" in str(error)
        assert server.messages == []

    async def test_refusal_at_end_of_data(self, smtp_server: ServerFactory) -> None:
        """A 554 to DATA (content refused) is a permanent failure too."""
        server = await smtp_server(script={"abuse@ripe.net": ["250 2.1.5 OK", "554 5.7.1 Spam"]})
        settings = settings_for(server)
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings))
        assert (delivery.status, delivery.smtp_code, delivery.attempts) == (
            DeliveryStatus.FAILED,
            554,
            1,
        )

    async def test_retries_exhausted(self, smtp_server: ServerFactory) -> None:
        """Transient refusals past retry_attempts end FAILED with the last code."""
        replies = ["451 4.3.0 Try again", "452 4.3.1 Full", "421 4.4.5 Busy", "250 OK"]
        server = await smtp_server(script={"abuse@ripe.net": replies})
        settings = settings_for(server, retry_attempts=3)
        recorder = Recorder()
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings), on_attempt=recorder)
        assert delivery.status == DeliveryStatus.FAILED
        assert (delivery.attempts, delivery.smtp_code) == (3, 421)
        assert [n for n, _e, _r in recorder.calls] == [1, 2, 3]
        assert all(isinstance(e, TransientDeliveryError) for _n, e, _r in recorder.calls)

    async def test_one_transaction_per_recipient(self, smtp_server: ServerFactory) -> None:
        """A refusal for one recipient does not affect the next message on the connection."""
        server = await smtp_server(script={"a@x.org": ["550 5.1.1 No such user"]})
        settings = settings_for(server)
        async with Mailer(settings) as mailer:
            first = await mailer.send(message(settings, "a@x.org"))
            second = await mailer.send(message(settings, "b@y.org"))
        assert (first.status, second.status) == (DeliveryStatus.FAILED, DeliveryStatus.DELIVERED)
        assert [m.rcpt_tos for m in server.messages] == [("b@y.org",)]

    async def test_verp_envelope_sender(self, smtp_server: ServerFactory) -> None:
        """envelope_from with {id} becomes a per-message return path the bounce maps back to."""
        server = await smtp_server()
        settings = settings_for(server, envelope_from="bounce+{id}@notify.example")
        composed = message(settings)
        async with Mailer(settings) as mailer:
            await mailer.send(composed)
        [received] = server.messages
        assert re.fullmatch(r"bounce\+[0-9a-f]{12}@notify\.example", received.mail_from)
        assert received.mail_from == envelope_sender(settings, composed)
        assert envelope_sender(settings, message(settings)) != received.mail_from

    async def test_fixed_envelope_sender(self, smtp_server: ServerFactory) -> None:
        """envelope_from without a placeholder is used as it is."""
        server = await smtp_server()
        settings = settings_for(server, envelope_from="bounces@notify.example")
        async with Mailer(settings) as mailer:
            await mailer.send(message(settings))
        assert server.messages[0].mail_from == "bounces@notify.example"


class TestTimeouts:
    async def test_silent_server_bounded(self) -> None:
        """A server that never greets fails each attempt within the timeout."""
        clients: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.append(writer)
            await reader.read()

        listener = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        settings = settings_for(host="127.0.0.1", port=port, timeout=0.1, retry_attempts=2)
        started = time.monotonic()
        try:
            async with Mailer(settings) as mailer:
                delivery = await mailer.send(message(settings))
        finally:
            for writer in clients:
                writer.close()
            listener.close()
            await listener.wait_closed()
        assert time.monotonic() - started < 2
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.attempts == 2 and delivery.smtp_code is None
        assert "Timeout" in delivery.smtp_reply or "Timed out" in delivery.smtp_reply

    async def test_slow_server_bounded(self, smtp_server: ServerFactory) -> None:
        """A server slower than the timeout is a transient failure, retried, then FAILED."""
        server = await smtp_server(delay=0.5)
        settings = settings_for(server, timeout=0.1, retry_attempts=2)
        recorder = Recorder()
        started = time.monotonic()
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings), on_attempt=recorder)
        assert time.monotonic() - started < 2
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
        assert all(isinstance(e, TransientDeliveryError) for _n, e, _r in recorder.calls)
        assert all("Timed out" in reply for _n, _e, reply in recorder.calls)

    async def test_connection_refused_is_transient(self) -> None:
        """Nobody listening is retried (the server may come back), then FAILED."""
        settings = settings_for(host="127.0.0.1", port=free_port(), retry_attempts=2)
        recorder = Recorder()
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings), on_attempt=recorder)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
        assert all(isinstance(e, TransientDeliveryError) for _n, e, _r in recorder.calls)


class TestTLS:
    @pytest.mark.parametrize("security", ["starttls", "tls"])
    async def test_tls_with_sandbox_ca(
        self, smtp_server: ServerFactory, tmp_path: Path, security: str
    ) -> None:
        """STARTTLS and implicit TLS deliver when the sandbox CA is the configured bundle."""
        ca = SandboxCA()
        server = await smtp_server(security=security, ca=ca)
        settings = settings_for(server, ca_bundle=str(ca.pem_path(tmp_path)))
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings))
        assert delivery.status == DeliveryStatus.DELIVERED
        [received] = server.messages
        assert received.tls

    @pytest.mark.parametrize("security", ["starttls", "tls"])
    async def test_untrusted_certificate_is_permanent(
        self, smtp_server: ServerFactory, security: str
    ) -> None:
        """A certificate no configured CA vouches for fails at once, without retries."""
        server = await smtp_server(security=security)
        settings = settings_for(server, retry_attempts=3)
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings))
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
        assert "certificate" in delivery.smtp_reply.lower()
        assert server.messages == []

    async def test_starttls_missing_is_permanent(
        self, smtp_server: ServerFactory, tmp_path: Path
    ) -> None:
        """Configured for STARTTLS against a server that does not offer it: FAILED, no retry."""
        server = await smtp_server()
        ca = SandboxCA()
        settings = settings_for(
            server, security="starttls", ca_bundle=str(ca.pem_path(tmp_path)), retry_attempts=3
        )
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings))
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
        assert "STARTTLS" in delivery.smtp_reply
        assert server.messages == []

    def test_unreadable_ca_bundle(self, tmp_path: Path) -> None:
        """A missing CA bundle is a configuration error before anything is sent, for every
        connection asking for it (a failure is not remembered as a context)."""
        settings = settings_for(security="tls", ca_bundle=str(tmp_path / "missing.pem"))
        for _ in range(2):
            with pytest.raises(ConfigError, match="ca_bundle"):
                Mailer(settings)

    def test_connections_share_one_tls_context(self, tmp_path: Path) -> None:
        """The system's CA store is read once a process, not once a connection (20 ms each)."""
        ca = SandboxCA()
        settings = settings_for(security="starttls", ca_bundle=str(ca.pem_path(tmp_path)))
        assert Mailer(settings)._tls_context is Mailer(settings)._tls_context
        assert Mailer(settings_for(security="none"))._tls_context is None


class TestAuth:
    async def test_password_from_environment(
        self, smtp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The password is read from the named environment variable and AUTH succeeds."""
        monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
        server = await smtp_server(username="mailer", password=PASSWORD)
        settings = settings_for(server, username="mailer", password_env="TEST_SMTP_PASSWORD")
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings))
            assert PASSWORD not in repr(mailer)
        assert delivery.status == DeliveryStatus.DELIVERED
        assert server.messages[0].auth_user == "mailer"

    async def test_server_requires_auth(self, smtp_server: ServerFactory) -> None:
        """Without credentials the sandbox refuses MAIL with 530 (permanent)."""
        server = await smtp_server(username="mailer", password=PASSWORD)
        settings = settings_for(server)
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings))
        assert (delivery.status, delivery.smtp_code) == (DeliveryStatus.FAILED, 530)

    async def test_wrong_password_never_revealed(
        self,
        smtp_server: ServerFactory,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Bad credentials fail permanently; the password is in no error, repr or log line."""
        monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
        server = await smtp_server(username="mailer", password="the-right-one")
        settings = settings_for(
            server, username="mailer", password_env="TEST_SMTP_PASSWORD", retry_attempts=3
        )
        recorder = Recorder()
        caplog.set_level(logging.DEBUG)
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(message(settings), on_attempt=recorder)
            mailer_repr = repr(mailer)
        assert (delivery.status, delivery.attempts, delivery.smtp_code) == (
            DeliveryStatus.FAILED,
            1,
            535,
        )
        [(_n, error, reply)] = recorder.calls
        assert isinstance(error, PermanentDeliveryError)
        texts = [str(error), repr(error), reply, repr(delivery), mailer_repr, caplog.text]
        cause: BaseException | None = error
        while cause is not None:
            texts += [str(cause), repr(cause), repr(cause.args)]
            cause = cause.__cause__ or cause.__context__
        for text in texts:
            assert PASSWORD not in text
            assert PASSWORD_B64 not in text

    def test_missing_password_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A username without its password variable is a configuration error naming the variable."""
        monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
        settings = settings_for(username="mailer", password_env="TEST_SMTP_PASSWORD")
        with pytest.raises(ConfigError, match="TEST_SMTP_PASSWORD"):
            Mailer(settings)


class TestConnectionReuse:
    async def test_one_connection_for_three_messages(self, smtp_server: ServerFactory) -> None:
        """Three messages travel over one SMTP connection."""
        server = await smtp_server()
        settings = settings_for(server)
        async with Mailer(settings) as mailer:
            for to in ("a@x.org", "b@y.org", "c@z.org"):
                delivery = await mailer.send(message(settings, to))
                assert delivery.status == DeliveryStatus.DELIVERED
            assert mailer.connections == 1
        assert server.connections == 1
        assert len(server.messages) == 3

    async def test_reconnects_after_drop(self, smtp_server: ServerFactory) -> None:
        """A connection the server dropped is replaced, and the message still goes through."""
        server = await smtp_server(script={"b@y.org": [DISCONNECT]})
        settings = settings_for(server)
        recorder = Recorder()
        async with Mailer(settings) as mailer:
            first = await mailer.send(message(settings, "a@x.org"))
            second = await mailer.send(message(settings, "b@y.org"), on_attempt=recorder)
            third = await mailer.send(message(settings, "c@z.org"))
        assert [d.status for d in (first, second, third)] == [DeliveryStatus.DELIVERED] * 3
        assert second.attempts == 2
        assert isinstance(recorder.calls[0][1], TransientDeliveryError)
        assert server.connections == 2

    @pytest.mark.parametrize("noticed", [False, True])
    @pytest.mark.parametrize("fresh", [10.0, 0.0])
    async def test_a_connection_closed_while_idle_is_replaced(
        self,
        smtp_server: ServerFactory,
        noticed: bool,
        fresh: float,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The server closed the connection between two messages (whether or not the client
        saw it go, and whether the connection counts as recently used, without a NOOP, or
        not): the next message goes over a new one, with no failed attempt to show for it."""
        monkeypatch.setattr("notifier.deliver.FRESH_SECONDS", fresh)
        server = await smtp_server()
        settings = settings_for(server)
        recorder = Recorder()
        async with Mailer(settings) as mailer:
            first = await mailer.send(message(settings, "a@x.org"))
            server.drop_connections()
            if noticed:
                await asyncio.sleep(0.1)
            second = await mailer.send(message(settings, "b@y.org"), on_attempt=recorder)
            assert mailer.connections == 2
        assert [d.status for d in (first, second)] == [DeliveryStatus.DELIVERED] * 2
        assert second.attempts == 1
        assert [(number, error) for number, error, _ in recorder.calls] == [(1, None)]
        assert [m.rcpt_tos for m in server.messages] == [("a@x.org",), ("b@y.org",)]

    async def test_concurrent_sends_share_the_connection(self, smtp_server: ServerFactory) -> None:
        """Concurrent sends are serialised on the one connection."""
        server = await smtp_server()
        settings = settings_for(server)
        async with Mailer(settings) as mailer:
            deliveries = await asyncio.gather(
                *(mailer.send(message(settings, f"n{i}@x.org")) for i in range(4))
            )
        assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
        assert server.connections == 1


def _instance(klass: type[BaseException], code: int) -> BaseException:
    """An instance of an aiosmtplib exception class, with ``code`` where it takes one."""
    if klass is aiosmtplib.SMTPRecipientsRefused:
        return klass([aiosmtplib.SMTPRecipientRefused(code, "refused", "a@x.org")])
    if klass in (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused):
        return klass(code, "refused", "a@x.org")
    if issubclass(klass, aiosmtplib.SMTPResponseException):
        return klass(code, "refused")
    return klass("failed")


# what each class must map to for a 4xx and for a 5xx reply (the same when it carries no code)
EXPECTED: dict[str, tuple[type[DeliveryError], type[DeliveryError]]] = {
    "SMTPAuthenticationError": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPConnectError": (TransientDeliveryError, TransientDeliveryError),
    "SMTPDataError": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPException": (PermanentDeliveryError, PermanentDeliveryError),
    "SMTPHeloError": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPNotSupported": (PermanentDeliveryError, PermanentDeliveryError),
    "SMTPRecipientRefused": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPRecipientsRefused": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPResponseException": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPSenderRefused": (TransientDeliveryError, PermanentDeliveryError),
    "SMTPServerDisconnected": (TransientDeliveryError, TransientDeliveryError),
    "SMTPTimeoutError": (TransientDeliveryError, TransientDeliveryError),
    "SMTPConnectTimeoutError": (TransientDeliveryError, TransientDeliveryError),
    "SMTPReadTimeoutError": (TransientDeliveryError, TransientDeliveryError),
    "SMTPConnectResponseError": (TransientDeliveryError, PermanentDeliveryError),
}


class TestClassify:
    def test_every_aiosmtplib_exception_mapped(self) -> None:
        """Every exception class aiosmtplib exports has a rule and the expected verdicts."""
        classes = [
            getattr(aiosmtplib, name)
            for name in aiosmtplib.__all__
            if isinstance(getattr(aiosmtplib, name), type)
            and issubclass(getattr(aiosmtplib, name), BaseException)
        ]
        assert classes
        for klass in classes:
            assert klass in SMTP_ERROR_RULES, f"{klass.__name__} is not classified"
            assert klass.__name__ in EXPECTED, f"{klass.__name__} has no expected verdict"
            transient, permanent = EXPECTED[klass.__name__]
            assert classify(_instance(klass, 451)) is transient, klass.__name__
            assert classify(_instance(klass, 550)) is permanent, klass.__name__

    def test_mixed_refusals(self) -> None:
        """Several refused recipients are transient only if every refusal is."""
        mixed = aiosmtplib.SMTPRecipientsRefused(
            [
                aiosmtplib.SMTPRecipientRefused(451, "later", "a@x.org"),
                aiosmtplib.SMTPRecipientRefused(550, "never", "b@x.org"),
            ]
        )
        assert classify(mixed) is PermanentDeliveryError

    def test_malformed_reply_is_transient(self) -> None:
        """A reply too broken to carry a code (-1) is retried, within the attempt limit."""
        assert classify(aiosmtplib.SMTPResponseException(-1, "garbage")) is TransientDeliveryError

    def test_os_and_ssl_errors(self) -> None:
        """Network errors are transient; TLS misconfiguration and bad certificates permanent."""
        assert classify(ConnectionRefusedError()) is TransientDeliveryError
        assert classify(ConnectionResetError()) is TransientDeliveryError
        assert classify(socket.gaierror()) is TransientDeliveryError
        assert classify(TimeoutError()) is TransientDeliveryError
        assert classify(ssl.SSLEOFError()) is TransientDeliveryError
        assert classify(ssl.SSLCertVerificationError()) is PermanentDeliveryError
        assert classify(ssl.SSLError()) is PermanentDeliveryError
        assert classify(ValueError("bad address")) is PermanentDeliveryError

    def test_connect_error_caused_by_tls(self) -> None:
        """A connect error caused by an untrusted certificate is permanent."""
        error = aiosmtplib.SMTPConnectError("Error connecting")
        error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
        assert classify(error) is PermanentDeliveryError

    def test_unrelated_exceptions_refused(self) -> None:
        """An exception that is no delivery failure is not silently classified."""
        with pytest.raises(TypeError):
            classify(KeyError("x"))


class TestWire:
    """DATA carries a composed message exactly as aiosmtplib's ``data`` would, without its two
    regular expressions over the whole message (``deliver._wire``)."""

    def test_same_bytes_as_aiosmtplib(self) -> None:
        # aiosmtplib's own transform, the oracle: line ends made CRLF, leading dots doubled
        from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

        rng = random.Random(7)
        fast = 0
        for _ in range(20_000):
            raw = bytes(rng.choice(b"a.\r\n ") for _ in range(rng.randrange(0, 14)))
            wire = _wire(raw)
            if wire is None:  # a bare line end: aiosmtplib's ``data`` takes it
                assert raw.count(b"\r") != raw.count(b"\r\n") or raw.count(b"\n") != raw.count(
                    b"\r\n"
                )
                continue
            fast += 1
            expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) + b".\r\n"
            assert wire == expected, raw
        assert fast > 2_000

    @pytest.mark.parametrize(
        "body",
        [
            b".leading dot\r\n..two\r\n.\r\nlast line unended.",
            b"\r\n.\r\n",
            b"",
            b"bare\nline feed\r\n.dot\n",  # aiosmtplib's way: lines made CRLF on the wire
        ],
    )
    async def test_odd_messages_arrive_as_sent(
        self, smtp_server: ServerFactory, body: bytes
    ) -> None:
        server = await smtp_server()
        settings = settings_for(server)
        composed = message(settings)
        raw = composed.raw + body
        async with Mailer(settings) as mailer:
            delivery = await mailer.send(dataclasses.replace(composed, raw=raw))
            again = await mailer.send(composed)  # the session goes on after either way
        assert delivery.status == again.status == DeliveryStatus.DELIVERED
        received = [m.raw for m in server.messages]
        crlf = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        # every line ended in CRLF, the last one too, and no dot lost or added
        assert received == [crlf.removesuffix(b"\r\n") + b"\r\n", composed.raw]
