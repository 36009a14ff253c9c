"""Benchmark: how many answers a second the sandbox nameserver gives, so that the batch
benchmark knows it measures the client, not the server.

    .venv/bin/python bench/dns_bench.py                    # 20,000 PTR queries, 500 in flight
    .venv/bin/python bench/dns_bench.py --latency 0.05 --window 1000

The server runs as ``DNSServer(own_process=True)`` (a zone of ``--names`` PTR records, half of
the queries about addresses without one: NXDOMAIN); the client is a bare UDP socket sending
prebuilt queries, ``--window`` in flight. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import resource
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifier.sandbox.dns import DNSServer  # noqa: E402
from notifier.sandbox.dnswire import name_wire  # noqa: E402


class _Client(asyncio.DatagramProtocol):
    def __init__(self, queries: list[bytes], window: int, done: asyncio.Future[None]) -> None:
        self.queries = queries
        self.window = window
        self.done = done
        self.sent = 0
        self.answered = 0
        self.lost = 0
        self.outstanding: dict[int, float] = {}  # query ID -> when it was sent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._fill()

    def _fill(self) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        while len(self.outstanding) < self.window and self.sent < len(self.queries):
            self.outstanding[self.sent & 0xFFFF] = now
            self.transport.sendto(self.queries[self.sent])
            self.sent += 1
        if not self.outstanding and not self.done.done():
            self.done.set_result(None)

    def expire(self, older_than: float) -> None:
        """Queries unanswered for ``older_than`` seconds were lost (UDP): count and replace."""
        limit = time.perf_counter() - older_than
        for key in [k for k, t in self.outstanding.items() if t < limit]:
            del self.outstanding[key]
            self.lost += 1
        self._fill()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.outstanding.pop(int.from_bytes(data[:2], "big"), None) is not None:
            self.answered += 1
        self._fill()


def _query(number: int, ip: str) -> bytes:
    name = ipaddress.ip_address(ip).reverse_pointer
    header = struct.pack(">HHHHHH", number & 0xFFFF, 0x0100, 1, 0, 0, 0)
    return header + name_wire(name) + b"\x00\x0c\x00\x01"


async def main(args: argparse.Namespace) -> None:
    server = DNSServer(latency=args.latency, own_process=True)
    for n in range(args.names):
        server.add_ptr(f"127.{60 + n // 65536}.{(n // 256) % 256}.{n % 256}", f"h{n}.bench.test")
    started = time.perf_counter()
    await server.start()
    ready = time.perf_counter() - started
    queries = [
        _query(i, f"127.{60 + (i % (2 * args.names)) // 65536}.{(i // 256) % 256}.{i % 256}")
        for i in range(args.queries)
    ]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    cpu = time.process_time()
    began = time.perf_counter()
    transport, client = await loop.create_datagram_endpoint(
        lambda: _Client(queries, args.window, done), remote_addr=server.address
    )
    try:
        while not done.done():
            await asyncio.wait([done], timeout=0.5)
            client.expire(2.0)
    finally:
        wall = time.perf_counter() - began
        transport.close()
        await server.stop()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "bench": "dns",
                "queries": args.queries,
                "answered": client.answered,
                "lost": client.lost,
                "server_answered": server.answered,
                "window": args.window,
                "latency_s": args.latency,
                "wall_s": round(wall, 2),
                "answers_per_s": round(client.answered / wall),
                "server_start_s": round(ready, 2),
                "server_cpu_s": round(children.ru_utime + children.ru_stime, 2),
                "client_cpu_s": round(time.process_time() - cpu, 2),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
