"""The coordinator's side of the shard layer, without Dask: what :mod:`stacpull.cluster`
calls around :func:`stacpull.engine.plan_jobs` and the tasks.

:func:`open_shards` (``plan_jobs``' ``on_open``: the layout and this run's job files),
:func:`unit_specs` (the units, largest first, each bucket journal seeded), :func:`absorb`
(a returned unit's buckets merged into the main journal, and its outcomes replayed into
the run's sinks: its stats, report, outcome log and the caller's sink count every file),
:func:`clear_jobs` (the job files of a finished run, which keep presigned URLs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..events import BytesReceived, Event, JobFinished, JobRefused
from ..journal import Journal
from ..models import Job, Outcome, Refusal, Status
from ..runstate import RunState
from ..transfer.context import FetchContext
from .jobfiles import JobFiles, read_jobs, remove_jobs
from .layout import Layout, bucket_dir, unit_count, units
from .sync import merge, seed
from .unit import UnitSpec, config_values

__all__ = ["absorb", "clear_jobs", "open_shards", "unit_specs"]


def _bucket_journal(dest: Path, directory: Path) -> Journal:
    return Journal(dest, directory=directory, exclusive=None)


def open_shards(state: RunState, buckets: int | None = None) -> JobFiles:
    """DEST is open (and every bucket journal's rows brought home, as every run does):
    take the DEST's layout (``buckets``, recorded at the first cluster run; another B is
    refused) and open this run's job files."""
    layout = Layout.ensure(state.journal.directory, buckets)
    return JobFiles(state.journal.directory, layout, state.run_id, state.journal.typical_sizes())


def _seed(state: RunState, bucket: int) -> None:
    paths = [job.dest for job in read_jobs(state.journal.directory, bucket, state.run_id)]
    journal = _bucket_journal(state.root, bucket_dir(state.journal.directory, bucket))
    try:
        seed(state.journal, journal, paths)
    finally:
        journal.close()


def unit_specs(
    state: RunState,
    files: JobFiles,
    workers: int,
    *,
    token_file: str | None = None,
    gate: Any = None,
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
                extra={"bytes": unit.bytes},
            )
        )
    return specs


def _merge_unit(state: RunState, buckets: Iterable[int]) -> int:
    """Merge a returned unit's bucket journals into the main journal."""
    changed = 0
    for bucket in buckets:
        journal = _bucket_journal(state.root, bucket_dir(state.journal.directory, bucket))
        try:
            changed += merge(state.journal, journal)
        finally:
            journal.close()
    return changed


def clear_jobs(state: RunState, buckets: Iterable[int]) -> None:
    """Remove the run's job files of ``buckets`` (once they merged complete)."""
    for bucket in buckets:
        remove_jobs(state.journal.directory, bucket, state.run_id)


def _events(line: Mapping[str, Any]) -> Iterator[Event]:
    """The events that wrote one outcome-log line (the bytes it received, then its end)."""
    status = Status(line["status"])
    item, collection, asset = str(line["item"]), str(line["collection"]), str(line["asset"])
    if status is Status.REFUSED and "path" not in line:
        yield JobRefused(Refusal(item, collection, asset, str(line.get("error") or "")))
        return
    job = Job(item, collection, asset, str(line.get("url") or ""), str(line.get("path") or ""))
    received = int(line.get("bytes_downloaded") or 0)
    if received:
        yield BytesReceived(job, received)
    yield JobFinished(
        Outcome(
            job,
            status,
            bytes_downloaded=received,
            size=line.get("size"),
            seconds=float(line.get("seconds") or 0.0),
            attempts=int(line.get("attempts") or 0),
            error=line.get("error"),
            error_class=line.get("error_class"),
            resumed_from=int(line.get("resumed_from") or 0),
            notes=tuple(line.get("notes") or ()),
        )
    )


def absorb(state: RunState, result: Mapping[str, Any]) -> int:
    """A unit came back (``result``: what :func:`~.unit.run_unit` returned): merge its
    buckets into the main journal and, for a ``complete`` unit, replay its outcome log
    into the run's sinks (``state.emit``: the stats the report and the result count, the
    run's own outcome log, the caller's sink). A unit that did not complete is only
    merged: the owner that finishes its buckets reports their files. Returns the files
    replayed."""
    _merge_unit(state, result["buckets"])
    path = result.get("outcomes")
    if result.get("outcome") != "complete" or not path:
        return 0
    replayed = 0
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for text in handle:
                try:
                    events = list(_events(json.loads(text)))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a full disk
                for event in events:
                    state.emit(event)
                replayed += 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StorageError(f"cannot read the unit's outcome log {path}: {exc}") from exc
    return replayed
