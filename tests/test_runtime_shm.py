"""The same-node data path (stalegrad.runtime.shm): the hand-off of gradient slots (no gradient overwritten before
the master has added it or dropped it, the slots reused), the version ring (a row reused only when no worker can be
given its version), and the segments' clean-up. The master is driven directly, as its workers would (no Ray)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.runtime import shm
from stalegrad.runtime.datapath import GRAD_SLOTS, INLINE_BYTES, SHARED_BYTES
from stalegrad.runtime.master import Master
from stalegrad.spec import System

pytestmark = pytest.mark.skipif(not shm.available(), reason="no /dev/shm")

PAPER = shifted_exponential(alpha=1, rate=2 / 3)
DIM = 16_000  # 128 kB: over INLINE_BYTES, so w and the gradients take the shared-memory path
LR = 0.1


class Flat:
    name = "flat"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def init(self) -> np.ndarray:
        return np.zeros(self.dim)

    def error(self, w: np.ndarray) -> float:
        return 0.0


def _gradient(w: np.ndarray, worker: int, rnd: int) -> np.ndarray:
    """A gradient that depends on the version read and on who computed it (so that any mix-up changes ``w``)."""
    z = np.random.default_rng([worker, rnd]).standard_normal(w.size)
    return (w - 1.0) + z


class FakeWorker:
    """What a worker actor does on the master's node, without Ray: maps the segments, reads its version from the
    ring, writes its gradient into a slot the master said is free."""

    def __init__(self, master: Master, index: int, incarnation: int = 0) -> None:
        self.master, self.index, self.incarnation = master, index, incarnation
        info = master.register(index, incarnation)
        s = info["shm"]
        self.ring = shm.Segment(s["ring"], s["ring_rows"], s["dim"], writable=False)
        self.slots = shm.Segment(s["grads"], s["slots"], s["dim"])
        self.free = list(s["free"])
        self.version, self.ref = info["version"], info["refs"][0]
        self.rnd = info["round"]
        self.written: dict[int, int] = {}  # slot -> writes

    def read(self) -> np.ndarray:
        if isinstance(self.ref, np.ndarray):  # through the "object store" (the ring was full)
            return self.ref
        assert isinstance(self.ref, int)  # the number of the version's row in the ring
        row = self.ring.rows[self.ref]
        assert not row.flags.writeable and int(self.ring.tags[self.ref]) == self.version
        return row

    def step(self, deliver_in: float = 0.0) -> np.ndarray:
        """One round: read, compute, write into a free slot, submit; returns the gradient sent (a private copy)."""
        g = _gradient(self.read(), self.index, self.rnd)
        assert self.free, "the master left the worker no free slot"
        busy = {t[2] for t in self.master.core.holding() if t[0] == self.index}
        busy |= {m[2][6][2] for m in self.master._mail if m[2][6] is not None and m[2][6][0] == self.index}
        slot = self.free.pop(0)
        assert slot not in busy, f"slot {slot} said free while the master still reads it"
        np.copyto(self.slots.rows[slot], g)
        self.slots.tags[slot] = self.rnd
        self.written[slot] = self.written.get(slot, 0) + 1
        now = time.time()
        msg = (self.index, self.incarnation, self.rnd, now, now, self.version, slot, now + deliver_in, 0.0)
        v, refs, free = self.master.submit(msg)
        assert free, "no free slot after a submit"
        self.free = list(free)
        if refs is not None:
            self.version, self.ref = v, refs[0]
        self.rnd += 1
        return g

    def close(self) -> None:
        self.ring.close()
        self.slots.close()


def _replay(result: dict, sent: dict[tuple[int, int], np.ndarray], K: int) -> np.ndarray:
    """``w`` rebuilt from the gradients as the workers sent them, in the batches the master's rows name."""
    cols = result["columns"]
    w = np.zeros(DIM)
    for u in range(1, result["version"] + 1):
        rows = np.flatnonzero(cols["update"] == u)
        assert rows.size == K
        batch = np.zeros(DIM)
        for r in rows:
            batch += sent[(int(cols["worker"][r]), int(cols["round"][r]))]
        w = w - (LR / K) * batch
    return w


