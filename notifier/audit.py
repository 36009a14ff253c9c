"""The audit log: an append-only, hash-chained record of everything notifier did.

Files under the state directory::

    audit.jsonl                    one JSON record a line, each carrying the hash of the line before
    audit.jsonl.lock               sidecar lock: one writer at a time, across processes
    audit.jsonl.torn-<n>           the bytes of a line a crash cut short, moved aside, never dropped
    messages/<sha256>.eml          the exact bytes of every message handed to a mail server
    timestamps/<N>-<hash16>.tsr    RFC 3161 replies over the chain head ``N:HASH``

A record is ``{"seq", "time", "event", <fields>, "prev", "hash"}``: ``seq`` is its 1-based line
number, ``prev`` the ``hash`` of the line before (64 zeros for the first) and ``hash`` the SHA-256
of the canonical JSON (sorted keys, no whitespace, UTF-8) of the record without ``hash`` and
``sig``. Outcome records written with a signing key also carry ``key_id`` (inside the hash, so a
stripped signature shows) and ``sig``, an Ed25519 signature over the 32 hash bytes.

What the chain proves, honestly: any edit, removal, insertion or reordering of a line shows up
in :func:`verify`, but whoever holds the file can rewrite the whole chain. Tamper-evidence against
the researcher exists only once a head has left the machine: an RFC 3161 token
(:func:`timestamp_head`), a head mailed to a third party, or one published.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import dataclasses
import enum
import errno
import fcntl
import functools
import hashlib
import ipaddress
import json
import os
import re
import secrets
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc3161, rfc5652

from .errors import AuditError, AuditIntegrityError, ConfigError

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "GENESIS",
    "LOG_NAME",
    "AuditLog",
    "GroupCommit",
    "Problem",
    "VerifyReport",
    "TimestampToken",
    "TornTail",
    "verify",
    "head",
    "format_head",
    "parse_head",
    "record_hash",
    "key_id",
    "load_signing_key",
    "load_verify_key",
    "build_timestamp_request",
    "parse_timestamp_reply",
    "timestamp_head",
]

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_TSA_REPLY = 256 * 1024
_LOOKAHEAD = 256
_HASH_WINDOW = 10_000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EVENT = re.compile(r"[a-z][a-z0-9-]{0,39}")
_TOKEN_NAME = re.compile(r"(\d{1,12})-([0-9a-f]{16})\.tsr")
_RESERVED = frozenset({"seq", "time", "event", "prev", "hash", "sig", "key_id"})
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "privkey",
        "privatekey",
        "apikey",
        "secretkey",
        "signingkey",
        "accesskey",
        "sessionkey",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "bearer",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("private", "key"),
        ("api", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("access", "key"),
        ("session", "key"),
        ("auth", "token"),
        ("access", "token"),
        ("refresh", "token"),
        ("api", "token"),
        ("session", "token"),
    }
)
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_CSV_COLUMNS = (
    "seq",
    "time",
    "event",
    "ip",
    "recipient",
    "message_id",
    "attempt_id",
    "status",
    "smtp_code",
    "smtp_reply",
    "digest",
)
_CSV_SKIP = frozenset({*_CSV_COLUMNS, "prev", "hash"})

Clock = Callable[[], datetime]
Record = dict[str, Any]


# --------------------------------------------------------------------------- canonical form


def _canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of ``record``'s canonical JSON without its ``hash`` and ``sig``."""
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the audit clock must return timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: object) -> object:
    """Turn the pipeline's own types into plain JSON (called by json.dumps for unknown types)."""
    if isinstance(value, datetime):
        return _utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        raise ValueError("raw bytes do not go into the audit log: store them with store_message")
    raise ValueError(f"cannot record a value of type {type(value).__name__}")


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return [w for w in re.split(r"[^a-z0-9]+", spaced) if w]


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    # field names repeat in every record (a batch writes thousands alike): decide each once
    words = _name_words(name)
    if any(w in _SECRET_WORDS for w in words) or "".join(words) in _SECRET_WORDS:
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def _refuse_secrets(value: object, where: str, depth: int = 0) -> None:
    if depth > 64:
        raise ValueError(f"{where}: nested too deeply for the audit log")
    if isinstance(value, dict):
        for name, item in value.items():
            if _is_secret_name(name):
                raise ValueError(f"refusing to write secret-looking field {where}{name!r}")
            _refuse_secrets(item, f"{where}{name}.", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _refuse_secrets(item, where, depth + 1)
    elif isinstance(value, str) and _PEM_PRIVATE.search(value):
        place = where.rstrip(".") or "a field"
        raise ValueError(f"refusing to write private key material in {place}")


def _normalise_fields(fields: Mapping[str, object]) -> Record:
    for name in fields:
        if name in _RESERVED:
            raise ValueError(f"{name!r} is set by the audit log itself")
    try:
        text = json.dumps(dict(fields), default=_jsonable, ensure_ascii=False, allow_nan=False)
        plain: Record = json.loads(text)
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"audit fields are not JSON-serialisable: {exc}") from None
    _refuse_secrets(plain, "")
    return plain


# --------------------------------------------------------------------------- keys


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


# --------------------------------------------------------------------------- heads


def format_head(count: int, last_hash: str) -> str:
    """The chain head as committed outside: ``"N:HASH"``."""
    return f"{count}:{last_hash}"


def parse_head(text: str) -> tuple[int, str]:
    """Parse ``"N:HASH"``; ``ConfigError`` (bad input) when it is not one."""
    count, sep, digest = text.strip().partition(":")
    digest = digest.lower()
    if not sep or not count.isdigit() or not _HEX64.fullmatch(digest):
        raise ConfigError(f"not a log head (expected N:HASH with a 64-digit hex hash): {text!r}")
    return int(count), digest


