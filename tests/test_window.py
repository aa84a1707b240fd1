"""The per-host window controller (issue 19) against a model link and a fake clock.

The model is a fluid one, stepped every 10 ms: each slot of the window sends a request,
waits ``latency`` for its first byte, then takes the file at ``min(per_conn, link / n)``
bytes/s; a server with ``max_concurrent=k`` answers 429 to the slots above ``k``. Nothing
sleeps and nothing reads the wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from stacpull.window import Change, HostWindow, WindowSettings

MB = 1_000_000
STEP = 0.01


@dataclass
class _Slot:
    wait: float  # seconds until the first byte (or the 429)
    left: int = 0  # bytes of the body still to come


@dataclass
class _Link:
    """A host behind a link: each connection capped at ``per_conn``, all of them together
    at ``link`` (``None``: no shared cap); 429 above ``max_concurrent`` in flight."""

    per_conn: float = 10 * MB
    link: float | None = None
    latency: float = 0.05
    size: int = 4 * MB
    sizes: float = 0.0  # each file's size drawn from size × (1 ± sizes); 0: all alike
    max_concurrent: int | None = None
    retry_after: float | None = None
    noise: float = 0.0
    seed: int = 19
    now: float = 0.0
    slots: list[_Slot] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    answers: int = 0
    throttled: int = 0
    carried: list[int] = field(default_factory=list)  # bytes delivered in each step

    def run(self, control: HostWindow | None, seconds: float, fixed: int = 8) -> None:
        """Step the link for ``seconds``, feeding ``control`` (``None``: a fixed window)."""
        rng = random.Random(self.seed)
        for _ in range(round(seconds / STEP)):
            window = min(256, fixed if control is None else control.window)  # a runaway fails
            paused = control is not None and self.now < control.paused_until
            del self.slots[window:]  # a smaller window: the extra transfers stop
            while len(self.slots) < window and not paused:
                self.slots.append(_Slot(self.latency))
            self._step(control, rng)
            self.now += STEP
            if control is not None:
                control.on_busy(self.now, len(self.slots) >= control.window)
                change = control.tick(self.now)
                if change is not None:
                    self.changes.append(change)
            self.windows.append(window)

    def _step(self, control: HostWindow | None, rng: random.Random) -> None:
        flowing = [s for s in self.slots if s.wait <= 0]
        share = self.per_conn if self.link is None else self.link / max(1, len(flowing))
        jitter = 1 + self.noise * rng.uniform(-1, 1)  # the whole link's, per step
        rate = min(self.per_conn, share) * jitter
        self.carried.append(0)
        for index, slot in enumerate(self.slots):
            if slot.wait > 0:
                slot.wait -= STEP
                if slot.wait <= 1e-9:
                    self._answer(control, index, slot, rng)
                continue
            got = min(slot.left, round(rate * STEP))
            slot.left -= got
            self.carried[-1] += got
            if control is not None:
                control.on_bytes(self.now, got)
            if slot.left <= 0:
                slot.wait = self.latency  # the next file
        return None

    def _answer(
        self, control: HostWindow | None, index: int, slot: _Slot, rng: random.Random
    ) -> None:
        self.answers += 1
        if self.max_concurrent is not None and index >= self.max_concurrent:
            self.throttled += 1
            slot.wait = self.latency  # ask again
            if control is not None:
                change = control.on_throttle(self.now, 429, self.retry_after)
                if change is not None:
                    self.changes.append(change)
            return
        slot.wait, slot.left = 0.0, round(self.size * (1 + self.sizes * rng.uniform(-1, 1)))
        if control is not None:
            control.on_first_byte(self.now, self.latency)


def _reasons(link: _Link, reason: str) -> int:
    return sum(1 for c in link.changes if c.reason == reason)


def _moves(link: _Link) -> int:
    """How often the window actually moved."""
    return sum(1 for a, b in zip(link.windows, link.windows[1:], strict=False) if a != b)


def test_a_per_connection_cap_grows_the_window_to_the_ceiling() -> None:
    link = _Link(per_conn=10 * MB)
    control = HostWindow(0.0)
    link.run(control, 10)
    assert max(link.windows) == 32 == control.window  # past 8, and no further
    assert _reasons(link, "ramp") >= 2


def test_a_fixed_window_is_what_the_growth_test_rules_out() -> None:
    """The model itself: a fixed window of 8 stays at 8 (so the test above can fail)."""
    link = _Link(per_conn=10 * MB)
    link.run(None, 10)
    assert max(link.windows) == 8


def test_a_shared_link_cap_settles_the_window_low() -> None:
    link = _Link(per_conn=10 * MB, link=20 * MB)  # two connections' worth
    control = HostWindow(0.0)
    link.run(control, 30)
    assert control.window <= 4
    assert max(link.windows[-500:]) <= 5  # the last 5 s: at most a probe above


def test_a_link_of_two_connections_worth_is_kept_full_across_the_gaps_for_first_bytes() -> None:
    """Issue 19's wan-link row: files of 0.2-4.2 MB at 10 MB/s per connection, 50 ms to
    each first byte, on a link of two connections' worth. Two connections leave the link
    idle in every gap for a first byte (a fifth of it); three fill it. A step down to two
    was kept on one measurement that fell between two gaps, and at two a step up to three
    never pays half a connection's share, so the window stayed there: on nine links (three
    levels of noise, three seeds) it must carry 93 % of the cap after the first 5 s, spend
    at most a tenth of that time at two connections or fewer, and end at four at most."""
    poor = []
    for noise in (0.0, 0.1, 0.2):
        for seed in (1, 2, 3):
            link = _Link(link=20 * MB, size=2_200_000, sizes=0.9, noise=noise, seed=seed)
            control = HostWindow(0.0)
            link.run(control, 30)
            tail, windows = link.carried[500:], link.windows[500:]
            share = sum(tail) / (20 * MB * STEP * len(tail))
            low = sum(1 for w in windows if w <= 2) / len(windows)
            if share < 0.93 or low > 0.1 or control.window > 4:
                poor.append((noise, seed, round(share, 3), round(low, 3), control.window))
    assert not poor, poor


def test_a_server_that_throttles_above_four_keeps_the_window_near_four() -> None:
    link = _Link(max_concurrent=4, size=2 * MB)
    control = HostWindow(0.0)
    link.run(control, 60)
    assert 3 <= control.window <= 4
    assert sum(link.windows[-1000:]) / 1000 >= 3.5  # near 4 over the last 10 s, not 1
    assert _reasons(link, "throttled") <= 4
    assert link.throttled <= 0.02 * link.answers  # few 429s among the answers


def test_the_controller_does_not_oscillate_on_noisy_samples() -> None:
    link = _Link(per_conn=10 * MB, link=20 * MB, noise=0.3)
    control = HostWindow(0.0)
    link.run(control, 60)
    assert control.window <= 4
    assert _moves(link) <= 30  # 600 epochs; probes back off when undone
    assert max(link.windows[-1000:]) <= 5


def test_noise_does_not_stop_the_ramp() -> None:
    link = _Link(per_conn=10 * MB, noise=0.3, seed=7)
    control = HostWindow(0.0)
    link.run(control, 20)
    assert control.window == 32
    assert _moves(link) <= 12


def test_small_files_keep_enough_in_flight_to_cover_the_latency() -> None:
    """100 kB files at 10 MB/s take 10 ms behind a 100 ms first byte: the window must
    grow past 8 (the link's idle while requests wait)."""
    link = _Link(per_conn=10 * MB, size=100_000, latency=0.1)
    control = HostWindow(0.0)
    link.run(control, 20)
    assert control.window > 16


def test_little_s_law_grows_the_window_where_the_ramp_stopped() -> None:
    """A ramp that stops early (an exacting growth rule) leaves small files waiting on
    latency: the floor of requests/s × time to first byte takes the window on."""
    link = _Link(per_conn=10 * MB, size=100_000, latency=0.1)
    control = HostWindow(0.0, WindowSettings(start=4, growth=100.0))
    link.run(control, 10)
    assert _reasons(link, "cover latency") >= 2
    assert control.window > 16


def test_retry_after_pauses_new_requests() -> None:
    control = HostWindow(0.0)
    change = control.on_throttle(5.0, 503, 3.0)
    assert change == Change(4, "throttled")
    assert control.paused_until == 8.0
    assert control.on_throttle(5.5, 429, 1.0) is None  # within the cooldown: no second cut
    assert control.paused_until == 8.0  # the later of the two
    assert control.window == 4
    assert control.on_throttle(7.5, None, None) == Change(2, "throttled")  # refused


def test_a_paused_host_sends_nothing_until_retry_after() -> None:
    link = _Link(max_concurrent=2, retry_after=2.0)
    control = HostWindow(0.0)
    link.run(control, 1.0)
    assert control.paused_until > link.now - 1.0
    link.slots.clear()
    answers = link.answers
    link.run(control, control.paused_until - link.now - 0.05)
    assert link.answers == answers  # nothing asked while paused


def test_only_busy_epochs_count() -> None:
    """A tail of a few files leaves slots free: nothing it measures moves the window."""
    control = HostWindow(0.0)
    now = 0.0
    for _ in range(200):
        control.on_busy(now, False)
        control.on_first_byte(now, 0.05)
        control.on_bytes(now, 10 * MB)
        now += 0.1
        assert control.tick(now) is None
    assert control.window == 8


def test_the_first_epoch_after_a_change_is_ignored() -> None:
    """New connections open in the epoch after a change and carry nothing yet: judged on
    it, every doubling would look like a loss and the ramp would stop at 16."""
    control = HostWindow(0.0)
    now, opening = 0.0, True
    for _ in range(100):
        control.on_busy(now, True)
        control.on_first_byte(now, 0.0625)  # epochs of 0.125 s: one per step, exactly
        control.on_bytes(now, 0 if opening else control.window * MB)
        now += 0.125
        opening = control.tick(now) is not None
    assert control.window == 32


def test_a_rising_time_to_first_byte_brakes_growth() -> None:
    """Doubling the window quadruples the server's queue (time to first byte) and buys
    half again the goodput: the step paid, so it stays, but growth stops there (time to
    first byte brakes growth and never alone shrinks the window); probes then find the
    twelve connections the server really serves."""
    control = HostWindow(0.0)
    now, changes, most = 0.0, [], 0
    for _ in range(400):
        most = max(most, control.window)
        control.on_busy(now, True)
        control.on_first_byte(now, 0.05 * (control.window / 8) ** 2)
        control.on_bytes(now, round(8 * MB * 0.1 * min(control.window, 12) / 8))
        now += 0.1
        change = control.tick(now)
        if change is not None:
            changes.append(change)
    assert control.window < 16
    assert most == 16  # never doubled past the brake
    assert (16, "ttfb brake") in [(c.window, c.reason) for c in changes]


def test_never_above_the_ceiling_nor_below_the_floor() -> None:
    control = HostWindow(0.0, WindowSettings(start=4, ceiling=6, floor=2))
    for second in range(0, 40, 3):
        control.on_throttle(float(second), 429, None)
        assert control.window >= 2
    link = _Link(per_conn=10 * MB, now=50.0)
    control = HostWindow(50.0, WindowSettings(start=4, ceiling=6, floor=2))
    link.run(control, 10)
    assert max(link.windows) == 6


@pytest.mark.parametrize(
    "bad",
    [{"start": 40}, {"floor": 0}, {"min_epoch": 2.0}, {"cut": 1.0}, {"samples": 0}],
)
def test_settings_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WindowSettings(**bad)  # type: ignore[arg-type]


def test_an_epoch_is_twice_the_least_time_to_first_byte_within_bounds() -> None:
    control = HostWindow(0.0)
    assert control.epoch_length() == 1.0  # nothing measured yet
    control.on_first_byte(0.0, 0.3)
    assert control.epoch_length() == pytest.approx(0.6)
    control.on_first_byte(0.0, 0.01)
    assert control.epoch_length() == 0.1
