"""Where a cluster run's workers are: ``local:N`` (a LocalCluster of N worker processes on
this machine) or a running scheduler's ``tcp://host:port``, as typed values.

The text is checked where every config value is (:func:`stacpull.config.values.parse_cluster_address`,
so a bad ``--cluster`` or ``[cluster] address`` is refused before anything runs); this
module turns the checked text into what the driver starts or connects to. Nothing of Dask
here: the address is parsed in a run that may never import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config.values import parse_cluster_address

__all__ = ["LocalAddress", "RemoteAddress", "parse_address"]


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """A LocalCluster this run starts and stops: ``workers`` processes of one thread
    each (``None``: one per core)."""

    workers: int | None

    @property
    def count(self) -> int:
        """The worker processes to start: ``workers``, else one per core."""
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class RemoteAddress:
    """A running scheduler this run connects to (``tcp://host:port``); its workers are
    the cluster's, which this run neither starts nor stops."""

    address: str


def parse_address(text: str, key: str = "cluster.address") -> LocalAddress | RemoteAddress:
    """``text`` as a typed address; a malformed one raises
    :class:`~stacpull.errors.ConfigError` naming ``key`` and the forms it takes."""
    address = parse_cluster_address(text, key)
    if address == "local":
        return LocalAddress(None)
    if address.startswith("local:"):
        return LocalAddress(int(address.partition(":")[2]))
    return RemoteAddress(address)
