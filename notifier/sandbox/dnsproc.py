"""The sandbox nameserver in a process of its own (``DNSServer(own_process=True)``).

Reads the zone snapshot its parent pickled onto standard input, serves it on a free port,
prints the port, and at the end of its input prints how many answers it sent and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import pickle  # noqa: S403 - written by our own parent process
import sys

from .dns import DNSServer

__all__ = ["main"]


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    size = int.from_bytes(await reader.readexactly(8), "big")
    records, misbehaviour, ttl, latency, host = pickle.loads(  # noqa: S301
        await reader.readexactly(size)
    )
    server = DNSServer(host=host, ttl=ttl, latency=latency)
    server.zone.records = records
    server._misbehaviour = misbehaviour
    server.log_queries = False
    server.prepare()
    # the zone and its packed answers live as long as the process: kept out of every garbage
    # collection (one walking them held every answer for 30 ms, latency no real resolver adds)
    gc.freeze()
    await server.start()
    print(server.port, flush=True)
    try:
        await reader.read()  # until the parent closes our input
    finally:
        await server.stop()
        print(json.dumps({"answered": server.answered}), flush=True)


def main() -> None:
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
