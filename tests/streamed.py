"""What the tests of the streamed loops (``sim/waiting.py``, ``chunks.py``, ``ring.py``) share: a loop's Summary
checked against both references, bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from stalegrad.sim.compiled import event_loop_summary
from stalegrad.sim.events import simulate_events
from stalegrad.trace import Summary


def same_as_the_references(
    loop: Callable[..., Summary | None], system: Any, updates: int, seed: int, data: Any
) -> Summary | None:
    """Run ``loop`` (a streamed loop's summary function) with a warm-up, batches and transient drawn from ``data``,
    and assert that its Summary has the same numbers and wasted compute as the reference engine's Trace summarized
    (``Summary.from_trace``) and as the compiled event loop's. Returns it (None if the loop declined the system)."""
    warmup = data.draw(st.integers(0, updates - 1))
    batches = data.draw(st.integers(1, max(1, updates - warmup)))
    transient = data.draw(st.integers(0, updates))
    got = loop(system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient)
    if got is None:
        return None
    expected = Summary.from_trace(simulate_events(system, updates, seed=seed), warmup, batches, transient)
    assert got.same_numbers(expected)
    assert got.wasted_compute == expected.wasted_compute
    events = event_loop_summary(system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient)
    assert got.same_numbers(events) and got.wasted_compute == events.wasted_compute
    return got