@pytest.fixture(autouse=True)
def stored(monkeypatch, request):
    """No Ray: a version the ring has no row for is "put in the object store" as a read-only copy (counted). (Not
    in the tests of real runs.)"""
    import ray

    puts: list[int] = []
    if "local_ray" in request.fixturenames:
        return puts

    def put(w):
        puts.append(1)
        c = np.array(w, copy=True)
        c.flags.writeable = False
        return c

    monkeypatch.setattr(ray, "put", put)
    return puts


def _master(n: int, K: int, updates: int, time_unit: float | None = None) -> Master:
    assert 8 * DIM > INLINE_BYTES
    system = System(n=n, K=K, compute=PAPER)
    master = Master(Flat(DIM), system, LR, updates, seed=1, time_unit=time_unit, error_every=0, shared=shm.token())
    master.start(time.time())
    _made.append(master)
    return master


_made: list[Master] = []


@pytest.fixture(autouse=True)
def released():
    """Every master a test made removes its segments at the end, passed or failed (and none is left)."""
    yield
    while _made:
        master = _made.pop()
        master._closed = True
        master.release()
        assert master.data.token is not None and shm.leftover(master.data.token) == []


@pytest.mark.parametrize("K", [1, 2, 3, 7])
def test_no_gradient_is_overwritten_before_it_is_applied_and_slots_are_reused(K):
    """Three workers at uneven speeds write their gradients into two slots each, only ever a slot the master said
    is free (never one it still holds: checked at every write); the final ``w`` is the one the gradients *as sent*
    make, to the bit -- an overwritten slot would change it -- and every slot is written many times."""
    n, updates = 3, 40
    master = _master(n, K, updates)
    workers = [FakeWorker(master, i) for i in range(n)]
    sent: dict[tuple[int, int], np.ndarray] = {}
    turn = 0
    while not master.status()["done"]:
        turn += 1
        for i, wk in enumerate(workers):
            if turn % (i + 1):  # worker i sends one gradient every i + 1 turns
                continue
            rnd = wk.rnd
            sent[(i, rnd)] = wk.step()
            if master.status()["done"]:
                break
    result = master.result()
    assert np.array_equal(result["w"], _replay(result, sent, K))
    assert result["datapath"]["shared_memory"] == [0, 1, 2]
    for wk in workers:
        assert max(wk.written.values()) >= 3  # slots are reused
        wk.close()
    if K > 1:  # the fastest worker sends again while the master holds its last gradient: both slots
        assert sorted(workers[0].written) == list(range(GRAD_SLOTS))


def test_gradients_waiting_for_their_uplink_delay_keep_their_slots():
    """A gradient held back by its uplink delay keeps its slot busy; when every slot of a worker is busy the master
    copies the waiting ones out, so the worker always has a free slot, and ``w`` is still the gradients' own."""
    n, K, updates = 2, 2, 12
    master = _master(n, K, updates, time_unit=1.0)
    workers = [FakeWorker(master, i) for i in range(n)]
    sent: dict[tuple[int, int], np.ndarray] = {}
    while not master.status()["done"]:
        for i, wk in enumerate(workers):
            rnd = wk.rnd
            sent[(i, rnd)] = wk.step(deliver_in=0.02 if i == 0 else 0.0)  # worker 0's gradients travel 20 ms
        time.sleep(0.005)
    result = master.result()
    assert np.array_equal(result["w"], _replay(result, sent, K))
    assert result["datapath"]["copied"] > 0
    for wk in workers:
        wk.close()