# --------------------------------------------------------------------------- low-level file I/O


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes after the last newline: a line whose write a crash interrupted."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class _Tail:
    size: int
    end: int  # offset just past the last newline
    last: bytes | None  # the last complete line, without its newline
    torn: TornTail | None


def _read_tail(fd: int) -> _Tail:
    """Find the last complete line and any torn bytes after it, reading backwards in chunks."""
    size = os.fstat(fd).st_size
    newlines: list[int] = []
    pos = size
    while pos > 0 and len(newlines) < 2:
        if len(newlines) == 1 and newlines[0] - pos > MAX_RECORD_BYTES:
            break  # the last line is over the cap: no need to find where it starts
        start = max(0, pos - 65_536)
        block = os.pread(fd, pos - start, start)
        index = len(block)
        while len(newlines) < 2:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            newlines.append(start + index)
        pos = start
    if not newlines:
        return _Tail(size, 0, None, TornTail(0, size) if size else None)
    end = newlines[0] + 1
    begin = newlines[1] + 1 if len(newlines) > 1 else pos
    if end - begin - 1 > MAX_RECORD_BYTES:
        last = b""  # unreadable as a record either way; the caller refuses it
    else:
        last = os.pread(fd, end - begin - 1, begin)
    torn = TornTail(end, size - end) if size > end else None
    return _Tail(size, end, last, torn)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # some filesystems refuse fsync on directories; the data itself was synced
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _make_dir(directory: Path) -> None:
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _fsync_dir(directory.parent)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a 0600 temporary file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _iter_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """Lines with their newline kept (the last one may lack it); over-long ones cut at the cap."""
    while True:
        raw = handle.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        yield raw


# --------------------------------------------------------------------------- parsing one line


