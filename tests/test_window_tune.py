"""The window's start-up and first probes, tuned on the benchmark's WAN rows (issue 19):
every epoch spent at a window too small, or probing half the connections away from a host
each connection's cap bounds, was a loss the whole run paid. Pure code, a fake clock."""

from __future__ import annotations

from stacpull.window import HostWindow


def _changes(rate_of: object, epochs: int) -> list[tuple[int, int, str]]:
    """(epoch, window, reason) of a host whose every epoch (100 ms, every slot busy, 50 ms
    to each first byte) carries ``rate_of(window)`` bytes/s."""
    control, now, out = HostWindow(0.0), 0.0, []
    for n in range(epochs):
        control.on_busy(now, True)
        control.on_first_byte(now, 0.05)
        control.on_bytes(now, round(rate_of(control.window) * 0.1))  # type: ignore[operator]
        now += 0.1
        change = control.tick(now)
        if change is not None:
            out.append((n, change.window, change.reason))
    return out


def _per_connection(window: int) -> float:
    return window * 10e6  # 10 MB/s a connection, no link cap


def _link(window: int) -> float:
    return min(window, 2) * 10e6  # the link carries two connections' worth


def test_a_host_its_connections_bound_is_probed_down_by_a_quarter() -> None:
    """At the ceiling, with every connection pulling its weight, a probe down takes a
    quarter of them away, not half: the probe costs what it takes away while it lasts."""
    downs = [(w, r) for _, w, r in _changes(_per_connection, 60) if r == "probe down"]
    assert downs and downs[0] == (24, "probe down"), downs


def test_a_ramp_that_bought_nothing_probes_down_by_halves_and_soon() -> None:
    """A doubling that bought nothing says the link is the limit: the steady state probes
    down by halves, after the usual wait (an undone ramp is no failed probe)."""
    changes = _changes(_link, 60)
    undone = next(n for n, _, r in changes if r == "ramp undone")
    down = next((n, w) for n, w, r in changes if r == "probe down")
    assert down[1] == 4
    assert down[0] - undone <= 1 + 4 * 3, changes  # four measurements of two epochs, skips


def test_a_doubling_that_bought_some_probes_down_by_a_quarter() -> None:
    """A doubling that bought a fifth more (a client short of CPU, a server near its
    limit) is undone, but the connections still pull their weight: the probe down after it
    takes a quarter away, not half (on the benchmark's MAAP row, half of sixteen cost
    0.7 s at eight)."""

    def rate_of(window: int) -> float:
        return 160e6 if window <= 8 else 192e6  # 16 connections bring a fifth more

    changes = _changes(rate_of, 80)
    assert "ramp undone" in [r for _, _, r in changes], changes
    down = next(w for _, w, r in changes if r == "probe down")
    assert down == 6, changes
