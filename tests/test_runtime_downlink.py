"""The master's downlink (``runtime/downlink.py``, no Ray): when a version sent to a worker reaches it, and which
version a worker uses at an instant."""

from __future__ import annotations

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.runtime.downlink import Downlink
from stalegrad.spec import System


def _system(downlink: object) -> System:
    return System(n=3, K=1, compute=shifted_exponential(alpha=1, rate=1.0), downlink=downlink)


def test_a_version_is_used_only_strictly_after_it_reaches_the_worker() -> None:
    down = Downlink(_system(2.0), seed=1, time_unit=0.5, v0=0)  # every delay: 2 units of 0.5 s
    down.join(0, 0, 0)
    assert down.send(0, 1, now=10.0) == pytest.approx(11.0)
    assert down.newest(0, before=11.0) == 0  # it reaches the worker at 11: not strictly before
    assert down.newest(0, before=np.nextafter(11.0, 12.0)) == 1
    assert down.delays == [1.0]


def test_the_newest_that_reached_wins_and_older_ones_are_forgotten() -> None:
    down = Downlink(_system(2.0), seed=1, time_unit=1.0, v0=0)
    down.join(1, 0, 0)
    down.pending[1] = [(5.0, 1), (2.0, 2), (9.0, 3)]  # version 1 overtaken by version 2 on the way
    assert down.newest(1, before=3.0) == 2
    assert down.pending[1] == [(9.0, 3)]  # version 1 can never be used now: forgotten
    assert down.newest(1, before=6.0) == 2  # (version 1 reaching later changes nothing)
    assert down.newest(1, before=10.0) == 3 and down.pending[1] == []


def test_without_injected_times_a_version_reaches_at_once() -> None:
    down = Downlink(_system(2.0), seed=1, time_unit=None, v0=4)
    down.join(2, 0, 4)
    assert down.send(2, 5, now=3.0) == 3.0
    assert down.newest(2, before=3.0) == 4 and down.newest(2, before=3.5) == 5
    assert down.delays == [0.0]


def test_the_oldest_version_a_live_worker_uses() -> None:
    down = Downlink(_system(1.0), seed=1, time_unit=None, v0=0)
    assert down.oldest(default=7) == 7  # nobody live
    for i, v in ((0, 3), (1, 5)):
        down.join(i, 0, v)
    assert down.oldest(default=9) == 3
    down.leave(0)
    assert down.oldest(default=9) == 5 and down.live == {1}


def test_random_delays_are_reproducible_and_fresh_for_a_restarted_worker() -> None:
    model = shifted_exponential(alpha=0.5, rate=2.0)

    def delays(incarnation: int, seed: int = 3) -> list[float]:
        down = Downlink(_system(model), seed=seed, time_unit=0.1, v0=0)
        down.join(1, incarnation, 0)
        return [down.send(1, v, now=0.0) for v in range(1, 6)]

    first = delays(0)
    assert first == delays(0)  # same seed, same delays
    assert first != delays(1) and first != delays(0, seed=4)  # a restarted worker draws from fresh streams
    assert all(d >= 0.05 for d in first)  # (alpha = 0.5 units of 0.1 s at least)
