"""A mirror on a Dask cluster (``stacpull mirror --cluster local:N|tcp://host:port``,
``stacpull.mirror(..., client=…)``): the coordinator plans, workers transfer their shards.

The only package that uses Dask (``pip install 'stacpull[dask]'``), and only lazily: this
package's root and :mod:`.address` import nothing of it, so a run without ``--cluster``
(which never reaches :mod:`.driver`) loads no ``dask`` or ``distributed`` module.

- :mod:`.address`: ``local:N`` and ``tcp://…`` as typed values;
- :mod:`.driver`: the client made or taken, one task per unit, the results merged as they
  complete, units sent again, and the run's one verdict, report and result;
- :mod:`.progress`: each worker's throughput from its buckets' lease heartbeats, for the
  coordinator's view;
- :mod:`.replay`: a returned unit's outcome log told to the run's sinks, as its worker's
  events would have been.
"""

from __future__ import annotations

from .address import LocalAddress, RemoteAddress, parse_address

__all__ = ["LocalAddress", "RemoteAddress", "parse_address"]
