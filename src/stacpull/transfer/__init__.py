"""One file's download, from the first request to the verified rename.

The package is the transfer side of the engine: it never imports the engine, the CLI, the
report or the dashboard. :mod:`.http` is its boundary with aiohttp (the only client-side
module that imports it); the other modules are named in the README's layout table.
"""

__all__: list[str] = []