class _LineError(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _parse_line(body: bytes) -> Record:
    """A stored line as a record, checked for shape, canonical form and its own hash."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _LineError("not-json", "not a JSON line") from None
    if not isinstance(value, dict):
        raise _LineError("not-json", "not a JSON object")
    seq = value.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise _LineError("malformed", "no valid seq")
    for name in ("time", "event"):
        if not isinstance(value.get(name), str):
            raise _LineError("malformed", f"no valid {name}")
    for name in ("prev", "hash"):
        item = value.get(name)
        if not isinstance(item, str) or not _HEX64.fullmatch(item):
            raise _LineError("malformed", f"no valid {name}")
    for name in ("sig", "key_id"):
        if name in value and not isinstance(value[name], str):
            raise _LineError("malformed", f"{name} is not a string")
    try:
        canonical = _canonical(value)
        computed = record_hash(value)
    except (ValueError, RecursionError):
        raise _LineError("malformed", "holds values JSON cannot round-trip") from None
    if canonical != text:
        raise _LineError("edited", "the line was rewritten (not in the form notifier writes)")
    if computed != value["hash"]:
        raise _LineError("edited", "its content no longer matches its hash")
    return value


# --------------------------------------------------------------------------- the log


class AuditLog:
    """The one writer of ``<state.dir>/audit.jsonl``; also the reader the CLI and pipeline use.

    ``append`` takes a cross-process lock, re-reads the last line's hash from disk, and writes the
    new line in a single ``write`` on an ``O_APPEND`` descriptor followed by ``fsync``. The
    pipeline writes an ``intent`` before SMTP DATA and the ``outcome`` after it, so a crash
    between the two leaves an intent without outcome (see :meth:`in_doubt`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock,
        signer: ed25519.Ed25519PrivateKey | None = None,
    ) -> None:
        self.path = Path(path)
        self.state_dir = self.path.parent
        self.messages_dir = self.state_dir / "messages"
        self.timestamps_dir = self.state_dir / "timestamps"
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._clock = clock
        self._signer = signer
        self._key_id = key_id(signer.public_key()) if signer is not None else None
        self.torn_tail: TornTail | None = self._detect_torn()
        self._orphans_checked = False
        # (inode, offset, complete lines before it): where ``head`` stopped counting last time
        self._counted: tuple[int, int, int] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock) -> AuditLog:
        """The log under ``state.dir``; outcomes are signed when ``audit.signing_key`` is set."""
        key_file = settings.audit.signing_key
        signer = load_signing_key(key_file) if key_file else None
        return cls(settings.state_dir / LOG_NAME, clock=clock, signer=signer)

    # ---------------------------------------------------------------- writing

    def append(self, event: str, /, **fields: object) -> Record:
        """Write one record and return it exactly as stored (with ``seq``, ``prev``, ``hash``).

        Raises ``ValueError`` for a bad event name, reserved or secret-looking fields, or values
        JSON cannot hold; ``AuditError`` when the file cannot be written;
        ``AuditIntegrityError`` when the last line on disk is damaged (nothing is appended to a
        chain whose head cannot be trusted).
        """
        if not _EVENT.fullmatch(event):
            raise ValueError(f"bad audit event name: {event!r}")
        plain = _normalise_fields(fields)
        with self._locked() as fd:
            tail = self._repair(fd)
            return self._write_record(fd, tail, event, plain)

    def append_many(self, entries: Iterable[tuple[str, Mapping[str, object]]]) -> list[Record]:
        """Write several records in order with one write and one ``fsync`` (a group commit).

        Each entry is ``(event, fields)`` and is checked as ``append`` checks it; nothing is
        written when any is refused. Returns the records as stored.
        """
        items: list[tuple[str, Record]] = []
        for event, fields in entries:
            if not _EVENT.fullmatch(event):
                raise ValueError(f"bad audit event name: {event!r}")
            items.append((event, _normalise_fields(fields)))
        return self._append_checked(items)

    def _append_checked(self, items: list[tuple[str, Record]]) -> list[Record]:
        return [r for r in self._append_guarded(items, [None] * len(items)) if r is not None]

    def _append_guarded(
        self, items: list[tuple[str, Record]], guards: list[Callable[[], bool] | None]
    ) -> list[Record | None]:
        """Write the items whose guard (called in order, under the lock) says yes; None for the
        others. A guard sees the log as it is on disk, with no other writer able to add to it."""
        if not items:
            return []
        with self._locked() as fd:
            tail = self._repair(fd)
            keep = [guard is None or guard() for guard in guards]
            chosen = [item for item, kept in zip(items, keep, strict=True) if kept]
            written = iter(self._write_records(fd, tail, chosen) if chosen else [])
            return [next(written) if kept else None for kept in keep]

    def recover(self) -> Record | None:
        """Move a torn last line aside now; return the ``torn-tail`` record, or None if intact."""
        with self._locked() as fd:
            tail = _read_tail(fd)
            if tail.torn is None:
                self.torn_tail = None
                return None
            return self._move_torn(fd, tail.torn)

    def store_message(self, raw: bytes) -> str:
        """Keep the exact bytes of a message as ``messages/<sha256>.eml``; return the digest."""
        digest = hashlib.sha256(raw).hexdigest()
        try:
            _make_dir(self.state_dir)
            _make_dir(self.messages_dir)
            target = self.messages_dir / f"{digest}.eml"
            if target.is_file() and _file_sha256(target) == digest:
                return digest
            _atomic_write(target, raw)
        except OSError as exc:
            raise AuditError(f"cannot store message {digest}: {exc.strerror or exc}") from None
        return digest

    def load_message(self, digest: str) -> bytes:
        """The stored message with this digest; ``AuditError`` if missing or altered."""
        if not _HEX64.fullmatch(digest):
            raise AuditError(f"not a message digest: {digest!r}")
        target = self.messages_dir / f"{digest}.eml"
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            raise AuditError(f"stored message {digest} is missing") from None
        except OSError as exc:
            raise AuditError(f"cannot read stored message {digest}: {exc.strerror}") from None
        if hashlib.sha256(raw).hexdigest() != digest:
            raise AuditError(f"stored message {digest} was altered: its bytes no longer match")
        return raw

    async def timestamp(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        timeout: float,  # noqa: ASYNC109 - one deadline for the whole TSA exchange
    ) -> tuple[Path, Record]:
        """Have the TSA at ``url`` timestamp the current head, keep the token, log an ``anchor``.

        Returns the token's path and the ``anchor`` record (which itself becomes the new head).
        """
        count, last = self.head()
        text = format_head(count, last)
        reply = await timestamp_head(
            url, text, http, timeout=timeout, store_dir=self.timestamps_dir
        )
        token = parse_timestamp_reply(reply)
        name = _token_name(count, last)
        record = self.append(
            "anchor",
            head=text,
            tsa=url,
            token_file=name,
            token_sha256=hashlib.sha256(reply).hexdigest(),
            gen_time=token.gen_time,
        )
        return self.timestamps_dir / name, record

    # ---------------------------------------------------------------- reading

    def head(self) -> tuple[int, str]:
        """``(line count, hash of the last line)`` of the log on disk, as :func:`head` says.

        Lines are counted once: a later call counts only what was appended since, so quoting
        the head in every message of a long run does not re-read the whole log each time.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._counted = None
            return 0, GENESIS
        except OSError as exc:
            raise AuditError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            inode = os.fstat(fd).st_ino
            tail = _read_tail(fd)
            if tail.last is None:
                self._counted = None
                return 0, GENESIS
            known = self._counted
            if known is not None and known[0] == inode and known[1] <= tail.end:
                count = known[2] + _count_lines(fd, tail.end, start=known[1])
            else:
                count = _count_lines(fd, tail.end)
        finally:
            os.close(fd)
        digest = _last_hash(tail.last, count)
        self._counted = (inode, tail.end, count)
        return count, digest

    def verify(
        self,
        *,
        head: tuple[int, str] | None = None,
        public_key: ed25519.Ed25519PublicKey | None = None,
        tsa_trust: Iterable[x509.Certificate] | None = None,
    ) -> VerifyReport:
        """:func:`verify` over this log with its own message store and timestamp tokens."""
        if public_key is None and self._signer is not None:
            public_key = self._signer.public_key()
        return verify(
            self.path,
            head=head,
            public_key=public_key,
            messages_dir=self.messages_dir,
            timestamps_dir=self.timestamps_dir,
            tsa_trust=tsa_trust,
        )

    def records(self) -> Iterator[Record]:
        """Every complete record in order, streamed; a torn last line is skipped.

        Raises ``AuditIntegrityError`` on a line that is not a record at all (use
        :func:`verify` for the full check: this does not recompute hashes).
        """
        for value, _offset in self.records_from():
            yield value

    def records_from(self, offset: int = 0, line: int = 0) -> Iterator[tuple[Record, int]]:
        """Each complete record after the first ``line`` lines (``offset`` bytes) of the log,
        with the offset just past it: a reader keeping up with what this and other processes
        append.

        A torn last line ends the stream. Raises ``AuditIntegrityError`` on a line that is not
        a record, or when the log is shorter than ``offset`` (it was cut or replaced).
        """
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            if offset:
                raise AuditIntegrityError("the audit log disappeared", line=line) from None
            return
        except OSError as exc:
            raise AuditError(f"cannot read {self.path}: {exc.strerror}") from None
        with handle:
            if os.fstat(handle.fileno()).st_size < offset:
                raise AuditIntegrityError("the audit log became shorter", line=line)
            handle.seek(offset)
            for raw in _iter_lines(handle):
                line += 1
                if not raw.endswith(b"\n"):
                    if len(raw) > MAX_RECORD_BYTES:
                        raise AuditIntegrityError(f"line {line} is too long", line=line)
                    return
                try:
                    value = json.loads(raw)
                except (ValueError, RecursionError):
                    raise AuditIntegrityError(f"line {line} is not JSON", line=line) from None
                if not isinstance(value, dict):
                    raise AuditIntegrityError(f"line {line} is not a record", line=line)
                offset += len(raw)
                yield value, offset

    def delivered_keys(self) -> set[tuple[str, str]]:
        """``(finding_key, recipient)`` for every outcome with status ``delivered``.

        A batch outcome may list ``finding_keys`` instead of one ``finding_key``.
        """
        keys: set[tuple[str, str]] = set()
        for record in self.records():
            if record.get("event") != "outcome" or record.get("status") != "delivered":
                continue
            recipient = record.get("recipient")
            if not isinstance(recipient, str):
                continue
            for finding in _strings(record.get("finding_key"), record.get("finding_keys")):
                keys.add((finding, recipient.lower()))
        return keys

    def in_doubt(self) -> list[Record]:
        """Intent records with no outcome sharing their ``attempt_id``: a crash came between."""
        open_intents: dict[str, Record] = {}
        for record in self.records():
            attempt = record.get("attempt_id")
            if not isinstance(attempt, str):
                continue
            if record.get("event") == "intent":
                open_intents.setdefault(attempt, record)
            elif record.get("event") == "outcome":
                open_intents.pop(attempt, None)
        return list(open_intents.values())

    def find(self, message_id: str) -> list[Record]:
        """Every record about the message with this Message-ID (angle brackets optional)."""
        wanted = message_id.strip().strip("<>")
        return [
            record
            for record in self.records()
            if wanted in {m.strip("<>") for m in _strings(record.get("message_id"), None)}
        ]

    def select(
        self,
        ip: str | None = None,
        recipient: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        event: str | None = None,
    ) -> Iterator[Record]:
        """Records matching every given filter (``ip`` also matches a batch's ``ips``).

        ``since`` without a timezone is taken as UTC.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        wanted_ip = _normal_ip(ip) if ip is not None else None
        wanted_rcpt = recipient.strip().lower() if recipient is not None else None
        for record in self.records():
            if event is not None and record.get("event") != event:
                continue
            if status is not None and record.get("status") != status:
                continue
            if wanted_ip is not None and wanted_ip not in {
                _normal_ip(v) for v in _strings(record.get("ip"), record.get("ips"))
            }:
                continue
            if wanted_rcpt is not None and wanted_rcpt not in {
                v.lower() for v in _strings(record.get("recipient"), record.get("recipients"))
            }:
                continue
            if since is not None and not _at_or_after(record.get("time"), since):
                continue
            yield record

    def export(
        self,
        fmt: Literal["csv", "json"],
        out: TextIO,
        *,
        ip: str | None = None,
        recipient: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        event: str | None = None,
    ) -> int:
        """Write the selected records to ``out`` as CSV or a JSON array; return how many.

        CSV has one column per common field and ``details`` (JSON) for the rest. Cells that a
        spreadsheet would run as a formula (hostile SMTP replies can start with ``=``) are
        prefixed with a quote.
        """
        chosen = self.select(ip=ip, recipient=recipient, since=since, status=status, event=event)
        count = 0
        if fmt == "json":
            out.write("[")
            for record in chosen:
                out.write(",\n" if count else "\n")
                out.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
                count += 1
            out.write("\n]\n" if count else "]\n")
            return count
        if fmt != "csv":
            raise ValueError(f"unknown export format: {fmt!r}")
        writer = csv.writer(out)
        writer.writerow([*_CSV_COLUMNS, "details", "prev", "hash"])
        for record in chosen:
            rest = {k: v for k, v in record.items() if k not in _CSV_SKIP}
            row = [_cell(record.get(name)) for name in _CSV_COLUMNS]
            row.append(_cell(_canonical(rest)) if rest else "")
            row += [record.get("prev", ""), record.get("hash", "")]
            writer.writerow(row)
            count += 1
        return count

    # ---------------------------------------------------------------- internals

    def _detect_torn(self) -> TornTail | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return _read_tail(fd).torn
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """Hold the sidecar lock and yield a read/append descriptor on the log."""
        try:
            _make_dir(self.state_dir)
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log lock: {exc.strerror}") from None
        try:
            self._acquire(lock_fd)
            try:
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if created:
                    _fsync_dir(self.state_dir)
            except OSError as exc:
                raise AuditError(f"cannot open {self.path}: {exc.strerror}") from None
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)  # closing the descriptor releases the flock

    @staticmethod
    def _acquire(lock_fd: int) -> None:
        # a blocking flock queues in the kernel, so a busy writer cannot starve another the way
        # polling would; the lock is held only for a tail read and one write + fsync
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise AuditError(f"cannot lock the audit log: {exc.strerror}") from None

    def _write_record(self, fd: int, tail: _Tail, event: str, fields: Record) -> Record:
        return self._write_records(fd, tail, [(event, fields)])[0]

    def _write_records(self, fd: int, tail: _Tail, items: list[tuple[str, Record]]) -> list[Record]:
        if tail.last is None:
            seq, prev = 1, GENESIS
        else:
            try:
                last = _parse_line(tail.last)
            except _LineError as exc:
                line = tail.end and _count_lines(fd, tail.end)
                raise AuditIntegrityError(
                    f"the last line of the audit log is damaged ({exc.detail}); "
                    "nothing appended: run the log verification",
                    line=line,
                ) from None
            seq, prev = last["seq"] + 1, last["hash"]
        records: list[Record] = []
        lines: list[bytes] = []
        for event, fields in items:
            record: Record = {
                **fields,
                "seq": seq,
                "time": _utc_iso(self._clock()),
                "event": event,
            }
            record["prev"] = prev
            if self._signer is not None and event == "outcome":
                record["key_id"] = self._key_id
            record["hash"] = record_hash(record)
            if self._signer is not None and event == "outcome":
                signature = self._signer.sign(bytes.fromhex(record["hash"]))
                record["sig"] = base64.b64encode(signature).decode("ascii")
            encoded = (_canonical(record) + "\n").encode("utf-8")
            if len(encoded) > MAX_RECORD_BYTES:
                raise ValueError(f"audit record too large ({len(encoded)} bytes)")
            records.append(record)
            lines.append(encoded)
            seq, prev = seq + 1, record["hash"]
        data = b"".join(lines)
        try:
            written = os.write(fd, data)
        except OSError as exc:
            self._roll_back(fd, tail.size)
            raise AuditError(f"cannot write the audit log: {exc.strerror}") from None
        if written != len(data):
            self._roll_back(fd, tail.size)
            raise AuditError("cannot write the audit log: short write (disk full?)")
        try:
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"cannot flush the audit log to disk: {exc.strerror}") from None
        return records

    @staticmethod
    def _roll_back(fd: int, size: int) -> None:
        # a partial line left behind would be recovered as torn later; cutting it now is cleaner
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)

    def _repair(self, fd: int) -> _Tail:
        """The tail to append after, once a torn last line is moved aside and recorded.

        Moving a torn line aside cuts the log before its ``torn-tail`` record is written; a crash
        in between leaves an aside file no record names. The first append of every open log
        records such orphans, so no cut bytes go unmentioned.
        """
        tail = _read_tail(fd)
        if tail.torn is not None:
            self._move_torn(fd, tail.torn)
            tail = _read_tail(fd)
        if not self._orphans_checked:
            self._orphans_checked = True
            if self._record_orphans(fd, tail):
                tail = _read_tail(fd)
        return tail

    def _record_orphans(self, fd: int, tail: _Tail) -> bool:
        asides = sorted(self.state_dir.glob(f"{self.path.name}.torn-*"))
        if not asides:
            return False
        named = {r.get("file") for r in self.records() if r.get("event") == "torn-tail"}
        orphans = [p for p in asides if p.name not in named]
        if not orphans:
            return False
        items: list[tuple[str, Record]] = []
        for aside in orphans:
            data = aside.read_bytes()
            items.append(
                (
                    "torn-tail",
                    {
                        "length": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "file": aside.name,
                        "offset": None,
                        "note": "moved aside by a run that stopped before recording it",
                    },
                )
            )
        self._write_records(fd, tail, items)
        return True

    def _move_torn(self, fd: int, torn: TornTail) -> Record:
        """Copy the torn bytes to ``audit.jsonl.torn-<n>``, cut them, log a ``torn-tail`` record."""
        number = 1 + max(
            (
                int(p.name.rsplit("-", 1)[1])
                for p in self.state_dir.glob(f"{self.path.name}.torn-*")
                if p.name.rsplit("-", 1)[1].isdigit()
            ),
            default=0,
        )
        aside = self.path.with_name(f"{self.path.name}.torn-{number}")
        digest = hashlib.sha256()
        try:
            out = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                offset = torn.offset
                end = torn.offset + torn.length
                while offset < end:
                    block = os.pread(fd, min(1 << 20, end - offset), offset)
                    if not block:
                        break
                    digest.update(block)
                    view = memoryview(block)
                    while view:
                        view = view[os.write(out, view) :]
                    offset += len(block)
                os.fsync(out)
            finally:
                os.close(out)
            _fsync_dir(self.state_dir)
            os.ftruncate(fd, torn.offset)
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"cannot move the torn last line aside: {exc.strerror}") from None
        tail = _read_tail(fd)
        record = self._write_record(
            fd,
            tail,
            "torn-tail",
            {
                "length": torn.length,
                "sha256": digest.hexdigest(),
                "file": aside.name,
                "offset": torn.offset,
            },
        )
        self.torn_tail = None
        return record