def test_a_ring_row_is_reused_only_when_no_worker_can_be_given_its_version(stored):
    """A slow worker pins its version (and every later one it may still be given): the fast workers' updates fill
    the ring; the versions after that go through the object store (never an overwrite, never a wait), rows come
    back once the slow worker moves on, and every row a worker reads carries its version's tag (``read``)."""
    n, K, updates = 3, 1, 60
    master = _master(n, K, updates)
    workers = [FakeWorker(master, i) for i in range(n)]
    rows = master.data.ring.slots
    seen_full = reused = False
    for turn in range(updates):
        if master.status()["done"]:
            break
        wk = workers[turn % 2] if turn % 10 else workers[2]  # worker 2: one gradient in ten
        wk.step()
        free = len(master.data.ring_free)
        seen_full |= free == 0
        reused |= seen_full and free > 0
        used = {r.slot for r in master.refs.values() if isinstance(r, shm.VersionRef)}
        assert len(used) + free == rows  # a row is either free or holds a version a worker may be given
    assert seen_full and reused
    assert master.data.through_store > 0 and len(stored) == master.data.through_store
    for wk in workers:
        wk.close()


def test_release_removes_every_segment():
    master = _master(2, 1, 5)
    workers = [FakeWorker(master, i) for i in range(2)]
    tok = master.data.token
    assert tok is not None and len(shm.leftover(tok)) == 3  # the ring, one gradient segment per worker
    workers[0].step()
    master.release()
    assert shm.leftover(tok) == []
    for wk in workers:
        wk.close()


def test_without_room_in_dev_shm_the_master_uses_the_object_store(monkeypatch):
    """A tmpfs without room would not refuse a segment (a write to it would kill the process): the master checks
    first, and without room (here: a /dev/shm with 40 kB free) takes the object store's path."""
    import types

    assert shm.available() and not shm.available(10**18)
    monkeypatch.setattr(shm.os, "statvfs", lambda path: types.SimpleNamespace(f_bavail=10, f_frsize=4096))
    system = System(n=2, K=1, compute=PAPER)
    master = Master(Flat(10**6), system, LR, 5, seed=1, time_unit=None, error_every=0, shared=shm.token())
    assert master.data.ring is None and master.data.token is None
    master.start(time.time())
    info = master.register(0)
    assert "shm" not in info and isinstance(info["refs"][0], np.ndarray)  # ("put in the object store": a copy)


def test_unlink_all_removes_a_killed_runs_segments():
    tok = shm.token()
    segs = [shm.Segment(f"{tok}-w", 3, 10, create=True), shm.Segment(f"{tok}-g0.0", 2, 10, create=True)]
    assert shm.leftover(tok) == [f"{tok}-g0.0", f"{tok}-w"]
    assert shm.unlink_all(tok) == 2 and shm.leftover(tok) == []
    for s in segs:
        s.close()


def test_reap_removes_the_segments_of_a_process_that_is_gone():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is now free (not reused this soon)
    dead, mine = f"stalegrad-{proc.pid}-0000", shm.token()
    segs = [shm.Segment(f"{dead}-w", 1, 4, create=True), shm.Segment(f"{mine}-w", 1, 4, create=True)]
    try:
        assert shm.reap() >= 1
        assert shm.leftover(dead) == [] and shm.leftover(mine) == [f"{mine}-w"]  # a live process's are kept
    finally:
        shm.unlink_all(mine)
        for s in segs:
            s.close()


# ------------------------------------------------------------------------------------------- real runs (Ray)


def _mine() -> list[str]:
    """The segments runs of this process made that still exist."""
    import os

    return shm.leftover(f"stalegrad-{os.getpid()}")


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False])
def test_a_run_on_one_node_exchanges_w_and_gradients_in_shared_memory_and_trains_exactly(
    local_ray, check_trace, big_quadratic, sgd_along, shared
):
    """``w`` of 160 kB, n = 4, K = 2, downlink and uplink delays: with the shared-memory path every worker (all on
    the master's node) takes it, and without it none; either way SGD along the run's Trace with the workers' own
    streams gives the run's ``w`` to the bit (every gradient computed on the version its row names, none mixed up
    or overwritten), and no segment is left."""
    from stalegrad.runtime import run

    dim, lr, b, updates, seed = 20_000, 0.1, 4, 150, 8
    problem = big_quadratic(dim)
    system = System(n=4, K=2, tc=1, compute=PAPER)
    result = run(system, problem, updates, time_unit=0.005, seed=seed, lr=lr, batch=b, shared_memory=shared)
    check_trace(result, updates, 2)
    datapath = result.trace.meta["datapath"]
    assert datapath["shared_memory"] == ([0, 1, 2, 3] if shared else [])
    errors, w = sgd_along(result, problem, lr, b, seed)
    assert np.array_equal(w, result.w)  # to the bit (the errors: a dot product, rounding may differ)
    np.testing.assert_allclose(errors, result.errors[:, 2], rtol=1e-9)
    assert _mine() == []


