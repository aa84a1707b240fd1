"""A TCP proxy that adds latency and caps each connection's rate, like a distant archive.

The kernel of a CI machine may lack ``netem``; this does the same job in user space for
the benchmark suite. Every chunk is held ``delay`` seconds in each direction (so the
round trip grows by twice that), and the server-to-client direction of each connection
is limited to ``rate`` bytes per second (a token bucket), as large archives throttle each
connection. Run: ``python benchmarks/proxy.py --to 127.0.0.1:8080 --delay 0.025 --rate 20e6``
(prints the port it listens on).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

CHUNK = 64 * 1024


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    rate: float | None,
) -> None:
    """Copy ``reader`` to ``writer``: each chunk leaves ``delay`` s after it arrived, and
    no faster than ``rate`` bytes/s (``None``: no cap). Latency is pipelined, not added
    per chunk: a queue carries the arrival times."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                await queue.put((time.monotonic() + delay, data))
        finally:
            await queue.put((0.0, b""))

    async def write() -> None:
        pace = 0.0  # the earliest moment the next chunk may leave, under the rate cap
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = max(due, pace) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            if rate:
                pace = max(pace, time.monotonic()) + len(data) / rate

    reading = asyncio.create_task(read())
    try:
        await write()
    finally:
        reading.cancel()
        with contextlib.suppress(Exception):
            writer.close()


async def serve(host: str, port: int, target: tuple[str, int], delay: float, rate: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            _pipe(client_r, up_w, delay, None),
            _pipe(up_r, client_w, delay, rate or None),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, host, port, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--to", required=True, help="HOST:PORT of the server")
    parser.add_argument("--delay", type=float, default=0.025, help="one-way seconds")
    parser.add_argument("--rate", type=float, default=20e6, help="bytes/s per connection")
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.port, (host, int(port)), args.delay, args.rate))


if __name__ == "__main__":
    main()
