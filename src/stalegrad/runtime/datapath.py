"""How ``w`` and the gradients travel between the master and its workers: the master's side of the data path.

Three ways, by size and place (README, "Large models"; :mod:`stalegrad.runtime.shm` for the buffers):

* a small ``w`` (up to :data:`INLINE_BYTES`) travels inside the master's replies, a small gradient inside the
  worker's call, as their bytes (:func:`pack`);
* on the master's node, a ``w`` over :data:`SHARED_BYTES`: each version is copied once into a row of the version
  ring, and the worker is given the row's number; its gradients come in its own slots (:data:`GRAD_SLOTS` per
  worker incarnation), and only a slot's number travels;
* elsewhere (another node, no ``/dev/shm`` or no room in it, the path switched off): each version is put in the
  object store once and its reference travels; a large gradient likewise.

:class:`DataPath` holds that state for the master actor (:class:`~stalegrad.runtime.master.Master`), which calls
it under its lock; what a worker is given on the wire is always plain (an int, bytes, an object reference), so
that Ray pickles nothing of ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import shm

__all__ = ["GRAD_SLOTS", "INLINE_BYTES", "SHARED_BYTES", "DataPath", "pack", "unpack"]

#: A version of ``w`` up to this size is sent inside the master's replies; a larger one is put in the object store
#: once and its reference sent (Ray's own threshold for returning task results inline, ``max_direct_call_object_size``).
#: A worker's gradient above it travels by reference too.
INLINE_BYTES = 100 * 1024

#: A ``w`` over this size takes the shared-memory path (:mod:`stalegrad.runtime.shm`) to workers on the master's
#: node, and their gradients too: below it, a call's own copy costs less than a slot's bookkeeping.
SHARED_BYTES = 16 * 1024

#: Gradient slots per worker on the shared-memory path (:mod:`stalegrad.runtime.shm`): one the master may hold while
#: the worker writes the next into the other.
GRAD_SLOTS = 2


def pack(a: np.ndarray) -> bytes | np.ndarray:
    """A small array as it travels inside a call: its bytes if it is a vector of float64 (``w`` always is), else
    itself. Ray pickles an array (out of band, but through a pickler: about 0.07 ms a call on each side, 1e1 to
    1e4 floats measured), and hands bytes over as they are."""
    if a.dtype == np.float64 and a.ndim == 1:
        return a.tobytes()
    return a


def unpack(x: Any) -> Any:
    """What :func:`pack` made, as an array again (bytes: a read-only view of them, no copy); anything else as it
    is."""
    return np.frombuffer(x, dtype=np.float64) if isinstance(x, bytes) else x


class DataPath:
    """The master's side of the data path for a ``w`` like ``w`` (its size), ``n`` workers, ``K`` gradients per
    update and ``active`` workers. ``shared``: the run's segment name (:func:`shm.token
    <stalegrad.runtime.shm.token>`) if it may use shared memory; it is used only for a ``w`` over
    :data:`SHARED_BYTES` and when ``/dev/shm`` has room for the ring and every active worker's slots
    (:attr:`token` is then set, else None).

    A version is *published* once (:meth:`publish`: a ring row, or a copy, or the object store's copy); what each
    worker is *given* for it (:meth:`give`) depends on whether it shares memory with the master (:meth:`join`);
    a version no live worker can be given any more is *forgotten* (:meth:`forget`: its row is free again)."""

    def __init__(self, w: np.ndarray, n: int, K: int, active: int, shared: str | None) -> None:
        self.dim = w.size
        self.inline = w.nbytes <= INLINE_BYTES  # a small w travels inside the replies
        rows = shm.ring_rows(n, K)
        room = w.nbytes * (rows + active * GRAD_SLOTS)  # (a restarted worker's slots: more)
        big = w.nbytes > SHARED_BYTES
        self.token = shared if shared is not None and big and shm.available(room) else None
        self.ring: shm.Segment | None = None
        self.ring_free = shm.Slots(0)
        if self.token is not None:
            self.ring = shm.Segment(f"{self.token}-w", rows, self.dim, create=True)
            self.ring_free = shm.Slots(rows)
        self.grad_segments: dict[tuple[int, int], shm.Segment] = {}
        self.sharing: set[int] = set()  # the workers on the shared-memory path (the others: the object store)
        self.through_store = 0  # versions put in the object store because the ring was full
        self.copied = 0  # gradients copied out of their slots (every slot of their worker was busy)
        self._stored: dict[int, Any] = {}  # versions in the ring put in the object store too, for the others

    def join(self, worker: int, same_node: bool) -> None:
        """A (re)started worker: on the shared-memory path if it runs on the master's node and the ring exists."""
        if self.ring is not None and same_node:
            self.sharing.add(worker)
        else:
            self.sharing.discard(worker)

    def segments(self, worker: int, incarnation: int) -> dict[str, Any]:
        """The names and shapes of the ring and of worker incarnation ``(worker, incarnation)``'s gradient slots
        (made here if new), for the worker to map."""
        assert self.ring is not None and self.token is not None
        key = (worker, incarnation)
        name = f"{self.token}-g{worker}.{incarnation}"
        if key not in self.grad_segments:
            self.grad_segments[key] = shm.Segment(name, GRAD_SLOTS, self.dim, create=True)
        return {
            "ring": self.ring.name,
            "ring_rows": self.ring.slots,
            "dim": self.dim,
            "grads": name,
            "slots": GRAD_SLOTS,
        }

    def publish(self, w: np.ndarray, version: int) -> Any:
        """Version ``version`` of ``w`` (which the master then updates in place), made available once: copied into
        a free row of the ring (:class:`~stalegrad.runtime.shm.VersionRef`); without the ring its bytes (small) or
        the reference of the one copy put in the object store (workers read it zero-copy, read-only). When every
        row of the ring holds a version a worker may still be given, the version goes through the object store."""
        import ray

        if self.ring is not None:
            slot = self.ring_free.take()
            if slot is not None:
                self.ring.tags[slot] = -1  # a worker still reading the row would see its tag change
                np.copyto(self.ring.rows[slot], w)
                self.ring.tags[slot] = version
                return shm.VersionRef(slot, version)
            self.through_store += 1
        return pack(w) if self.inline else ray.put(w)

    def give(self, published: Any, worker: int) -> Any:
        """What ``worker`` is given for a version :meth:`publish` returned ``published`` for: the number of its row
        of the ring (an int) if the worker shares memory with the master, else ``w`` itself (small) or the object
        store's copy (for a version in the ring: put once, when first needed)."""
        if not isinstance(published, shm.VersionRef):
            return published
        if worker in self.sharing:
            return published.slot
        v = published.version
        if v not in self._stored:
            import ray

            assert self.ring is not None
            row = self.ring.rows[published.slot]
            self._stored[v] = pack(row) if self.inline else ray.put(row)
        return self._stored[v]

    def forget(self, published: Any) -> None:
        """No live worker can be given this version any more: its ring row is free again."""
        if isinstance(published, shm.VersionRef):
            self._stored.pop(published.version, None)
            self.ring_free.free(published.slot)

    def gradient(self, tag: tuple[int, int, int], rnd: int) -> np.ndarray:
        """The gradient in slot ``tag = (worker, incarnation, slot)``, read-only, in place; its tag must be its
        round (the worker writes the round after the gradient)."""
        worker, incarnation, slot = tag
        seg = self.grad_segments[(worker, incarnation)]
        if int(seg.tags[slot]) != rnd:
            raise RuntimeError(f"gradient slot {tag} holds round {int(seg.tags[slot])}, not round {rnd}")
        g = seg.rows[slot].view()
        g.flags.writeable = False
        return g

    def release(self) -> None:
        """Remove the run's segments (their memory is freed when the last process that maps them unmaps them)."""
        for seg in [*self.grad_segments.values(), *([self.ring] if self.ring is not None else [])]:
            seg.unlink()
        if self.token is not None:
            shm.unlink_all(self.token)

    def meta(self) -> dict[str, Any]:
        """What a run's Trace says of its data path (``meta["datapath"]``)."""
        return {"shared_memory": sorted(self.sharing), "through_store": self.through_store, "copied": self.copied}
