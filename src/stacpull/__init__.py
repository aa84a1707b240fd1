"""stacpull: fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first).

The package root is lazy (PEP 562): ``import stacpull`` loads nothing heavy, and each name
of the API is imported from its module on first use, so the command line starts without
aiohttp when it does not transfer. To add a name to the API, list it in ``__all__`` and
import it under ``TYPE_CHECKING`` (so type checkers see it); a name that does not live in
``stacpull.api`` also gets a line in ``_HOMES``. tests/test_scripting_setup.py keeps the
three in step.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__  # re-exported: stacpull.__version__

__all__ = [
    "Config",
    "FileRecord",
    "Options",
    "RunControl",
    "RunResult",
    "StacpullError",
    "acollections",
    "adownload",
    "adry_run",
    "amirror",
    "aqueryables",
    "arun",
    "asearch_items",
    "collections",
    "download",
    "dry_run",
    "load_config",
    "mirror",
    "queryables",
    "run",
    "search_items",
]

#: The module of each public name that is not in ``stacpull.api``.
_HOMES: dict[str, str] = {
    "Config": "config",
    "FileRecord": "engine",
    "RunResult": "engine",
    "StacpullError": "errors",
    "load_config": "config",
}

if TYPE_CHECKING:
    from .api import (
        Options,
        RunControl,
        acollections,
        adownload,
        adry_run,
        amirror,
        aqueryables,
        arun,
        asearch_items,
        collections,
        download,
        dry_run,
        mirror,
        queryables,
        run,
        search_items,
    )
    from .config import Config, load_config
    from .engine import FileRecord, RunResult
    from .errors import StacpullError
else:

    def __getattr__(name: str) -> Any:
        """Import a public name from its module the first time it is used; a module of the
        package (``stacpull.errors``, ``stacpull.auth``) as ``import stacpull`` once made
        them all attributes, by importing the API."""
        if name not in __all__:
            if name.startswith("_") or importlib.util.find_spec(f".{name}", __name__) is None:
                raise AttributeError(f"module 'stacpull' has no attribute {name!r}")
            return importlib.import_module(f".{name}", __name__)  # sets the attribute
        value = getattr(importlib.import_module(f".{_HOMES.get(name, 'api')}", __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