class GroupCommit:
    """Appends from concurrent tasks, written together: one lock, one write, one fsync a group.

    ``await group.append(event, **fields)`` returns the record once it is on disk, exactly as
    ``AuditLog.append`` does, so an intent is still durable before its SMTP transaction. Records
    that tasks hand in while a group is being written wait for the next one; the disk work runs
    in a worker thread, so the event loop goes on while the disk syncs. Fields are checked in
    the caller, so a refused record raises there; a failed write (or a record over the size
    cap) fails every record of its group, and nothing of that group is written.
    """

    def __init__(self, log: AuditLog, *, max_group: int = 256) -> None:
        self.log = log
        self.max_group = max(1, max_group)
        self.groups = 0  # writes (and fsyncs) done
        self._pending: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def append(self, event: str, /, **fields: object) -> Record:
        """Queue one record and wait until it is on disk (``AuditLog.append``'s contract)."""
        record = await self._queue(event, None, fields)
        assert record is not None
        return record

    async def append_if(
        self, guard: Callable[[], bool], event: str, /, **fields: object
    ) -> Record | None:
        """As ``append``, if ``guard()`` says so; None when it does not (nothing written).

        The guard runs in the writing thread, under the log's lock, just before its group is
        written: what it reads of the log cannot change before the record is on disk, so a
        check-then-claim (has another process sent this?) is atomic across processes.
        """
        return await self._queue(event, guard, fields)

    async def _queue(
        self, event: str, guard: Callable[[], bool] | None, fields: Mapping[str, object]
    ) -> Record | None:
        if not _EVENT.fullmatch(event):
            raise ValueError(f"bad audit event name: {event!r}")
        plain = _normalise_fields(fields)
        done: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, plain, guard, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        # shielded: a caller giving up must not cancel the write other records share
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._pending:
            group = [
                self._pending.popleft() for _ in range(min(self.max_group, len(self._pending)))
            ]
            items = [(event, plain) for event, plain, _, _ in group]
            guards = [guard for _, _, guard, _ in group]
            try:
                records = await asyncio.to_thread(self.log._append_guarded, items, guards)
            except BaseException as exc:
                for _, _, _, done in group:
                    if done.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        done.cancel()
                    else:
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.groups += 1
            for (_, _, _, done), record in zip(group, records, strict=True):
                if not done.done():
                    done.set_result(record)


