"""Issue 19's per-file CPU (helper cpu19): one slow look at a destination no longer sends
every later look of the run through a worker thread; a disk slow at every look still does
(tests/test_download.py: ``test_a_slow_disk_moves_the_looks_off_the_event_loop``)."""

from __future__ import annotations

from stacpull.transfer.skip import LOOK_INLINE_LIMIT, Looks

SLOW = LOOK_INLINE_LIMIT * 5  # a look that took longer than the limit
FAST = LOOK_INLINE_LIMIT / 10


def test_one_slow_look_keeps_the_looks_on_the_event_loop() -> None:
    # A busy machine: now and then a look waits for the GIL or is preempted.
    looks = Looks()
    for took in (SLOW, FAST, SLOW, SLOW, FAST, FAST, SLOW, SLOW, FAST):
        assert looks.timed(took) is False
    assert looks.in_threads is False


def test_three_slow_looks_in_a_row_send_the_later_ones_to_threads() -> None:
    looks = Looks()
    assert [looks.timed(took) for took in (SLOW, SLOW, FAST, SLOW, SLOW)] == [False] * 5
    assert looks.in_threads is False
    assert looks.timed(SLOW) is True  # the third in a row
    assert looks.in_threads is True


def test_a_look_at_the_limit_is_not_slow() -> None:
    looks = Looks()
    for _ in range(10):
        looks.timed(LOOK_INLINE_LIMIT)
    assert looks.in_threads is False
