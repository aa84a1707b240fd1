"""stacpull: fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""

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
__version__ = "0.1.0"
