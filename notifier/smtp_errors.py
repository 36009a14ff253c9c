"""How an SMTP failure is judged: worth retrying (``TransientDeliveryError``: 4xx replies,
timeouts, dropped connections) or not (``PermanentDeliveryError``: 5xx replies, no STARTTLS, bad
credentials, an untrusted certificate), and what of the server's reply is kept."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import aiosmtplib

from .addresses import header_text
from .errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

__all__ = ["REPLY_LIMIT", "SMTP_ERROR_RULES", "classify", "describe"]

_Rule = Callable[[BaseException], type[DeliveryError]]
REPLY_LIMIT = 1000


def _by_code(exc: BaseException) -> type[DeliveryError]:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and 500 <= code < 600:
        return PermanentDeliveryError
    # 4xx, and replies too malformed to carry a code (-1): retrying is bounded, giving up is not
    # undoable
    return TransientDeliveryError


def _auth(exc: BaseException) -> type[DeliveryError]:
    code = getattr(exc, "code", None)
    # RFC 4954 454 is "temporary authentication failure"; everything else is wrong credentials
    # or a mechanism mismatch, which no retry fixes
    if isinstance(code, int) and 400 <= code < 500:
        return TransientDeliveryError
    return PermanentDeliveryError


def _all_refused(exc: BaseException) -> type[DeliveryError]:
    inner = getattr(exc, "recipients", [])
    if inner and all(_by_code(e) is TransientDeliveryError for e in inner):
        return TransientDeliveryError
    return PermanentDeliveryError


def _connect(exc: BaseException) -> type[DeliveryError]:
    # aiosmtplib wraps implicit-TLS failures in SMTPConnectError; an untrusted certificate or a
    # protocol mismatch will not heal by itself
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError) and _ssl(cause) is PermanentDeliveryError:
        return PermanentDeliveryError
    return TransientDeliveryError


def _ssl(exc: BaseException) -> type[DeliveryError]:
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return TransientDeliveryError
    return PermanentDeliveryError


def _transient(exc: BaseException) -> type[DeliveryError]:
    return TransientDeliveryError


def _permanent(exc: BaseException) -> type[DeliveryError]:
    return PermanentDeliveryError


SMTP_ERROR_RULES: dict[type[BaseException], _Rule] = {
    aiosmtplib.SMTPRecipientsRefused: _all_refused,
    aiosmtplib.SMTPRecipientRefused: _by_code,
    aiosmtplib.SMTPSenderRefused: _by_code,
    aiosmtplib.SMTPDataError: _by_code,
    aiosmtplib.SMTPHeloError: _by_code,
    aiosmtplib.SMTPConnectResponseError: _by_code,
    aiosmtplib.SMTPResponseException: _by_code,
    aiosmtplib.SMTPAuthenticationError: _auth,
    aiosmtplib.SMTPConnectTimeoutError: _transient,
    aiosmtplib.SMTPReadTimeoutError: _transient,
    aiosmtplib.SMTPTimeoutError: _transient,
    aiosmtplib.SMTPConnectError: _connect,
    aiosmtplib.SMTPServerDisconnected: _transient,
    # STARTTLS or SMTPUTF8 required but not offered: the server will not change its mind
    aiosmtplib.SMTPNotSupported: _permanent,
    # raised bare for configuration mismatches (e.g. AUTH or STARTTLS not offered)
    aiosmtplib.SMTPException: _permanent,
}
"""How each aiosmtplib exception class is classified (looked up along the exception's MRO)."""

_OTHER_RULES: tuple[tuple[type[BaseException], _Rule], ...] = (
    (ssl.SSLError, _ssl),  # before OSError, of which it is a subclass
    (TimeoutError, _transient),
    (OSError, _transient),  # refused, reset, unreachable, name resolution failed
    (ValueError, _permanent),  # an address aiosmtplib refuses to put on the wire
)


def classify(exc: BaseException) -> type[DeliveryError]:
    """``TransientDeliveryError`` or ``PermanentDeliveryError`` for what a send raised.

    Raises ``TypeError`` for exceptions that are not delivery failures (bugs stay visible).
    """
    if isinstance(exc, DeliveryError):
        return type(exc) if type(exc) is not DeliveryError else PermanentDeliveryError
    for klass in type(exc).__mro__:
        rule = SMTP_ERROR_RULES.get(klass)
        if rule is not None:
            return rule(exc)
    for klass, rule in _OTHER_RULES:
        if isinstance(exc, klass):
            return rule(exc)
    raise TypeError(f"not a delivery failure: {type(exc).__name__}")


def describe(exc: BaseException) -> tuple[int | None, str]:
    """(SMTP code, server reply or a description) for an exception from a send."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[-1]
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return exc.code, header_text(exc.message, REPLY_LIMIT)
    if isinstance(exc, aiosmtplib.SMTPException):
        text = exc.message
    else:
        text = str(exc) or type(exc).__name__
    return None, header_text(f"{type(exc).__name__}: {text}", REPLY_LIMIT)
