"""The shard layer of a cluster mirror (no Dask here: :mod:`stacpull.cluster` drives it).

::

    coordinator: search ─▶ plan ─▶ main journal ─▶ job files per bucket ─▶ units (LPT)
                                      ▲  seed ▼ / merge ▲
    workers:     run_unit ─▶ leases ─▶ bucket journals ◀─ transfers ◀─ job files

Items are bucketed by a stable hash of (collection, id) into B buckets recorded per DEST
(:mod:`.layout`); the coordinator writes each planned job to its bucket's job file
(:mod:`.jobfiles`), seeds each bucket journal from the main journal before dispatch and
merges it back after (newest wins, :mod:`.sync`). A worker takes its unit's buckets under
leases (:mod:`.lease`), writes their journals through one router (:mod:`.router`) and
runs the engine's worker entry (:mod:`.unit`).
"""

__all__: list[str] = []
