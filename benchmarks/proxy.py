"""A TCP proxy that adds latency and caps each connection's rate, like a distant archive.

The kernel of a CI machine may lack ``netem``; this does the same job in user space for
the benchmark suite. Every chunk is held ``delay`` seconds in each direction (so the
round trip grows by twice that), and the server-to-client direction of each connection
is limited to ``rate`` bytes per second (a token bucket), as large archives throttle each
connection. ``--link-rate`` adds one cap shared by every connection at once, as a link's
capacity is: connections take turns on it, a chunk each. Run:
``python benchmarks/proxy.py --to 127.0.0.1:8080 --delay 0.025 --rate 20e6`` (prints the
port it listens on). ``--stats FILE`` writes, at exit or on SIGTERM, how many connections
were open and carried data over time (see ``Stats``), so a benchmark can say how many
connections a tool ended with.

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
import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

#: Stop reading a connection's source while this much waits to be sent; resume below LOW.
HIGH = 4 << 20
LOW = 1 << 20
#: How far the rate cap lets a connection catch up after this process was late to send
#: (a busy core): without it, every late timer would lower the cap the tool sees.
BURST = 0.05


class Link:
    """The cap every connection's server-to-client bytes share: ``rate`` bytes/s in all.

    A connection whose next chunk is due while the link is busy joins ``waiting`` and is
    called back in its turn, one chunk per turn (round robin, as a fair link queue
    would), so 64 connections cost one timer, not 64 that all fire and find it taken.
    ``sent`` counts the bytes that crossed it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float) -> None:
        self.loop, self.rate = loop, rate
        self.pace = 0.0  # the earliest moment the link may carry the next chunk
        self.waiting: collections.deque[_Direction] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.serving: _Direction | None = None  # whose turn it is, during a turn
        self.sent = 0

    def free(self, now: float, direction: _Direction) -> bool:
        """Whether ``direction`` may send now: the link is idle, and nobody waits before it."""
        return self.pace <= now and (not self.waiting or direction is self.serving)

    def take(self, size: int, now: float) -> None:
        # As for a connection: a late turn catches up on at most BURST, idle time is lost.
        self.pace = max(self.pace, now - BURST) + size / self.rate
        self.sent += size

    def wait(self, direction: _Direction) -> None:
        self.waiting.append(direction)
        if self.timer is None:
            self.timer = self.loop.call_at(self.pace, self._turn)

    def _turn(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.waiting and self.pace <= now:
            direction = self.serving = self.waiting.popleft()
            direction.linked = False
            direction.send()  # may join the queue again, at its end
        self.serving = None
        if self.waiting and self.timer is None:
            self.timer = self.loop.call_at(self.pace, self._turn)


class _Conn:
    """What ``Stats`` keeps of one connection: when it opened and closed, when it last
    carried bytes to the client, and each whole second and each 100 ms slot (since the
    first connection) in which it carried any."""

    __slots__ = ("closed", "last_sent", "opened", "seconds", "sent", "slots")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.closed: float | None = None
        self.last_sent: float | None = None
        self.seconds: list[int] = []
        self.slots: list[int] = []
        self.sent = 0


#: Slots per second in which ``Stats`` counts the connections carrying data at once.
_SLOTS = 10


def _at_once(conns: list[_Conn], start: float, end: float) -> int:
    """The most connections that carried bytes within one slot of the last second."""
    last = int((end - start) * _SLOTS)
    counts = collections.Counter(s for c in conns for s in c.slots if s > last - _SLOTS)
    return max(counts.values(), default=0)


class Stats:
    """How many connections the proxy relayed, how many were open at once and how many
    carried data, second by second. ``summary()`` says how many a tool *ended* with:
    those that carried bytes to it during the last second of traffic (``busy_at_end``),
    those open at some moment of that second (``open_at_end``, which counts idle
    keep-alive connections too), and the most that carried bytes at once, per 100 ms slot,
    in that second (``at_once_end``: a client that keeps three requests in flight over a
    pool of eight keep-alive connections uses all eight within a second, but never more
    than three at once, so this is the count its window is judged by)."""

    def __init__(self) -> None:
        self.start: float | None = None  # the first connection
        self.first_sent: float | None = None  # the first byte to a client
        self.conns: list[_Conn] = []
        self.open = 0
        self.peak_open = 0

    def opened(self, now: float) -> _Conn:
        if self.start is None:
            self.start = now
        conn = _Conn(now)
        self.conns.append(conn)
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        return conn

    def closed(self, conn: _Conn, now: float) -> None:
        if conn.closed is None:
            conn.closed = now
            self.open -= 1

    def sent(self, conn: _Conn, size: int, now: float) -> None:
        if self.first_sent is None:
            self.first_sent = now
        conn.last_sent = now
        conn.sent += size
        since = now - (now if self.start is None else self.start)
        second, slot = int(since), int(since * _SLOTS)
        if not conn.seconds or conn.seconds[-1] != second:
            conn.seconds.append(second)
        if not conn.slots or conn.slots[-1] != slot:
            conn.slots.append(slot)

    def summary(self) -> dict[str, Any]:
        """The counts as JSON; the end is the last byte sent to a client."""
        sends = [c.last_sent for c in self.conns if c.last_sent is not None]
        if self.start is None or self.first_sent is None or not sends:
            return {
                "connections": len(self.conns),
                "peak_open": self.peak_open,
                **dict.fromkeys(
                    ("peak_busy", "busy_at_end", "at_once_end", "open_at_end", "bytes"), 0
                ),
                "seconds": 0.0,
                "timeline": [],
            }
        start, end = self.start, max(sends)
        seconds = int(end - start) + 1
        alive, busy = [0] * seconds, [0] * seconds  # a pass over each connection's life
        for c in self.conns:
            last = seconds - 1 if c.closed is None else min(int(c.closed - start), seconds - 1)
            for second in range(int(c.opened - start), last + 1):
                alive[second] += 1
            for second in c.seconds:
                busy[second] += 1
        timeline = [[t, alive[t], busy[t]] for t in range(seconds)]  # [second, open, busy]
        return {
            "connections": len(self.conns),
            "peak_open": self.peak_open,
            "peak_busy": max(busy for _, _, busy in timeline),
            "busy_at_end": sum(t >= end - 1.0 for t in sends),
            "at_once_end": _at_once(self.conns, start, end),
            "open_at_end": sum(
                c.opened <= end and (c.closed is None or c.closed >= end - 1.0) for c in self.conns
            ),
            "bytes": sum(c.sent for c in self.conns),
            "seconds": end - self.first_sent,  # from the first byte to a client to the last
            "timeline": timeline,
        }


class _Direction:
    """One direction of a proxied connection: what ``source`` delivers leaves to ``sink``
    ``delay`` seconds after it arrived, and no faster than ``rate`` bytes/s (0: no cap)
    nor than the shared ``link`` allows (None: no link cap).
    Latency is pipelined, not added per chunk: the queue carries each chunk's due time."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delay: float,
        rate: float,
        link: Link | None = None,
        counted: tuple[Stats, _Conn] | None = None,
    ) -> None:
        self.loop, self.delay, self.rate, self.link = loop, delay, rate, link
        self.counted = counted  # where the bytes this direction sends are recorded
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.buffered = 0
        self.pace = 0.0  # the earliest moment the next chunk may leave, under the rate cap
        self.timer: asyncio.TimerHandle | None = None
        self.linked = False  # waiting in the link's queue for its turn
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
        if self.timer is not None or self.linked or self.sink is None or self.sink_full:
            return
        if not self.queue:
            if self.ended:
                self.sink.close()  # sends what the transport still buffers, then FIN
            return
        due = max(self.queue[0][0], self.pace)
        self.timer = self.loop.call_at(due, self.send)

    def send(self) -> None:
        """Send every chunk that is due, as the caps allow; then wait for the next one."""
        self.timer = None
        assert self.sink is not None
        if self.sink.is_closing():
            self.queue.clear()
            self.buffered = 0
            return
        now = self.loop.time()
        link = self.link
        while self.queue and self.queue[0][0] <= now and self.pace <= now and not self.sink_full:
            if link is not None and not link.free(now, self):
                break
            due, data = self.queue.popleft()
            self.buffered -= len(data)
            if self.rate:
                # The chunk's slot began when it was due and the previous one had left;
                # a late timer may catch up on at most BURST of it, and time the
                # connection spent idle is not saved up for a burst later.
                self.pace = max(self.pace, due, now - BURST) + len(data) / self.rate
            if link is not None:
                link.take(len(data), now)
            if self.counted is not None:
                self.counted[0].sent(self.counted[1], len(data), now)
            self.sink.write(data)  # may call sink_paused() at once
        if self.source_paused and self.buffered < LOW and self.source is not None:
            self.source_paused = False
            self.source.resume_reading()
        ready = self.queue and self.queue[0][0] <= now and self.pace <= now
        if link is not None and ready and not self.sink_full and not link.free(now, self):
            self.linked = True
            link.wait(self)
        else:
            self.kick()

    def sink_paused(self) -> None:
        self.sink_full = True

    def sink_resumed(self) -> None:
        self.sink_full = False
        self.kick()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: what it receives feeds ``incoming``; its write
    buffer's pressure holds back ``outgoing`` (the direction that writes to it).
    ``closed`` is called once the socket is gone."""

    def __init__(
        self, incoming: _Direction, outgoing: _Direction, closed: Callable[[], None] | None = None
    ) -> None:
        self.incoming, self.outgoing, self.closed = incoming, outgoing, closed

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
        if self.closed is not None:
            self.closed()

    def pause_writing(self) -> None:
        self.outgoing.sink_paused()

    def resume_writing(self) -> None:
        self.outgoing.sink_resumed()


async def start(
    host: str,
    port: int,
    target: tuple[str, int],
    delay: float,
    rate: float,
    *,
    link_rate: float = 0.0,
    stats: Stats | None = None,
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) and relay every connection to ``target``;
    ``link_rate`` caps all connections' server-to-client bytes together (0: no cap), and
    ``stats`` (if given) records the connections."""
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()  # held here: the loop keeps weak references
    link = Link(loop, link_rate) if link_rate else None

    def accept() -> _Side:
        counted = (stats, stats.opened(loop.time())) if stats is not None else None
        up = _Direction(loop, delay, 0)  # client to server: delayed, not capped
        down = _Direction(loop, delay, rate, link, counted)  # server to client: capped

        def closed() -> None:
            if counted is not None:
                counted[0].closed(counted[1], loop.time())

        client = _Side(up, down, closed)

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


async def serve(
    host: str, port: int, target: tuple[str, int], delay: float, rate: float, link_rate: float
) -> Stats:
    """Relay until SIGTERM or SIGINT; return what the stats recorded."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # before the port is told: no race
        loop.add_signal_handler(signum, stop.set)
    stats = Stats()
    server = await start(host, port, target, delay, rate, link_rate=link_rate, stats=stats)
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop.wait()
    # Not ``async with server``: its wait_closed() may wait for the clients to hang up.
    server.close()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--to", required=True, help="HOST:PORT of the server")
    parser.add_argument("--delay", type=float, default=0.025, help="one-way seconds")
    parser.add_argument("--rate", type=float, default=20e6, help="bytes/s per connection")
    parser.add_argument(
        "--link-rate", type=float, default=0.0, help="bytes/s shared by every connection (0: none)"
    )
    parser.add_argument("--stats", type=Path, help="write the connection counts here at exit")
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    run = asyncio.run
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        run = uvloop.run
    target = (host, int(port))
    stats = run(serve(args.listen, args.port, target, args.delay, args.rate, args.link_rate))
    if args.stats is not None:
        summary = {"rate": args.rate, "link_rate": args.link_rate, **stats.summary()}
        args.stats.write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
