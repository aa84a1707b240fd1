"""The coordinator's side of the shard layer, without Dask: what :mod:`stacpull.cluster`
calls around :func:`stacpull.engine.plan_jobs` and the tasks.

:func:`open_shards` (``plan_jobs``' ``on_open``: the layout and this run's job files),
:func:`unit_specs` (the units, largest first, each bucket journal seeded), :func:`merge_unit`
(a returned unit's buckets merged into the main journal; its outcomes are replayed by
:mod:`stacpull.cluster.replay`), :func:`clear_jobs` (the job files of a finished run,
which keep presigned URLs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..limits import HostGate
from ..runstate import RunState
from ..transfer.context import FetchContext
from .jobfiles import JobFiles, read_jobs, remove_jobs
from .layout import Layout, bucket_dir, unit_count, units
from .sync import bucket_journal, merge_buckets, seed
from .unit import UnitSpec, config_values

__all__ = ["clear_jobs", "merge_unit", "open_shards", "unit_specs"]


def open_shards(state: RunState, buckets: int | None = None) -> JobFiles:
    """DEST is open (and every bucket journal's rows brought home, as every run does):
    take the DEST's layout (``buckets``, recorded at the first cluster run; another B is
    refused) and open this run's job files."""
    layout = Layout.ensure(state.journal.directory, buckets)
    return JobFiles(state.journal.directory, layout, state.run_id, state.journal.typical_sizes())


def _seed(state: RunState, bucket: int) -> None:
    paths = [job.dest for job in read_jobs(state.journal.directory, bucket, state.run_id)]
    with bucket_journal(state.root, bucket_dir(state.journal.directory, bucket)) as journal:
        seed(state.journal, journal, paths)


def unit_specs(
    state: RunState,
    files: JobFiles,
    workers: int,
    *,
    token_file: str | None = None,
    gate: HostGate | None = None,
    context: Callable[[FetchContext], FetchContext] | None = None,
) -> list[UnitSpec]:
    """The run's units, largest planned bytes first (close ``files`` first), each of its
    buckets' journals seeded from the main journal; ``token_file``, ``gate`` and
    ``context`` go to every :class:`~.unit.UnitSpec`."""
    values = config_values(state.config)
    specs: list[UnitSpec] = []
    count = unit_count(len(files.loads), workers, sum(files.loads.values()))
    for unit in units(files.loads, count):
        for bucket in unit.buckets:
            _seed(state, bucket)
        specs.append(
            UnitSpec(
                dest=str(state.root),
                config=values,
                run_id=state.run_id,
                unit=unit.number,
                buckets=unit.buckets,
                layout=files.layout.buckets,
                token_file=token_file,
                gate=gate,
                context=context,
            )
        )
    return specs


def merge_unit(state: RunState, buckets: Iterable[int]) -> int:
    """Bring a returned unit's bucket journals home: their rows into the main journal,
    the newest of each path winning (:func:`~.sync.merge_buckets`). Returns the rows
    changed. Its files reach the run's sinks apart: :mod:`stacpull.cluster.replay` tells
    them (without their bytes, which came live from the heartbeats)."""
    directory = state.journal.directory
    return merge_buckets(state.journal, state.root, [bucket_dir(directory, b) for b in buckets])


def clear_jobs(state: RunState, buckets: Iterable[int]) -> None:
    """Remove the run's job files of ``buckets`` (once they merged complete)."""
    for bucket in buckets:
        remove_jobs(state.journal.directory, bucket, state.run_id)
