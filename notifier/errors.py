"""Every error notifier raises, in one tree.

::

    NotifierError
    ├── ConfigError                 bad configuration or bad user input (exit 2)
    │   └── TargetRefused           the address is not one we may notify about
    ├── SourceError                 a lookup source failed (the run goes on)
    │   ├── SourceTimeout           ... and TimeoutError
    │   ├── SourceUnavailable       refused, unreachable, 5xx, rate-limited past our patience
    │   └── SourceProtocolError     the answer was malformed, too large or not allowed
    ├── NoContactFound              nobody, not even a national CERT, to tell
    ├── TemplateError               a template failed to render
    ├── DeliveryError               handing a message to the mail server failed
    │   ├── TransientDeliveryError  4xx, timeout, disconnect: retried
    │   └── PermanentDeliveryError  5xx: not retried, the ladder falls back
    └── AuditError                  the audit log could not be written or read
        └── AuditIntegrityError     the hash chain is broken (``.line`` is the first bad line)

Errors carry context as attributes: ``target``, ``source``, ``smtp_code``.

The exit status of each is decided here and nowhere else (:data:`EXIT_CODES`, :func:`exit_code`);
the same table holds the statuses a run ends with when nothing was raised.
"""

from __future__ import annotations

__all__ = [
    "NotifierError",
    "ConfigError",
    "TargetRefused",
    "SourceError",
    "SourceTimeout",
    "SourceUnavailable",
    "SourceProtocolError",
    "NoContactFound",
    "TemplateError",
    "DeliveryError",
    "TransientDeliveryError",
    "PermanentDeliveryError",
    "AuditError",
    "AuditIntegrityError",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_BAD_INPUT",
    "EXIT_HELD_BACK",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_CODES",
    "exit_code",
]

# the exit statuses of ../shared/docs/interfaces.md section 1
EXIT_OK = 0  # every chosen contact reached, or nothing new to send
EXIT_FAILED = 1  # a delivery failed for good and nothing on the ladder took it; a broken log
EXIT_BAD_INPUT = 2  # bad input or configuration: nothing sent
EXIT_HELD_BACK = 3  # a sending limit held messages back; nothing failed (run again later)
EXIT_INTERNAL = 4  # a bug: an exception that is not a NotifierError
EXIT_INTERRUPTED = 130  # Ctrl-C: what was sent so far is in the log


class NotifierError(Exception):
    """Root of every error notifier raises on purpose."""

    def __init__(self, message: str, *, target: str | None = None, source: str | None = None):
        super().__init__(message)
        self.target = target
        self.source = source


class ConfigError(NotifierError):
    """Bad configuration or bad input: the run stops before anything is sent."""


class TargetRefused(ConfigError):
    """The target is not a globally routable address (and non-public targets are not allowed)."""


class SourceError(NotifierError):
    """A lookup source failed; other sources still run."""


class SourceTimeout(SourceError, TimeoutError):
    """A lookup ran past its deadline."""


class SourceUnavailable(SourceError):
    """The server refused, was unreachable, or kept answering 429/5xx."""


class SourceProtocolError(SourceError):
    """The answer broke the protocol: malformed, too large, or a forbidden redirect."""


class NoContactFound(NotifierError):
    """No recipient at all could be found for the target."""


class TemplateError(NotifierError):
    """A disclosure template failed to render."""


class DeliveryError(NotifierError):
    """The mail server did not take the message."""

    def __init__(
        self,
        message: str,
        *,
        smtp_code: int | None = None,
        target: str | None = None,
        source: str | None = None,
    ):
        super().__init__(message, target=target, source=source)
        self.smtp_code = smtp_code


class TransientDeliveryError(DeliveryError):
    """A 4xx reply, a timeout or a dropped connection: worth another try."""


class PermanentDeliveryError(DeliveryError):
    """A 5xx reply: the recipient will not take it; fall back to the next rung."""


class AuditError(NotifierError):
    """The audit log could not be written or read."""


class AuditIntegrityError(AuditError):
    """The audit log's hash chain does not verify; ``line`` is the first bad line (1-based)."""

    def __init__(self, message: str, *, line: int):
        super().__init__(message)
        self.line = line


# every error class, most specific first where it matters: the first match by class (MRO) wins
EXIT_CODES: dict[type[NotifierError], int] = {
    NotifierError: EXIT_FAILED,
    ConfigError: EXIT_BAD_INPUT,
    TargetRefused: EXIT_BAD_INPUT,
    SourceError: EXIT_FAILED,
    SourceTimeout: EXIT_FAILED,
    SourceUnavailable: EXIT_FAILED,
    SourceProtocolError: EXIT_FAILED,
    NoContactFound: EXIT_FAILED,
    TemplateError: EXIT_BAD_INPUT,  # a template the operator named or wrote
    DeliveryError: EXIT_FAILED,
    TransientDeliveryError: EXIT_FAILED,
    PermanentDeliveryError: EXIT_FAILED,
    AuditError: EXIT_FAILED,
    AuditIntegrityError: EXIT_FAILED,
}


def exit_code(exc: BaseException) -> int:
    """The exit status a command ends with when ``exc`` stops it."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_INTERNAL
