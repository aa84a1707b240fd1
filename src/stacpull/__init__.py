"""stacpull: fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""

__version__ = "0.3.0"  # before the imports: the engine puts it in its User-Agent

from .api import adownload, amirror, download, mirror
from .config import Config, load_config
from .engine import RunResult
from .errors import StacpullError

__all__ = [
    "Config",
    "RunResult",
    "StacpullError",
    "adownload",
    "amirror",
    "download",
    "load_config",
    "mirror",
]
