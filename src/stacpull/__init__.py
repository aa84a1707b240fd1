"""stacpull: fast, resumable, verified bulk downloads from STAC catalogues (ESA MAAP first)."""

from .api import adownload, download
from .config import Config, load_config
from .engine import RunResult
from .errors import StacpullError

__all__ = ["Config", "RunResult", "StacpullError", "adownload", "download", "load_config"]
__version__ = "0.1.0"
