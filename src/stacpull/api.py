"""The Python API: ``stacpull.download(...)`` (blocking) and ``stacpull.adownload(...)``.

The command line is a thin layer over these. Keyword arguments are config keys of the
``[search]``, ``[download]`` and ``[auth]`` sections (``collections=``, ``dest=``,
``concurrency=``, ``token=``…); a :class:`~stacpull.config.Config` may be passed instead.
"""

from __future__ import annotations

from typing import Any

import anyio

from .config import Config, SearchConfig, load_config
from .engine import RunResult, run
from .events import EventSink

__all__ = ["adownload", "build_config", "download"]

_SECTION_OF: dict[str, str] = {
    **dict.fromkeys(SearchConfig.__dataclass_fields__, "search"),
    "token": "auth",
    "token_file": "auth",
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
    config: Config | None = None, *, sink: EventSink | None = None, **options: Any
) -> RunResult:
    """Search and download, asynchronously; see :func:`download`."""
    return await run(build_config(config, **options), sink=sink)


def download(
    config: Config | None = None, *, sink: EventSink | None = None, **options: Any
) -> RunResult:
    """Search a STAC API and download the selected assets into ``dest``, verified.

    >>> result = stacpull.download(catalog=url, collections=["BiomassLevel1aIOC"],
    ...                            dest="data", token="…")            # doctest: +SKIP
    >>> result.ok, result.downloaded, result.mb_per_s                   # doctest: +SKIP
    """
    cfg = build_config(config, **options)
    return anyio.run(lambda: run(cfg, sink=sink))
