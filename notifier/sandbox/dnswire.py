"""Answers straight from wire bytes: the sandbox nameserver's fast path.

Building a reply with dnslib costs a few hundred microseconds of CPU, so a benchmark sending
thousands of queries a second would measure the nameserver rather than the client. Every answer
the zone can give is packed once, keyed by the question's bytes in lower case; a query is then
answered by splicing its ID, its RD bit and its own question in front of the stored bytes (the
question has the same length, so the stored compression pointers stay right). Questions about
names outside the zone get NXDOMAIN (or NOERROR without data for an empty non-terminal) built
from the header alone. Anything unusual (another opcode, ANY, a misbehaving name, a reply too
big for the datagram) is left to dnslib.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dnslib import QTYPE, DNSRecord

__all__ = ["WireTable", "name_wire"]

_HEADER = 12
_NOERROR, _NXDOMAIN = 0, 3
_ANY = 255
_OPT = 41


def name_wire(name: str) -> bytes:
    """``name`` (lower case, no final dot) as uncompressed wire labels."""
    out = bytearray()
    for label in name.split(".") if name else []:
        raw = label.encode("ascii", "replace")[:63]
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _Stored:
    counts: bytes  # ANCOUNT NSCOUNT ARCOUNT
    rcode: int
    body: bytes  # everything after the question


class WireTable:
    """Every reply of one zone snapshot, ready to send."""

    def __init__(
        self,
        answer: object,
        names: Iterable[str],
        types: Mapping[str, Iterable[int]],
        supported: Iterable[int],
    ) -> None:
        # ``answer`` is DNSServer.answer: the reference the stored bytes are built from
        self._answers: dict[bytes, _Stored] = {}
        self._existing: set[bytes] = set()
        all_types = tuple(supported)
        for name in names:
            labels = name.split(".")
            for start in range(len(labels)):
                self._existing.add(name_wire(".".join(labels[start:])))
            has = set(types.get(name, ()))
            # a name with a CNAME answers every type through its target
            wanted = all_types if QTYPE.CNAME in has else has
            for qtype in wanted:
                request = DNSRecord.question(name, QTYPE.get(qtype))
                request.header.rd = 0
                reply = answer(request)  # type: ignore[operator]
                wire = bytes(reply.pack())
                end = _HEADER + len(name_wire(name)) + 4
                key = name_wire(name) + qtype.to_bytes(2, "big") + b"\x00\x01"
                self._answers[key] = _Stored(wire[6:12], wire[3] & 0x0F, wire[end:])

    def __len__(self) -> int:
        return len(self._answers)

    def reply(self, data: bytes) -> tuple[bytes | None, str]:
        """The reply to ``data`` and its outcome, or (None, "") when dnslib must answer."""
        size = len(data)
        if size < _HEADER + 5 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None, ""  # a response, another opcode, or not exactly one question
        at = _HEADER
        while True:
            length = data[at]
            if length == 0:
                break
            if length > 63:
                return None, ""
            at += length + 1
            if at >= size:
                return None, ""
        end = at + 5
        if end > size:
            return None, ""
        question = data[_HEADER:end]
        key = question.lower()  # lengths are at most 63, below "A": only the letters change
        if key[-4:-2] == _ANY.to_bytes(2, "big"):
            return None, ""
        limit = 512
        extra = data[10:12]
        if extra != b"\x00\x00":
            # one OPT record (EDNS) may follow the question: its class is the client's UDP size
            if extra != b"\x00\x01" or size < end + 11 or data[end] != 0:
                return None, ""
            if int.from_bytes(data[end + 1 : end + 3], "big") != _OPT:
                return None, ""
            limit = max(512, int.from_bytes(data[end + 3 : end + 5], "big"))
        flags = bytes((0x84 | (data[2] & 0x01),))  # QR, AA, the client's RD
        stored = self._answers.get(key)
        if stored is None:
            rcode = _NOERROR if key[:-4] in self._existing else _NXDOMAIN
            head = data[0:2] + flags + bytes((rcode,)) + b"\x00\x01\x00\x00\x00\x00\x00\x00"
            return head + question, "NOERROR" if rcode == _NOERROR else "NXDOMAIN"
        if _HEADER + len(question) + len(stored.body) > limit:
            return None, ""  # dnslib sends the truncated reply
        head = data[0:2] + flags + bytes((stored.rcode,)) + b"\x00\x01" + stored.counts
        return head + question + stored.body, "NOERROR" if stored.rcode == 0 else "NXDOMAIN"
