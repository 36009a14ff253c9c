"""Headers and MIME structure: safe header values, the message tree, and the bytes SMTP gets.

Every value that reaches a header passes ``addresses.header_text`` (no CR, LF or control
character survives); the body is quoted-printable and the headers RFC 2047-encoded, so the bytes
handed to SMTP are 7-bit ASCII with CRLF line ends.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.contentmanager import ContentManager, raw_data_manager
from email.generator import BytesGenerator
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from io import BytesIO
from typing import Any

from ..addresses import header_text
from ..errors import ConfigError, TemplateError

__all__ = [
    "POLICY",
    "ComposedMessage",
    "check_header_block",
    "display_name",
    "message_id_list",
    "no_encoded_words",
    "parse",
    "seal",
]

_LINE_END = re.compile(r"\r\n|\r|\n")  # the generator's own pattern for a body's line ends
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_PHRASE_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# machine-read headers whose single long word folding would push onto a continuation line
_UNFOLDED = frozenset({"x-notifier-log-head", "x-notifier-case", "message-id", "in-reply-to"})


# the MIME headers every message sets to the same few values (a part's type, its encoding):
# parsed once and shared, since a parsed header is never changed, only replaced
_STATIC = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "content-disposition"}
    | {"content-language", "auto-submitted"}
)
_STATIC_KEPT = 256


class _Policy(EmailPolicy):
    """SMTP line ends; the headers tools parse back are never folded (they stay under 998)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if type(value) is not str or name.lower() not in _STATIC or "boundary=" in value:
            return super().header_store_parse(name, value)
        parsed = _parsed.get((name, value))
        if parsed is None:
            parsed = super().header_store_parse(name, value)
            if len(_parsed) < _STATIC_KEPT:
                _parsed[(name, value)] = parsed
        return parsed

    def fold_binary(self, name: str, value: str) -> bytes:
        text = str(value)
        if name.lower() in _UNFOLDED and text.isascii() and len(name) + len(text) < 990:
            return f"{name}: {text}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


