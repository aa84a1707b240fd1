"""How many units a cluster run is cut into (issue 21, perf21): a small run gets one unit
per worker, so that no worker spends its time ramping up window after window; a large one
keeps the slack of four per worker."""

from __future__ import annotations

from stacpull.shards.layout import UNIT_FLOOR, unit_count, units


def test_a_small_run_is_one_unit_per_worker() -> None:
    # The WAN products row: 445 MB over 64 buckets on two workers.
    assert unit_count(64, 2, 445_000_000) == 2
    assert unit_count(64, 3, 1) == 3
    assert len(units(dict.fromkeys(range(64), 7_000_000), unit_count(64, 2, 64 * 7_000_000))) == 2


def test_a_large_run_keeps_four_units_per_worker() -> None:
    assert unit_count(64, 2, 100 * UNIT_FLOOR) == 8
    assert unit_count(64, 2, 5 * UNIT_FLOOR) == 5  # each unit at least UNIT_FLOOR bytes
    assert unit_count(3, 2, 100 * UNIT_FLOOR) == 3  # never more units than buckets with work


def test_without_the_planned_bytes_the_count_is_four_per_worker() -> None:
    assert unit_count(100, 2) == 8 and unit_count(3, 2) == 3 and unit_count(0, 2) == 0
