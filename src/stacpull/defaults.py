"""The default of every config key, and the choices of the keys that take a word.

A leaf module (it imports nothing): the dataclasses of :mod:`stacpull.config` take their
defaults from here, and the command line's help texts quote them without loading the
config machinery, so ``stacpull --help`` stays light. :mod:`stacpull.config` re-exports
every name. ``download.record_hash``'s default is :data:`stacpull.hashes.DEFAULT_RECORD_HASH`.
"""

from __future__ import annotations

__all__ = [
    "AUTO",
    "AUTO_CONCURRENCY",
    "AUTO_PER_HOST",
    "DASHBOARDS",
    "DEFAULT_ASSETS",
    "DEFAULT_BACKOFF",
    "DEFAULT_BWLIMIT",
    "DEFAULT_CATALOG",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_CLUSTER_RETRIES",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DASHBOARD",
    "DEFAULT_FILTER_LANG",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_METHOD",
    "DEFAULT_MIN_FREE",
    "DEFAULT_MIN_SPEED",
    "DEFAULT_NOT_FOUND_DELAY",
    "DEFAULT_NOT_FOUND_RETRIES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_PER_HOST",
    "DEFAULT_PROGRESS_INTERVAL",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETRIES",
    "DEFAULT_SCOPE",
    "DEFAULT_SEARCH_TIMEOUT",
    "DEFAULT_SEGMENTS",
    "DEFAULT_SEGMENT_BELOW",
    "DEFAULT_SEGMENT_SIZE",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TOKEN_FILE",
    "DEFAULT_TOKEN_URL",
    "DEFAULT_VERBOSITY",
    "SEARCH_METHODS",
    "VERBOSITIES",
    "WINDOW_START",
]

# [search]
DEFAULT_CATALOG = "https://catalog.maap.eo.esa.int/catalogue/"
DEFAULT_PAGE_SIZE = 100
#: How the search asks (``search.method``), the first the default.
SEARCH_METHODS = ("GET", "POST")
DEFAULT_METHOD = SEARCH_METHODS[0]
DEFAULT_FILTER_LANG = "cql2-text"  # search.filter_lang: or cql2-json
DEFAULT_SEARCH_TIMEOUT = 60.0

# [download]
DEFAULT_ASSETS = ("maap",)
DEFAULT_TEMPLATE = "{collection}/{item}/{name}"
#: ``download.concurrency``, ``per_host`` and ``segments`` as stored when set to "auto".
AUTO = 0
#: Files in flight over all hosts when ``download.concurrency`` is auto.
AUTO_CONCURRENCY = 64
#: The polite per-host ceiling when ``download.per_host`` is auto: each host's window of
#: requests in flight grows no further, whatever the link would take.
AUTO_PER_HOST = 32
#: Where each host's window starts (and stays, with ``download.adaptive = false`` and
#: ``per_host`` auto): today's eight connections.
WINDOW_START = 8
DEFAULT_CONCURRENCY = AUTO
DEFAULT_PER_HOST = AUTO
#: Bound of the job stream; 0: twice the concurrency.
DEFAULT_QUEUE_SIZE = 0
DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_STALL_TIMEOUT = 60.0
#: Bytes/s a transfer must average over each ``stall_timeout`` window (0: no floor).
DEFAULT_MIN_SPEED = 1024
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_NOT_FOUND_RETRIES = 3
DEFAULT_NOT_FOUND_DELAY = 30.0
DEFAULT_MIN_FREE = 100_000_000
#: A run that would download more refuses to start; 0: no budget.
DEFAULT_MAX_BYTES = 0
#: Parallel connections for one large file on a slow link; 1: never split; auto: as many
#: as the host's window gives.
DEFAULT_SEGMENTS = AUTO
#: The smallest range worth its own connection.
DEFAULT_SEGMENT_SIZE = 8 << 20
#: Bytes/s under which a connection is slow enough to split its file.
DEFAULT_SEGMENT_BELOW = 50_000_000
#: Bytes/s for the whole run; 0: no limit.
DEFAULT_BWLIMIT = 0

# [auth]
DEFAULT_TOKEN_FILE = "token.txt"
#: MAAP's OIDC token endpoint, where an offline token is exchanged for access tokens.
DEFAULT_TOKEN_URL = "https://iam.maap.eo.esa.int/realms/esa-maap/protocol/openid-connect/token"
#: The public client MAAP's notebooks use for that exchange (its secret is published there).
DEFAULT_CLIENT_ID = "offline-token"
DEFAULT_CLIENT_SECRET = "p1eL7uonXs6MDxtGbgKdPVRAmnGxHpVE"
DEFAULT_SCOPE = "offline_access openid"
DEFAULT_REFRESH_MARGIN = 60.0

# [output]
DEFAULT_PROGRESS_INTERVAL = 5.0
#: The progress displays (``output.dashboard``), the first the default.
DASHBOARDS = ("auto", "rich", "plain", "none")
DEFAULT_DASHBOARD = DASHBOARDS[0]
#: How much a run prints (``output.verbosity``); the default is the middle one.
VERBOSITIES = ("quiet", "normal", "verbose")
DEFAULT_VERBOSITY = "normal"

# [cluster]
#: How often a cluster run sends a unit out again after it stopped for a transient cause.
DEFAULT_CLUSTER_RETRIES = 2
