"""The loopback mail server's DATA: what a client's bytes become, and aiosmtpd's replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from notifier.sandbox.smtp import SMTPServer


@pytest.fixture
async def server() -> AsyncIterator[SMTPServer]:
    async with SMTPServer(size_limit=4096) as running:
        yield running


async def _session(server: SMTPServer, *writes: bytes) -> list[bytes]:
    """Send ``writes`` (each at once, pipelined as they are) after EHLO, MAIL and RCPT; the
    replies from the first after RCPT on, up to and with the reply to QUIT."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        await reader.readline()  # greeting
        writer.write(b"EHLO client.test\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        writer.write(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@server.test>\r\n")
        assert (await reader.readline()).startswith(b"250")
        assert (await reader.readline()).startswith(b"250")
        for chunk in writes:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        replies = []
        async with asyncio.timeout(5):
            while not (line := await reader.readline()).startswith(b"221") and line:
                replies.append(line.rstrip())
        return replies
    finally:
        writer.close()


async def test_data_is_unstuffed_and_a_pipelined_command_after_it_answered(
    server: SMTPServer,
) -> None:
    body = b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n"
    # the end of data and QUIT in one write; the data split mid-line, and inside the end mark
    for cut in (20, len(body) - 2, len(body) - 4):
        replies = await _session(server, b"DATA\r\n", body[:cut], body[cut:] + b"QUIT\r\n")
        assert replies[0].startswith(b"354") and replies[1].startswith(b"250 2.0.0 OK")
        assert server.messages.pop().raw == b"Subject: dots\r\n\r\n.leading dot\r\n"


async def test_an_empty_message_is_accepted(server: SMTPServer) -> None:
    replies = await _session(server, b"DATA\r\n.\r\nQUIT\r\n")
    assert replies[1].startswith(b"250")
    assert server.messages[0].raw == b""


async def test_a_line_too_long_and_data_too_big_are_refused_after_the_end(
    server: SMTPServer,
) -> None:
    long_line = b"x" * 1000 + b"\r\n.\r\n"
    replies = await _session(server, b"DATA\r\n", long_line, b"QUIT\r\n")
    assert replies[1].startswith(b"500 Line too long")
    # more than the limit, in many chunks: read to the end and refused, the session goes on
    big = [b"y" * 70 + b"\r\n"] * 200
    replies = await _session(
        server,
        b"DATA\r\n",
        *[b"".join(big[i : i + 50]) for i in range(0, 200, 50)],
        b".\r\nRSET\r\nQUIT\r\n",
    )
    assert replies[1].startswith(b"552") and replies[2].startswith(b"250")
    assert server.messages == []


@pytest.mark.parametrize(
    "path",
    [
        "<a@b.test>",
        " <abuse@org1.test> SIZE=1234",
        "<bounce+ntf-abc.123=x@research.test>\tBODY=8BITMIME",
        "<a@b> (a comment) SIZE=1",
        '<"quoted"@x.test>',
        "<a@[127.0.0.1]>",
        "<@route:a@b>",
        "<a@b.>",
        "<>",
        "a@b.test",
        "<abcdefgh@b.test>",
    ],
)
def test_paths_are_read_as_aiosmtpd_reads_them(path: str) -> None:
    """The plain <local@domain> is read without aiosmtpd's header parser, to the same result;
    the local part's limit holds on both ways."""
    from aiosmtpd.smtp import SMTP

    from notifier.sandbox.smtp import _Protocol

    protocol = _Protocol.__new__(_Protocol)
    for limit in (0, 4):
        protocol.local_part_limit = limit
        assert protocol._getaddr(path) == SMTP._getaddr(protocol, path)


async def test_every_line_loses_one_leading_dot(server: SMTPServer) -> None:
    """As RFC 5321 4.5.2 says and aiosmtpd does it, line by line: the first line too."""
    lines = [b"..first", b"x", b"...", b"..", b"a.b", b"", b"..\tz"]  # as a client stuffs them
    body = b"\r\n".join(lines) + b"\r\n"
    replies = await _session(server, b"DATA\r\n", body + b".\r\nQUIT\r\n")
    assert replies[1].startswith(b"250")
    expected = b"".join((line[1:] if line[:1] == b"." else line) + b"\r\n" for line in lines)
    assert server.messages[0].raw == expected
