"""The Python API: ``stacpull.download(...)`` / ``stacpull.mirror(...)`` (blocking) and their
``a``-prefixed coroutines.

The command line is a thin layer over these. Keyword arguments are config keys of the
``[search]``, ``[download]`` and ``[auth]`` sections (``collections=``, ``dest=``,
``concurrency=``, ``offline_token_file=``…); a :class:`~stacpull.config.Config` may be
passed instead, and ``tokens=`` a ready :class:`~stacpull.auth.TokenProvider` (shared by
several runs, or with its own clock).
"""

from __future__ import annotations

from typing import Any

import anyio

from .auth import TokenProvider
from .config import AuthConfig, Config, SearchConfig, load_config
from .engine import RunOptions, RunResult, run
from .events import EventSink

__all__ = ["adownload", "amirror", "build_config", "download", "mirror"]

_SECTION_OF: dict[str, str] = {
    **dict.fromkeys(SearchConfig.__dataclass_fields__, "search"),
    **dict.fromkeys(AuthConfig.__dataclass_fields__, "auth"),
    "auth_hosts": "auth",
}


def build_config(config: Config | None = None, **options: Any) -> Config:
    """A :class:`Config` from keyword options (``catalog=``, ``dest=``, ``token=``…)."""
    base = config if config is not None else load_config(env={})
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name == "catalog":
            values["search.catalog"] = value
            continue
        section = _SECTION_OF.get(name, "download")
        key = "hosts" if name == "auth_hosts" else name
        if isinstance(value, str) and name in ("collections", "ids", "assets"):
            value = [value]
        values[f"{section}.{key}"] = value
    return base.with_values(values)


async def adownload(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Search and download, asynchronously; see :func:`download`."""
    return await run(
        build_config(config, **options),
        sink=sink,
        tokens=tokens,
        options=RunOptions("download", retry_failed=retry_failed, yes=yes),
    )


async def amirror(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    prune: bool = False,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Mirror a collection or query incrementally, asynchronously; see :func:`mirror`."""
    return await run(
        build_config(config, **options),
        sink=sink,
        tokens=tokens,
        options=RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
    )


def mirror(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    prune: bool = False,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Bring ``dest`` up to date with a collection (or query): new and changed files are
    fetched, unchanged ones kept without re-hashing; ``RunResult.gone`` lists files whose
    items left the catalogue (deleted when ``prune``).

    >>> result = stacpull.mirror(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                          dest="/data/l1a", token="…")             # doctest: +SKIP
    """
    cfg = build_config(config, **options)
    return anyio.run(
        lambda: run(
            cfg,
            sink=sink,
            tokens=tokens,
            options=RunOptions("mirror", retry_failed=retry_failed, prune=prune, yes=yes),
        )
    )


def download(
    config: Config | None = None,
    *,
    sink: EventSink | None = None,
    tokens: TokenProvider | None = None,
    retry_failed: bool = False,
    yes: bool = False,
    **options: Any,
) -> RunResult:
    """Search a STAC API and download the selected assets into ``dest``, verified.

    >>> result = stacpull.download(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                            dest="data",
    ...                            offline_token_file="~/.maap/credentials.txt")  # doctest: +SKIP
    >>> result.ok, result.downloaded, result.mb_per_s                   # doctest: +SKIP
    """
    cfg = build_config(config, **options)
    return anyio.run(
        lambda: run(
            cfg,
            sink=sink,
            tokens=tokens,
            options=RunOptions("download", retry_failed=retry_failed, yes=yes),
        )
    )
