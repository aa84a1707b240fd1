"""The ``[cluster]`` section: where a run's transfers go when not in this process alone.

A section of its own module: the other four live in :mod:`.model`, which has no room left,
and this one is read only by a cluster run (:mod:`stacpull.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..defaults import AUTO, DEFAULT_CLUSTER_RETRIES
from .values import (
    CONNECTIONS,
    non_negative_int,
    parse_cluster_address,
    parse_connection_fields,
    positive_int,
)

__all__ = ["ClusterConfig"]

#: The most buckets a DEST may be cut into: each is a directory with its own journal.
_MAX_BUCKETS = 65_536


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where a run's transfers run when not in this process alone: a Dask cluster.

    ``address`` is ``None`` for a plain run (nothing of Dask is imported), ``local:N`` for
    a LocalCluster of N worker processes, or a running scheduler's ``tcp://host:port``.
    ``buckets`` is the number of shards of DEST's job space (``None``: the number DEST
    recorded at its first cluster run, else 64); ``per_host`` the cluster-wide cap of each
    host's connections (``auto``: ``download.per_host``'s ceiling, for all workers
    together); ``retries`` how often a unit stopped for a transient cause is sent again.
    Two names are also [download] keys: a profile's flat ``per_host`` and ``retries`` are
    the download's, and the API spells these ``cluster_per_host`` and ``cluster_retries``.
    """

    address: str | None = None
    buckets: int | None = None
    per_host: int = field(default=AUTO, metadata=CONNECTIONS)
    retries: int = DEFAULT_CLUSTER_RETRIES

    def __post_init__(self) -> None:
        if self.address is not None:
            object.__setattr__(self, "address", parse_cluster_address(self.address))
        if self.buckets is not None:
            positive_int("cluster.buckets", self.buckets, _MAX_BUCKETS)
        parse_connection_fields(self, "cluster")
        non_negative_int("cluster.retries", self.retries)

    def host_cap(self, ceiling: int) -> int:
        """Connections to one host over the whole cluster, at most: ``per_host``, else
        ``ceiling`` (``download.per_host_limit``: one polite budget for every worker)."""
        return self.per_host or ceiling
