"""The master's K-batch (:class:`stalegrad.runtime.batch.Batch`): the update in place, to the bit as numpy's."""

from __future__ import annotations

import numpy as np
import pytest

from stalegrad.runtime.batch import HOLD, Batch


def numpy_update(w, grads, c):
    """The update as the master wrote it before, and as replay and the tests' SGD along a Trace write it."""
    batch = np.zeros_like(w)
    for g in grads:
        batch += g
    return w - c * batch


@pytest.mark.parametrize("K", [1, 2, 3, HOLD, HOLD + 1, 2 * HOLD + 3])
def test_an_update_is_numpys_to_the_bit(K):
    """Every K, with and without folding into the accumulator; signed zeros and values whose sum rounds."""
    rng = np.random.default_rng(K)
    d = 1000
    w0 = rng.standard_normal(d) * 10.0 ** rng.integers(-8, 8, size=d)
    w0[:3] = [0.0, -0.0, -0.0]
    grads = [rng.standard_normal(d) * 10.0 ** rng.integers(-8, 8, size=d) for _ in range(K)]
    for g in grads:
        g[:3] = [-0.0, -0.0, 0.0]
    c = 0.3 / K
    w = w0.copy()
    batch = Batch(d)
    for g in grads:
        batch.add(g)
    assert len(batch) == K
    batch.apply(w, c)
    assert np.array_equal(w.view(np.int64), numpy_update(w0, grads, c).view(np.int64))
    assert len(batch) == 0


def test_updates_follow_each_other_and_read_only_gradients_are_held_not_copied():
    rng = np.random.default_rng(1)
    d, K, c = 50, 3, 0.01
    w, ref = np.zeros(d), np.zeros(d)
    batch = Batch(d)
    for _ in range(4):
        grads = [rng.standard_normal(d) for _ in range(K)]
        for g in grads:
            g.flags.writeable = False  # as a gradient read from the object store
            batch.add(g)
        assert all(h is g or h.base is g for h, g in zip(batch._held, grads, strict=True))
        batch.apply(w, c)
        ref = numpy_update(ref, grads, c)
    assert np.array_equal(w, ref)


def test_a_writable_gradient_is_copied_so_its_owner_may_change_it():
    batch, w = Batch(2), np.zeros(2)
    g = np.array([1.0, 2.0])
    batch.add(g)
    g[:] = 100.0
    batch.add(g)
    batch.apply(w, 1.0)
    assert w.tolist() == [-101.0, -102.0]


def test_gradients_of_another_type_or_shape_are_converted_and_a_wrong_size_refused():
    batch, w = Batch(4), np.zeros(4)
    batch.add(np.ones((2, 2), dtype=np.float32))
    batch.add([1, 1, 1, 1])
    batch.apply(w, 0.5)
    assert w.tolist() == [-1.0] * 4
    with pytest.raises(ValueError, match="a gradient of 3 elements for a w of 4"):
        batch.add(np.ones(3))
    with pytest.raises(ValueError, match="empty batch"):
        batch.apply(w, 0.5)


@pytest.mark.parametrize("K", [1, 2, HOLD + 2])
def test_prepare_runs_the_loops_of_a_batch_of_K(K):
    """What the master calls before its run starts (then its first update compiles nothing)."""
    Batch.prepare(K)
