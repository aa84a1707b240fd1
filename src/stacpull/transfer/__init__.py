"""One file's download, from the first request to the verified rename.

The package is the transfer side of the engine: it never imports the engine, the CLI, the
report, the dashboard or the API. Its modules, bottom up:

* :mod:`.space`: the free-space budget of DEST;
* :mod:`.partfile`: the ``.part`` file (open, write, hash, seal, rename, remove);
* :mod:`.ranges`: the persistent split state (layout, progress record, discard);
* :mod:`.http`: the boundary with aiohttp (the only client-side module that imports it):
  sessions, error mapping, requests with token, redirects and trust, response checks;
* :mod:`.skip`: the look at the destination and the proof a file is already there;
* :mod:`.context`: what every transfer of a run shares;
* :mod:`.state`: one download's state, and the one place its outcome is built;
* :mod:`.pace`: write batches, the speed floor, the split probe;
* :mod:`.segments`: parallel ranges of a split file;
* :mod:`.stream`: the single stream (the only module using raw asyncio: its write path's
  executor futures); the others use anyio;
* :mod:`.attempts`: :func:`~.attempts.fetch`, the entry point, and the retry loop.
"""

__all__: list[str] = []
