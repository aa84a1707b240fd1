"""The benchmark suite's WAN proxy (benchmarks/proxy.py) against a real server on
127.0.0.1: it must pass bytes unchanged both ways, add its delay to every round trip and
hold each connection to its rate cap, share its link cap among all connections and count
the connections a tool ended with, or the suite's WAN rows measure something else."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
from aiohttp import web

BODY = bytes(range(256)) * 4096  # 1 MiB


def _proxy_module() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "proxy.py"
    spec = importlib.util.spec_from_file_location("bench_proxy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _through_proxy(delay: float, rate: float) -> tuple[dict[str, float], str, str]:
    """Ask a local server for a 1 MiB body and send it 1 MiB through the proxy; return the
    timings and the SHA-256 of what came back each way."""
    proxy = _proxy_module()

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    async def echo(request: web.Request) -> web.Response:
        data = await request.read()
        return web.Response(text=hashlib.sha256(data).hexdigest())

    async def small(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=4 << 20)
    app.router.add_get("/big", big)
    app.router.add_get("/small", small)
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server = await proxy.start("127.0.0.1", 0, ("127.0.0.1", port), delay, rate)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    times: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            began = time.monotonic()
            async with session.get(f"{url}/small") as resp:
                assert await resp.text() == "ok"
            times["round trip"] = time.monotonic() - began
            began = time.monotonic()
            async with session.get(f"{url}/big") as resp:
                down = hashlib.sha256(await resp.read()).hexdigest()
            times["1 MiB down"] = time.monotonic() - began
            async with session.post(f"{url}/echo", data=BODY) as resp:
                up = await resp.text()
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()
    return times, down, up


def test_the_proxy_passes_bytes_unchanged_with_its_delay_and_rate_cap() -> None:
    times, down, up = asyncio.run(_through_proxy(delay=0.05, rate=2e6))
    expected = hashlib.sha256(BODY).hexdigest()
    assert down == expected and up == expected
    # Lower bounds only: the delay in each direction, and 1 MiB at 2 MB/s (less the
    # catch-up the cap allows after a late timer and the first chunk, which leaves at once).
    assert times["round trip"] >= 0.1
    assert times["1 MiB down"] >= 0.1 + (len(BODY) - 256 * 1024) / 2e6 - 0.05


def test_the_proxy_without_a_cap_passes_bytes_unchanged() -> None:
    _, down, up = asyncio.run(_through_proxy(delay=0.0, rate=0))
    assert down == up == hashlib.sha256(BODY).hexdigest()


async def _parallel_through_link(link_rate: float, rate: float, n: int) -> tuple[Any, list[str]]:
    """Fetch ``n`` 1 MiB bodies at once through a proxy whose link is capped at
    ``link_rate``; return the proxy's Stats and each body's SHA-256."""
    proxy = _proxy_module()

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    stats = proxy.Stats()
    server = await proxy.start(
        "127.0.0.1", 0, ("127.0.0.1", port), 0.0, rate, link_rate=link_rate, stats=stats
    )
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/big"

    async def fetch(session: aiohttp.ClientSession) -> str:
        async with session.get(url) as resp:
            return hashlib.sha256(await resp.read()).hexdigest()

    try:
        async with aiohttp.ClientSession() as session:
            digests = await asyncio.gather(*(fetch(session) for _ in range(n)))
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()
    return stats, list(digests)


def test_the_link_cap_is_shared_by_every_connection() -> None:
    # Four connections, each allowed the whole link rate alone: if the cap were per
    # connection they would take a quarter of the time the shared cap needs.
    stats, digests = asyncio.run(_parallel_through_link(link_rate=8e6, rate=8e6, n=4))
    assert digests == [hashlib.sha256(BODY).hexdigest()] * 4
    summary = stats.summary()
    assert summary["connections"] == summary["peak_open"] == 4
    assert summary["peak_busy"] == summary["busy_at_end"] == 4  # all four took turns
    assert summary["bytes"] >= 4 * len(BODY)
    # The proxy's own clock, from its first byte sent to its last: a lower bound only
    # (a loaded machine only makes it longer). The shared link needs 4 MiB / 8 MB/s, less
    # the last chunk and the catch-up the cap allows; four separate caps would need 0.13 s.
    least = (4 * len(BODY) - 256 * 1024) / 8e6 - 0.05
    assert summary["seconds"] >= least > 3 * len(BODY) / 8e6


def test_the_stats_count_the_connections_open_and_busy_at_the_end() -> None:
    stats = _proxy_module().Stats()
    early = stats.opened(0.0)  # busy at first, then closed
    stats.sent(early, 100, 0.2)
    stats.closed(early, 1.5)
    idle = stats.opened(0.1)  # open to the end, never carries a byte after 0.3 s
    stats.sent(idle, 10, 0.3)
    late = [stats.opened(2.0), stats.opened(2.1)]
    for conn in late:
        stats.sent(conn, 1000, 2.5)
        stats.sent(conn, 1000, 3.9)
    stats.sent(late[0], 1000, 4.0)  # the last byte: the last second is 3.0-4.0
    summary = stats.summary()
    assert summary["connections"] == 4
    assert summary["peak_open"] == 3
    assert summary["busy_at_end"] == 2  # the two late ones
    assert summary["open_at_end"] == 3  # and the idle one, still open
    assert summary["bytes"] == 5110
    assert summary["seconds"] == 3.8
    assert summary["timeline"] == [[0, 2, 2], [1, 2, 0], [2, 3, 2], [3, 3, 2], [4, 3, 1]]


async def _stats_on_sigterm(tmp_path: Path) -> dict[str, Any]:
    async def small(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "proxy.py"
    out = tmp_path / "stats.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "--to", f"127.0.0.1:{port}", "--delay", "0",
        "--rate", "0", "--link-rate", "1e9", "--stats", str(out),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(await proc.stdout.readline())}/small"
        for _ in range(2):  # two connections, one after the other
            async with aiohttp.ClientSession() as session:
                for _ in range(3):  # kept alive: one connection
                    async with session.get(url) as resp:
                        assert await resp.text() == "ok"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    return dict(json.loads(out.read_text()))


def test_the_proxy_writes_its_stats_on_sigterm(tmp_path: Path) -> None:
    summary = asyncio.run(_stats_on_sigterm(tmp_path))
    assert summary["connections"] == 2
    assert summary["peak_open"] >= 1
    assert summary["busy_at_end"] >= 1
    assert summary["link_rate"] == 1e9 and summary["rate"] == 0
    assert summary["timeline"]


def test_connections_that_take_turns_count_once_at_the_end() -> None:
    """A client with three requests in flight over a pool of eight keep-alive connections
    carries data on all eight within a second, never on more than three at once: the
    connections it *ended* with are those carrying data at once (per 100 ms), not every
    one that carried a byte in the last second."""
    stats = _proxy_module().Stats()
    pool = [stats.opened(0.0) for _ in range(8)]
    now = 0.0
    for step in range(40):  # each 25 ms, three connections carry data; the pool rotates
        for k in range(3):
            stats.sent(pool[(step // 4 + k) % 8], 1000, now)
        now += 0.025
    summary = stats.summary()
    assert summary["busy_at_end"] == 8  # every pooled connection carried a byte
    assert summary["at_once_end"] <= 4  # never more than three (and one changing over)
    assert summary["at_once_end"] >= 3
