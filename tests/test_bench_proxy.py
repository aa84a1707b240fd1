"""The benchmark suite's WAN proxy (benchmarks/proxy.py) against a real server on
127.0.0.1: it must pass bytes unchanged both ways, add its delay to every round trip and
hold each connection to its rate cap, or the suite's WAN rows measure something else."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import time
from pathlib import Path
from types import ModuleType

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