class _WritesInto:
    """A problem whose workers must write their gradients into their slots (``gradient_into``): its ``gradient``
    fails while ``strict`` (set for the run, cleared for the replay, which uses ``gradient``)."""

    def __init__(self, base):
        self.base, self.name, self.dim, self.strict = base, base.name, base.dim, True

    def init(self):
        return self.base.init()

    def gradient(self, w, b, rng):
        if self.strict:
            raise AssertionError("gradient() called: the gradient was not written into its slot")
        return self.base.gradient(w, b, rng)

    def gradient_into(self, w, b, rng, out):
        np.copyto(out, self.base.gradient(w, b, rng))

    def loss(self, w):
        return self.base.loss(w)

    def error(self, w):
        return self.base.error(w)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["k-batch-async", "k-sync"])
def test_gradients_written_straight_into_their_slots(local_ray, check_trace, big_quadratic, sgd_along, protocol):
    """A problem with ``gradient_into``: each worker computes its gradients into its slots (never ``gradient``,
    whose failure would kill the worker: none is lost), abandoned rounds (k-sync) give their slot back; under
    k-batch-async SGD along the Trace with the workers' streams gives the run's ``w`` to the bit."""
    from stalegrad.runtime import run

    dim, lr, b, updates, seed = 20_000, 0.1, 4, 80, 3
    problem = _WritesInto(big_quadratic(dim))
    system = System(n=3, K=2, tc=1, compute=PAPER, protocol=protocol)
    result = run(system, problem, updates, time_unit=0.005, seed=seed, lr=lr, batch=b)
    assert result.lost == () and result.trace.meta["datapath"]["shared_memory"] == [0, 1, 2]
    t = result.trace
    if protocol == "k-batch-async":
        check_trace(result, updates, 2)
        problem.strict = False
        _, w = sgd_along(result, problem, lr, b, seed)
        assert np.array_equal(w, result.w)
    else:  # rounds overtaken by a new version are abandoned (and late gradients dropped)
        assert t.updates == updates and (t["update"] >= 1).sum() == 2 * updates
        assert len(t) + sum(result.dropped.values()) == result.received
        assert np.all(t["staleness"][t["update"] >= 1] == 0) and t.meta["wasted_compute"] > 0
    assert _mine() == []


@pytest.mark.slow
def test_no_segment_outlives_a_run_whose_worker_was_killed_and_restarted(local_ray, check_trace, big_quadratic):
    """Worker 1 killed at update 30 and restarted (a new incarnation: new gradient slots, the dead one's never
    overwritten): the run completes, at most once, and every segment is removed at its end."""
    from stalegrad.runtime import run

    updates = 300  # about 5 s: a new actor process starts in 1-2 s on this loaded machine
    result = run(
        System(n=3, K=2, compute=PAPER),
        big_quadratic(20_000),
        updates,
        time_unit=0.01,
        seed=2,
        lr=0.1,
        batch=4,
        kill={1: 30},
        restart_workers=True,
    )
    check_trace(result, updates, 2)
    [(worker, seen)] = result.restarted
    assert worker == 1 and 1 in result.trace.meta["datapath"]["shared_memory"]
    late = result.trace["update"] > seen + 20
    assert np.any(result.trace["worker"][late] == 1), "the new incarnation's gradients"
    assert _mine() == []


