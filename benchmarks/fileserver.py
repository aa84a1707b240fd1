"""A static file server for the benchmark suite when nginx is not installed.

aiohttp's ``FileResponse`` (sendfile, ``Content-Length``, ``ETag``, ``Range``), one
process, keep-alive on. Run: ``python benchmarks/fileserver.py DIR`` (prints its port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from aiohttp import web


async def serve(root: Path, port: int) -> None:
    app = web.Application()
    app.router.add_static("/", root, show_index=False, follow_symlinks=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=512)
    await site.start()
    server = site._server  # the port the kernel picked
    assert server is not None
    print(server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.root, args.port))


if __name__ == "__main__":
    main()
