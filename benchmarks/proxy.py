"""A TCP proxy that adds latency and caps each connection's rate, like a distant archive.

The kernel of a CI machine may lack ``netem``; this does the same job in user space for
the benchmark suite. Every chunk is held ``delay`` seconds in each direction (so the
round trip grows by twice that), and the server-to-client direction of each connection
is limited to ``rate`` bytes per second (a token bucket), as large archives throttle each
connection. Run: ``python benchmarks/proxy.py --to 127.0.0.1:8080 --delay 0.025 --rate 20e6``
(prints the port it listens on).

It shares the machine's cores with the tool being measured, so it is built to cost as
little CPU as it can: asyncio protocols and timer callbacks rather than streams, tasks
and queues (a third of the CPU per byte), uvloop when installed. Its upstream reads pause
once a connection holds ``HIGH`` bytes that have not left yet, as a server's socket
buffer would, so a throttled gigabyte is not buffered here whole.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import socket
from typing import cast

#: Stop reading a connection's source while this much waits to be sent; resume below LOW.
HIGH = 4 << 20
LOW = 1 << 20
#: How far the rate cap lets a connection catch up after this process was late to send
#: (a busy core): without it, every late timer would lower the cap the tool sees.
BURST = 0.05


class _Direction:
    """One direction of a proxied connection: what ``source`` delivers leaves to ``sink``
    ``delay`` seconds after it arrived, and no faster than ``rate`` bytes/s (0: no cap).
    Latency is pipelined, not added per chunk: the queue carries each chunk's due time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, rate: float) -> None:
        self.loop, self.delay, self.rate = loop, delay, rate
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.buffered = 0
        self.pace = 0.0  # the earliest moment the next chunk may leave, under the rate cap
        self.timer: asyncio.TimerHandle | None = None
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None  # None until the upstream connects
        self.source_paused = False
        self.sink_full = False  # the sink's buffer is over its high-water mark
        self.ended = False  # the source sent EOF or went away

    def feed(self, data: bytes) -> None:
        self.queue.append((self.loop.time() + self.delay, data))
        self.buffered += len(data)
        if self.buffered > HIGH and self.source is not None and not self.source_paused:
            self.source_paused = True
            self.source.pause_reading()
        self.kick()

    def end(self) -> None:
        self.ended = True
        self.kick()

    def kick(self) -> None:
        """Arrange for the head of the queue to leave when it is due."""
        if self.timer is not None or self.sink is None or self.sink_full:
            return
        if not self.queue:
            if self.ended:
                self.sink.close()  # sends what the transport still buffers, then FIN
            return
        due = max(self.queue[0][0], self.pace)
        self.timer = self.loop.call_at(due, self._send)

    def _send(self) -> None:
        self.timer = None
        assert self.sink is not None
        if self.sink.is_closing():
            self.queue.clear()
            self.buffered = 0
            return
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now and self.pace <= now and not self.sink_full:
            due, data = self.queue.popleft()
            self.buffered -= len(data)
            if self.rate:
                # The chunk's slot began when it was due and the previous one had left;
                # a late timer may catch up on at most BURST of it, and time the
                # connection spent idle is not saved up for a burst later.
                self.pace = max(self.pace, due, now - BURST) + len(data) / self.rate
            self.sink.write(data)  # may call sink_paused() at once
        if self.source_paused and self.buffered < LOW and self.source is not None:
            self.source_paused = False
            self.source.resume_reading()
        self.kick()

    def sink_paused(self) -> None:
        self.sink_full = True

    def sink_resumed(self) -> None:
        self.sink_full = False
        self.kick()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: what it receives feeds ``incoming``; its write
    buffer's pressure holds back ``outgoing`` (the direction that writes to it)."""

    def __init__(self, incoming: _Direction, outgoing: _Direction) -> None:
        self.incoming, self.outgoing = incoming, outgoing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.incoming.source = transport
        self.outgoing.sink = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.outgoing.kick()

    def data_received(self, data: bytes) -> None:
        self.incoming.feed(data)

    def eof_received(self) -> bool:
        self.incoming.end()
        return True  # keep the socket open: the other direction may still be sending

    def connection_lost(self, exc: Exception | None) -> None:
        self.incoming.end()
        self.outgoing.queue.clear()
        self.outgoing.buffered = 0

    def pause_writing(self) -> None:
        self.outgoing.sink_paused()

    def resume_writing(self) -> None:
        self.outgoing.sink_resumed()


async def start(
    host: str, port: int, target: tuple[str, int], delay: float, rate: float
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) and relay every connection to ``target``."""
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()  # held here: the loop keeps weak references

    def accept() -> _Side:
        up = _Direction(loop, delay, 0)  # client to server: delayed, not capped
        down = _Direction(loop, delay, rate)  # server to client: delayed and capped
        client = _Side(up, down)

        async def connect() -> None:
            try:
                await loop.create_connection(lambda: _Side(down, up), *target)
            except OSError:
                if down.sink is not None:
                    down.sink.close()

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    return await loop.create_server(accept, host, port, backlog=512)


async def serve(host: str, port: int, target: tuple[str, int], delay: float, rate: float) -> None:
    server = await start(host, port, target, delay, rate)
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
    run = asyncio.run
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        run = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(args.listen, args.port, (host, int(port)), args.delay, args.rate))


if __name__ == "__main__":
    main()