class _Registry(HeaderRegistry):
    """The standard header classes, each made once.

    The base class makes a new class for every header it is asked for (some thirty a message,
    and again for every header count check); the headers made are the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# quoted in a quoted-printable body: "=" and all but printable ASCII, tab, CR and LF
_QP_UNSAFE = re.compile(r"[^\t\n\r\x20-\x3c\x3e-\x7e]")


def _qp_quote(match: re.Match[str]) -> str:
    return f"={ord(match.group()):02X}"


def _qp_body(body: str, width: int) -> str:
    """``email.quoprimime.body_encode(body, width)``, the same text, its algorithm line for
    line; only the quoting differs: a search for the few characters that need it, where the
    library looks every character up in a table (a third of a message's MIME work)."""
    if not body:
        return body
    body = _QP_UNSAFE.sub(_qp_quote, body)
    soft_break = "=\n"
    encoded: list[str] = []
    for line in body.splitlines():
        # break up the line into pieces no longer than width - 1, no escape split
        start = 0
        last = len(line) - 1 - width
        while start <= last:
            stop = start + width - 1
            if line[stop - 2] == "=":
                encoded.append(line[start : stop - 1])
                start = stop - 2
            elif line[stop - 1] == "=":
                encoded.append(line[start:stop])
                start = stop - 1
            else:
                encoded.append(line[start:stop] + "=")
                start = stop
        # a line ending in white space: that character quoted, room permitting
        if line and line[-1] in " \t":
            room = start - last
            if room >= 3:
                end = f"={ord(line[-1]):02X}"
            elif room == 2:
                end = line[-1] + soft_break
            else:
                end = soft_break + f"={ord(line[-1]):02X}"
            encoded.append(line[start:-1] + end)
        else:
            encoded.append(line[start:])
    if body[-1] in "\r\n":
        encoded.append("")
    return "\n".join(encoded)


_set_text_content = raw_data_manager.set_handlers[str]  # type: ignore[attr-defined]


def _set_text(msg: EmailMessage, string: str, *args: Any, **kwargs: Any) -> None:
    """The standard ``set_content`` for text, with a quoted-printable UTF-8 body encoded by
    ``_qp_body``: the headers set as the library sets them, the same payload."""
    charset = args[1] if len(args) > 1 else kwargs.get("charset", "utf-8")
    cte = args[2] if len(args) > 2 else kwargs.get("cte")
    width = msg.policy.max_line_length
    if cte != "quoted-printable" or charset != "utf-8" or not string or not width:
        _set_text_content(msg, string, *args, **kwargs)
        return
    _set_text_content(msg, "", *args, **kwargs)  # the headers, and an empty body
    lines = string.encode("utf-8").splitlines()
    msg.set_payload(_qp_body((b"\n".join(lines) + b"\n").decode("latin-1"), width))


_CONTENT = ContentManager()
_CONTENT.get_handlers = dict(raw_data_manager.get_handlers)  # type: ignore[attr-defined]
_CONTENT.set_handlers = dict(raw_data_manager.set_handlers)  # type: ignore[attr-defined]
_CONTENT.add_set_handler(str, _set_text)

_parsed: dict[tuple[str, str], tuple[str, Any]] = {}
POLICY = _Policy(linesep="\r\n", header_factory=_Registry(), content_manager=_CONTENT)
# the boundary the generator makes: fifteen "=", a random number of fixed width, "=="
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """A rendered message and the exact bytes that will be handed to the mail server.

    ``message`` is the message as an object: the one built, or (for a message composed in a
    worker process, which sends back only the bytes) parsed from ``raw`` when first asked for.
    """

    message_id: str
    raw: bytes  # CRLF line ends, 7-bit: what SMTP DATA carries
    digest: str  # sha256 hex of ``raw``
    case_ref: str
    recipient: str
    template: str = ""
    language: str = "en"  # Content-Language of the body
    language_reason: str = ""  # why that language, one line for the log
    guides: tuple[str, ...] = ()  # exposure guides used (service names)
    built: EmailMessage | None = field(default=None, repr=False, compare=False)
    # what its intent record says of its findings, in the form the log writes it, where a
    # compose worker wrote it (``ledger.chain.Fields.parts``): the sending process only adds
    # the attempt's own fields to it
    record_parts: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def message(self) -> EmailMessage:
        if self.built is None:
            object.__setattr__(self, "built", parse(self.raw))
        assert self.built is not None
        return self.built


def parse(raw: bytes) -> EmailMessage:
    """``raw`` as an ``EmailMessage`` read with the policy it was written with."""
    message = BytesParser(_class=EmailMessage, policy=POLICY).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


class _Generator(BytesGenerator):
    """The standard generator, writing a body's lines in one piece.

    The base class writes every body line and every line end separately (two calls per line,
    thousands per message); one substitution gives the same bytes.
    """

    @classmethod
    def _make_boundary(cls, text: bytes | str | None = None) -> str:
        # the base class compiles a new expression for every boundary it tries; a plain search
        # refuses every boundary it would (and those found inside a line too)
        while True:
            number = random.randrange(sys.maxsize)
            boundary = f"{'=' * 15}{number:0{_BOUNDARY_WIDTH}d}=="
            if text is None:
                return boundary
            if isinstance(text, bytes):
                if f"--{boundary}".encode() not in text:
                    return boundary
            elif f"--{boundary}" not in text:
                return boundary

    def _write_lines(self, lines: str) -> None:
        if lines:
            # _NL: the line end flatten() chose (the policy's, or the outer message's)
            self.write(_LINE_END.sub(self._NL, lines))  # type: ignore[attr-defined]


def as_bytes(msg: EmailMessage) -> bytes:
    """``msg.as_bytes(policy=POLICY)``, byte for byte, with less work per body line."""
    out = BytesIO()
    _Generator(out, mangle_from_=False, policy=POLICY).flatten(msg, unixfrom=False)
    return out.getvalue()


def no_encoded_words(text: str) -> str:
    """``text`` with anything shaped like an RFC 2047 encoded word broken up.

    The email package decodes ``=?charset?q?...?=`` in a header value it is given and, before
    Python 3.11.10 / 3.12.5 (CVE-2024-6923), writes a CR LF decoded from one out raw: a finding
    text could then add a ``Bcc:`` line to the message.
    """
    return text.replace("=?", "= ?")


def _no_format_marks(text: str) -> str:
    # bidi overrides and other format characters (Cf) can make a name read as something else
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def display_name(name: str) -> str:
    """The recipient's name from a registry, as plain words that need no quoting in ``To``.

    Python's folding of a long quoted display name drops the quotes, so a name such as
    ``x Bcc: victim@example.org, ...`` would reach the recipient as a ``To`` header naming
    other addresses. RFC 5322 specials are dropped, leaving only atoms, which fold safely;
    right-to-left and other invisible format marks are dropped too.
    """
    words = _PHRASE_SPECIALS.sub(" ", _no_format_marks(header_text(name)))
    return no_encoded_words(" ".join(words.split()))


def message_id_list(values: Sequence[str]) -> list[str]:
    ids = []
    for value in values:
        cleaned = header_text(value, 998)
        if not _MESSAGE_ID.match(cleaned):
            raise ConfigError(f"not a Message-ID: {cleaned!r}")
        ids.append(cleaned)
    return list(dict.fromkeys(ids))


def check_header_block(raw: bytes, msg: EmailMessage) -> None:
    """Refuse bytes whose header block holds a header other than those written (last defence)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    found = sorted(
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head.split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    )
    if found != sorted(name.lower() for name in msg.keys()):
        raise TemplateError("refusing to send a message whose headers are not the ones written")


def seal(msg: EmailMessage, **fields: object) -> ComposedMessage:
    """The finished message as the bytes SMTP carries, checked, with their digest.

    This is the seam for anything that wraps the finished message (OpenPGP, DKIM): build a
    new ``EmailMessage`` around ``msg`` and call ``seal`` again with the same ``fields``.
    """
    raw = as_bytes(msg)
    check_header_block(raw, msg)
    return ComposedMessage(
        built=msg,
        raw=raw,
        digest=hashlib.sha256(raw).hexdigest(),
        **fields,  # type: ignore[arg-type]
    )