_Pending = tuple[str, Record, "Callable[[], bool] | None", "asyncio.Future[Record | None]"]


def _count_lines(fd: int, end: int, start: int = 0) -> int:
    count = 0
    offset = start
    while offset < end:
        block = os.pread(fd, min(1 << 20, end - offset), offset)
        if not block:
            break
        count += block.count(b"\n")
        offset += len(block)
    return count


def _strings(one: object, many: object) -> list[str]:
    values = [one] if isinstance(one, str) else []
    if isinstance(many, list):
        values += [v for v in many if isinstance(v, str)]
    return values


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip().lower()


def _at_or_after(stamp: object, since: datetime) -> bool:
    if not isinstance(stamp, str):
        return False
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment >= since


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


# --------------------------------------------------------------------------- head and verify


def head(path: str | os.PathLike[str]) -> tuple[int, str]:
    """``(line count, hash of the last line)``; ``(0, GENESIS)`` for a missing or empty log.

    A torn last line is not counted. ``AuditIntegrityError`` if the last line is not a record.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0, GENESIS
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    try:
        tail = _read_tail(fd)
        if tail.last is None:
            return 0, GENESIS
        count = _count_lines(fd, tail.end)
    finally:
        os.close(fd)
    return count, _last_hash(tail.last, count)


def _last_hash(last: bytes, count: int) -> str:
    try:
        value = json.loads(last)
    except (ValueError, RecursionError):
        value = None
    digest = value.get("hash") if isinstance(value, dict) else None
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise AuditIntegrityError(f"line {count} (the last) is not an audit record", line=count)
    return digest


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the log: the (1-based) line, a kind and a plain sentence.

    Kinds: ``torn``, ``not-json``, ``malformed``, ``edited``, ``deleted``, ``inserted``,
    ``reordered``, ``truncated``, ``head-mismatch``, ``signature``, ``message``, ``timestamp``.
    """

    line: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` found. ``ok`` when there is no problem at all."""

    lines: int = 0  # complete lines in the file
    verified: int = 0  # lines whose chain verified, from the top
    head: tuple[int, str] = (0, GENESIS)  # the last verified line's (number, hash)
    problems: list[Problem] = field(default_factory=list)
    signatures: int = 0  # signatures checked and valid
    messages: int = 0  # stored messages checked and intact
    timestamps: list[tuple[int, datetime]] = field(default_factory=list)  # (line, genTime)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        """The number of the first bad line, or None when the log is intact."""
        return min((p.line for p in self.problems), default=None)

    @property
    def first_problem(self) -> Problem | None:
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: p.line)

    def summary(self) -> str:
        """One sentence for people."""
        if self.ok:
            return f"intact: {self.lines} lines, head {format_head(*self.head)}"
        first = self.first_problem
        assert first is not None
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        return f"first bad line {first.line}: {first.kind}: {first.detail}{tail}"


def verify(
    path: str | os.PathLike[str],
    *,
    head: tuple[int, str] | None = None,
    public_key: ed25519.Ed25519PublicKey | None = None,
    messages_dir: str | os.PathLike[str] | None = None,
    timestamps_dir: str | os.PathLike[str] | None = None,
    tsa_trust: Iterable[x509.Certificate] | None = None,
) -> VerifyReport:
    """Check the log end to end without writing anything.

    Recomputes every line's hash, ``prev`` link and ``seq``, and names the first bad line and
    why. ``head=(N, HASH)`` (committed earlier) proves the log still holds that prefix. With
    ``public_key`` every signature must verify; with ``messages_dir`` every recorded digest must
    match its stored message; with ``timestamps_dir`` every ``<N>-<hash16>.tsr`` token must be a
    validly signed timestamp over line N's head (and, with ``tsa_trust``, signed by one of those
    certificates or a certificate they issued).

    Raises only ``AuditError`` (the file could not be read); everything wrong inside the log is
    a :class:`Problem` in the report.
    """
    report = VerifyReport()
    tokens = _token_claims(Path(timestamps_dir)) if timestamps_dir is not None else []
    wanted = {n for n, _, _ in tokens} | ({head[0]} if head is not None else set())
    captured: dict[int, str] = {}
    checker = _RecordChecker(
        report, public_key, Path(messages_dir) if messages_dir is not None else None
    )
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        handle = None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    broken_at: int | None = None
    if handle is not None:
        try:
            with handle:
                broken_at = _verify_chain(handle, report, checker, wanted, captured)
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc.strerror}") from None
    if head is not None:
        _check_head(report, head, captured, broken_at)
    trust = list(tsa_trust) if tsa_trust is not None else None
    for count, prefix, token_path in tokens:
        _check_token(report, count, prefix, token_path, captured, broken_at, trust)
    return report


def _verify_chain(
    handle: IO[bytes],
    report: VerifyReport,
    checker: _RecordChecker,
    wanted: set[int],
    captured: dict[int, str],
) -> int | None:
    """Walk the lines; return the number of the first line that broke the chain, if any."""
    hashes: dict[int, str] = {}
    window: deque[int] = deque()
    prev = GENESIS
    lines = _iter_lines(handle)
    position = 0
    for raw in lines:
        position += 1
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_RECORD_BYTES:
                report.problems.append(
                    Problem(position, "malformed", f"longer than {MAX_RECORD_BYTES} bytes")
                )
                report.lines = position - 1 + _count_rest(handle, raw)
            else:
                report.lines = position - 1
                report.problems.append(
                    Problem(
                        position,
                        "torn",
                        f"{len(raw)} bytes without a newline at the end: a write cut short by a "
                        "crash (the next append moves them aside)",
                    )
                )
            return position
        try:
            record = _parse_line(raw[:-1])
        except _LineError as exc:
            report.problems.append(Problem(position, exc.kind, exc.detail))
            report.lines = position + _count_rest(handle, b"")
            return position
        if record["seq"] != position or record["prev"] != prev:
            ahead = _lookahead_seqs(lines)
            report.problems.append(_classify(position, record, prev, hashes, ahead))
            report.lines = position + len(ahead.consumed) + _count_rest(handle, b"")
            return position
        checker.check(position, record)
        prev = record["hash"]
        hashes[position] = prev
        window.append(position)
        if len(window) > _HASH_WINDOW:
            hashes.pop(window.popleft(), None)
        if position in wanted:
            captured[position] = prev
        report.verified = position
        report.head = (position, prev)
    report.lines = position
    return None


class _Ahead:
    def __init__(self) -> None:
        self.consumed: list[bytes] = []
        self.seqs: list[int] = []


def _lookahead_seqs(lines: Iterator[bytes]) -> _Ahead:
    ahead = _Ahead()
    for raw in lines:
        if not raw.endswith(b"\n"):
            break
        ahead.consumed.append(raw)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and isinstance(value.get("seq"), int):
            ahead.seqs.append(value["seq"])
        if len(ahead.consumed) >= _LOOKAHEAD:
            break
    return ahead


def _count_rest(handle: IO[bytes], pending: bytes) -> int:
    """Complete lines left in the file (``pending``: bytes already read of the current line)."""
    count = pending.count(b"\n")
    for block in iter(lambda: handle.read(1 << 20), b""):
        count += block.count(b"\n")
    return count


def _classify(
    position: int, record: Record, prev: str, hashes: dict[int, str], ahead: _Ahead
) -> Problem:
    """Say what most likely happened at the first line whose ``seq`` or ``prev`` is wrong."""
    seq: int = record["seq"]
    if seq == position:
        if position == 1:
            return Problem(1, "edited", "the first line does not start the chain")
        return Problem(
            position - 1,
            "edited",
            f"line {position} links to a different version of line {position - 1}: "
            f"line {position - 1} was changed and re-hashed",
        )
    if seq > position:
        if any(position <= s < seq for s in ahead.seqs):
            return Problem(
                position,
                "reordered",
                f"line {position} holds record {seq}; earlier records come after it",
            )
        missing = seq - position
        span = f"record {position}" if missing == 1 else f"records {position}-{seq - 1}"
        return Problem(
            position, "deleted", f"{missing} line{'s' if missing > 1 else ''} removed ({span})"
        )
    if hashes.get(seq) == record["hash"]:
        return Problem(position, "inserted", f"line {position} is a copy of line {seq}")
    links_to = GENESIS if seq == 1 else hashes.get(seq - 1)
    if links_to is not None and record["prev"] == links_to:
        span = f"line {seq}" if seq == position - 1 else f"lines {seq}-{position - 1}"
        return Problem(
            seq,
            "inserted",
            f"{span} {'was' if seq == position - 1 else 'were'} inserted: line {position} "
            f"(record {seq}) links to line {seq - 1}",
        )
    return Problem(
        position, "inserted", f"line {position} (record {seq}) does not belong in the chain here"
    )


class _RecordChecker:
    """Per-record checks beyond the chain: signatures and stored messages."""

    def __init__(
        self,
        report: VerifyReport,
        public_key: ed25519.Ed25519PublicKey | None,
        messages_dir: Path | None,
    ) -> None:
        self.report = report
        self.public_key = public_key
        self.key_id = key_id(public_key) if public_key is not None else None
        self.messages_dir = messages_dir
        self._seen: dict[str, str | None] = {}

    def check(self, line: int, record: Record) -> None:
        self._signature(line, record)
        if self.messages_dir is not None and record["event"] in ("outcome", "intent"):
            digest = record.get("digest")
            if digest:
                self._message(line, digest)

    def _signature(self, line: int, record: Record) -> None:
        if "key_id" in record and "sig" not in record:
            self._add(line, "signature", "the record was signed but its signature was removed")
            return
        if "sig" not in record or self.public_key is None:
            return
        if record.get("key_id") != self.key_id:
            self._add(line, "signature", f"signed by another key ({record.get('key_id')})")
            return
        try:
            signature = base64.b64decode(record["sig"], validate=True)
            self.public_key.verify(signature, bytes.fromhex(record["hash"]))
        except (ValueError, InvalidSignature):
            self._add(line, "signature", "the signature does not verify: forged or altered")
            return
        self.report.signatures += 1

    def _message(self, line: int, digest: object) -> None:
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            self._add(line, "message", "the recorded digest is not a SHA-256")
            return
        if digest not in self._seen:
            assert self.messages_dir is not None
            target = self.messages_dir / f"{digest}.eml"
            try:
                actual = _file_sha256(target)
            except FileNotFoundError:
                self._seen[digest] = f"stored message {digest[:16]}... is missing"
            except OSError as exc:
                self._seen[digest] = f"stored message {digest[:16]}... unreadable: {exc.strerror}"
            else:
                self._seen[digest] = (
                    None
                    if actual == digest
                    else f"stored message {digest[:16]}... was altered (its bytes hash differently)"
                )
            if self._seen[digest] is None:
                self.report.messages += 1
        problem = self._seen[digest]
        if problem is not None:
            self._add(line, "message", problem)

    def _add(self, line: int, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(line, kind, detail))


def _check_head(
    report: VerifyReport, head: tuple[int, str], captured: dict[int, str], broken_at: int | None
) -> None:
    count, digest = head
    if count == 0:
        return
    if broken_at is not None and broken_at <= count:
        return  # the break is already the first problem
    if count > report.lines:
        report.problems.append(
            Problem(
                report.lines + 1,
                "truncated",
                f"the log has {report.lines} lines but head {format_head(count, digest)} "
                "was committed: lines were cut off the end",
            )
        )
    elif captured.get(count) != digest.lower():
        report.problems.append(
            Problem(
                count,
                "head-mismatch",
                f"line {count}'s hash differs from the committed head "
                f"{count}:{digest[:16]}...: the log was rewritten",
            )
        )


# --------------------------------------------------------------------------- RFC 3161


_OID_SHA256 = univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
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


def _token_name(count: int, last_hash: str) -> str:
    return f"{count}-{last_hash[:16]}.tsr"


def build_timestamp_request(head_text: str, nonce: int) -> bytes:
    """A DER ``TimeStampReq`` over ``sha256(head_text)`` asking for the TSA certificate."""
    request = rfc3161.TimeStampReq()
    request["version"] = 1
    imprint = request["messageImprint"]
    imprint["hashAlgorithm"]["algorithm"] = _OID_SHA256
    imprint["hashedMessage"] = hashlib.sha256(head_text.encode("utf-8")).digest()
    request["nonce"] = nonce
    request["certReq"] = True
    return bytes(der_encoder.encode(request))


def _decode(data: bytes, spec: Any, what: str) -> Any:
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
    reply = _decode(data, rfc3161.TimeStampResp(), "timestamp reply")
    status = int(reply["status"]["status"])
    if status not in (0, 1):
        text = ""
        if reply["status"]["statusString"].isValue:
            text = ": " + " ".join(str(s) for s in reply["status"]["statusString"])[:200]
        raise AuditError(f"the TSA refused the request ({_STATUS.get(status, status)}{text})")
    token = reply["timeStampToken"]
    if not token.isValue:
        raise AuditError("the TSA granted the request but sent no token")
    if token["contentType"] != rfc5652.id_signedData:
        raise AuditError("the timestamp token is not CMS SignedData")
    signed = _decode(bytes(token["content"]), rfc5652.SignedData(), "timestamp token")
    content = signed["encapContentInfo"]
    if content["eContentType"] != rfc3161.id_ct_TSTInfo or not content["eContent"].isValue:
        raise AuditError("the timestamp token does not hold a TSTInfo")
    tst_der = bytes(content["eContent"])
    info = _decode(tst_der, rfc3161.TSTInfo(), "TSTInfo")
    signer = _check_cms_signature(signed, tst_der)
    if not info["genTime"].isValue:
        raise AuditError("the timestamp token has no genTime")
    gen_time = info["genTime"].asDateTime
    gen_time = gen_time.replace(tzinfo=UTC) if gen_time.tzinfo is None else gen_time.astimezone(UTC)
    imprint = info["messageImprint"]
    return TimestampToken(
        gen_time=gen_time,
        serial=int(info["serialNumber"]),
        policy=str(info["policy"]),
        nonce=int(info["nonce"]) if info["nonce"].isValue else None,
        hash_algorithm=str(imprint["hashAlgorithm"]["algorithm"]),
        imprint=bytes(imprint["hashedMessage"]),
        signer=signer,
    )


def _check_cms_signature(signed: Any, content: bytes) -> x509.Certificate:
    """Verify the single SignerInfo over ``content`` (RFC 5652 §5.4) with its embedded cert."""
    infos = signed["signerInfos"]
    if len(infos) != 1:
        raise AuditError(f"the timestamp token has {len(infos)} signers, expected 1")
    info = infos[0]
    certs = [
        x509.load_der_x509_certificate(bytes(der_encoder.encode(choice["certificate"])))
        for choice in (signed["certificates"] if signed["certificates"].isValue else [])
        if choice.getName() == "certificate"
    ]
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
    nonce = secrets.randbits(63) | 1
    query = build_timestamp_request(text, nonce)
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
        token.hash_algorithm != str(_OID_SHA256)
        or token.imprint != hashlib.sha256(text.encode("utf-8")).digest()
    ):
        raise AuditError("the TSA timestamped something other than our head")
    if store_dir is not None:
        directory = Path(store_dir)
        try:
            _make_dir(directory.parent)
            _make_dir(directory)
            _atomic_write(directory / _token_name(count, digest), reply)
        except OSError as exc:
            raise AuditError(f"cannot store the timestamp token: {exc.strerror}") from None
    return reply


def _token_claims(directory: Path) -> list[tuple[int, str, Path]]:
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(f"cannot read {directory}: {exc.strerror}") from None
    claims = []
    for entry in entries:
        match = _TOKEN_NAME.fullmatch(entry.name)
        if match and int(match.group(1)) > 0:
            claims.append((int(match.group(1)), match.group(2), entry))
    return claims


def _check_token(
    report: VerifyReport,
    count: int,
    prefix: str,
    path: Path,
    captured: dict[int, str],
    broken_at: int | None,
    trust: list[x509.Certificate] | None,
) -> None:
    if broken_at is not None and broken_at <= count:
        return
    if count > report.lines:
        report.problems.append(
            Problem(
                report.lines + 1,
                "truncated",
                f"timestamp {path.name} covers line {count} but the log has {report.lines} lines",
            )
        )
        return
    full = captured.get(count, "")
    if not full.startswith(prefix):
        report.problems.append(
            Problem(count, "timestamp", f"{path.name} was issued for another version of it")
        )
        return
    try:
        token = parse_timestamp_reply(path.read_bytes())
    except OSError as exc:
        report.problems.append(Problem(count, "timestamp", f"{path.name}: {exc.strerror}"))
        return
    except AuditError as exc:
        report.problems.append(Problem(count, "timestamp", f"{path.name}: {exc}"))
        return
    expected = hashlib.sha256(format_head(count, full).encode("utf-8")).digest()
    if token.hash_algorithm != str(_OID_SHA256) or token.imprint != expected:
        report.problems.append(
            Problem(count, "timestamp", f"{path.name} does not timestamp the head of line {count}")
        )
        return
    if trust is not None and not _trusted(token.signer, trust, token.gen_time):
        report.problems.append(
            Problem(count, "timestamp", f"{path.name} is signed by an untrusted TSA certificate")
        )
        return
    report.timestamps.append((count, token.gen_time))


def _trusted(cert: x509.Certificate, trust: list[x509.Certificate], when: datetime) -> bool:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        return False
    for anchor in trust:
        if cert == anchor:
            return True
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False
