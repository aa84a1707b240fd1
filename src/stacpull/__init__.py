"""stacpull: fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""

__version__ = "0.3.0"  # before the imports: the engine puts it in its User-Agent

from .api import (
    Options,
    acollections,
    adownload,
    adry_run,
    amirror,
    aqueryables,
    asearch_items,
    collections,
    download,
    dry_run,
    mirror,
    queryables,
    search_items,
)
from .config import Config, load_config
from .engine import FileRecord, RunResult
from .errors import StacpullError

__all__ = [
    "Config",
    "FileRecord",
    "Options",
    "RunResult",
    "StacpullError",
    "acollections",
    "adownload",
    "adry_run",
    "amirror",
    "aqueryables",
    "asearch_items",
    "collections",
    "download",
    "dry_run",
    "load_config",
    "mirror",
    "queryables",
    "search_items",
]