@pytest.mark.slow
def test_a_killed_masters_segments_are_removed_by_the_driver(local_ray, big_quadratic):
    """The master actor killed mid-run (it cannot remove its segments): the driver's close removes them by name."""
    import ray

    from stalegrad.runtime.driver import Driver
    from stalegrad.runtime.plan import RunPlan

    plan = RunPlan.build(System(n=2, K=1, compute=PAPER), big_quadratic(20_000), 10**6, seed=1, error_every=0)
    driver = Driver(plan)
    driver.start()
    try:
        assert driver.token is not None and len(shm.leftover(driver.token)) == 3  # the ring, two workers' slots
        for _ in range(3):
            driver.poll()
        ray.kill(driver.master, no_restart=True)
        time.sleep(0.5)
    finally:
        driver.close()
    assert shm.leftover(driver.token) == [] and _mine() == []


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_a_stopped_run_leaves_no_segment_and_resumes_on_shared_memory(local_ray, tmp_path, check_trace, big_quadratic):
    """A run with a 160 kB ``w`` stopped at update 50 or later (an error in its progress callback, as Ctrl-C: the
    final checkpoint is written, the actors killed) leaves no segment; resumed from its checkpoint, it completes
    on the shared-memory path with updates 1..100 exactly once."""
    from stalegrad.runtime import run
    from stalegrad.runtime.checkpoint import load_checkpoint

    system, problem = System(n=3, K=2, compute=PAPER), big_quadratic(20_000)

    def stop_at(v):
        def progress(status):
            if status["version"] >= v:
                raise _Stop

        return progress

    with pytest.raises(_Stop):
        run(system, problem, 100, time_unit=0.004, seed=5, checkpoint_dir=tmp_path, checkpoint_every=20,
            progress=stop_at(50))  # fmt: skip
    assert _mine() == []
    first = load_checkpoint(tmp_path).version
    assert 50 <= first < 100
    result = run(system, problem, 100, time_unit=0.004, resume=tmp_path)
    check_trace(result, 100, 2)
    assert result.meta["resumed_from"] == first and result.meta["datapath"]["shared_memory"] == [0, 1, 2]
    assert _mine() == []


@pytest.mark.slow
def test_the_data_path_bench_quick_runs_both_paths(tmp_path):
    """``bench/bench_datapath.py --quick``: the shared-memory path and the object store's beside Ray's pattern,
    with the load, at two small sizes (a smoke test: its ratios mean nothing)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench" / "bench_datapath.py"
    out = tmp_path / "datapath.json"
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "store/PS" in proc.stdout and "bound / stalegrad at d = " in proc.stdout, proc.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True and len(data["rows"]) == 2
    for row in data["rows"]:
        assert row["stalegrad_updates_per_s"] > 0 and row["store_updates_per_s"] > 0 and len(row["load"]) == 2
        shared = row["stalegrad"][0]["datapath"]["shared_memory"]
        assert shared == ([0, 1, 2, 3] if 8 * row["d"] > SHARED_BYTES else [])
        assert row["stalegrad_store"][0]["datapath"]["shared_memory"] == []


def test_small_arrays_travel_as_their_bytes_and_come_back_the_same():
    """``pack``: a float64 vector (every ``w``, most gradients) goes inside a call as its bytes, read back as a
    read-only view with the same bits; any other array goes as it is."""
    from stalegrad.runtime.datapath import pack, unpack

    a = np.random.default_rng(0).standard_normal(1000)
    a[:3] = (-0.0, np.inf, np.nextafter(0.0, 1.0))
    packed = pack(a)
    assert isinstance(packed, bytes) and len(packed) == a.nbytes
    back = unpack(packed)
    assert back.dtype == np.float64 and np.array_equal(back.view(np.int64), a.view(np.int64))
    assert not back.flags.writeable
    for other in (a.astype(np.float32), a.reshape(10, 100)):
        assert pack(other) is other and unpack(other) is other
