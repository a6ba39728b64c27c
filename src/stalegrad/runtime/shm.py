"""The same-node data path for large models: fixed shared-memory buffers, made once per run and mapped once per
process, through which the master and the workers on its node exchange ``w`` and the gradients.

Why (README, "Large models"): every new object in Ray's object store lands on pages of shared memory the reading or
writing process touches for the first time, and on this kind of machine each first touch of a 4 kB page costs
microseconds (80 MB: ~70 ms), the store's pages carrying no huge pages. Buffers that are reused are faulted in once,
when they are mapped (``MAP_POPULATE``), before the run's clock starts; Ray's actor calls then carry only small
messages (a slot's number, a round, a version).

Two kinds of segment, each a file of ``/dev/shm`` named after the run's :func:`token` (so that whatever a killed run
left can be found and removed: :func:`unlink_all`), laid out as ``slots`` int64 tags then ``slots`` rows of ``dim``
float64:

* the master's **version ring** (``<token>-w``): the master writes a new version of ``w`` into a free row and tags
  it with the version; a worker reads the row it is told (zero copy, read-only) and checks the tag after its
  gradient is computed. A row is reused only when no live worker can still be given its version
  (:class:`~stalegrad.runtime.master.Master`'s versions kept); when every row is in use, the version goes through
  the object store instead (never waits, never overwrites);
* each worker incarnation's **gradient slots** (``<token>-g<worker>.<incarnation>``): the worker writes a gradient
  into a slot the master said is free, tags it with its round and sends ``(slot, round)``; the master reads it in
  place and the slot stays busy while the master holds the gradient (in its K-batch, or waiting for its uplink
  delay). A restarted worker gets new segments: a gradient its dead incarnation sent is never overwritten.

The segments are plain ``mmap`` s of ``/dev/shm`` files (not :class:`multiprocessing.shared_memory.SharedMemory`,
whose resource tracker, before Python 3.13, unlinks a segment when any process that attached it exits). Only Linux
has ``/dev/shm``; elsewhere (:func:`available` is False) runs use the object store.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ROOT",
    "Segment",
    "Slots",
    "VersionRef",
    "available",
    "leftover",
    "reap",
    "ring_rows",
    "token",
    "unlink_all",
]

#: Where the segments live (a tmpfs on Linux).
ROOT = Path("/dev/shm")
_PREFIX = "stalegrad-"
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def available(nbytes: int = 0) -> bool:
    """Whether this machine has ``/dev/shm`` (Linux) with room for ``nbytes`` more (and a tenth to spare): the
    same-node data path can be used. (A full tmpfs would not refuse a segment: a write to it would kill the
    process, SIGBUS.)"""
    if not (ROOT.is_dir() and os.access(ROOT, os.W_OK)):
        return False
    st = os.statvfs(ROOT)
    return st.f_bavail * st.f_frsize >= 1.1 * nbytes


def token() -> str:
    """A new run's name for its segments: ``stalegrad-<pid>-<random>``."""
    return f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def ring_rows(n: int, K: int) -> int:
    """Rows of the version ring for ``n`` workers and ``K`` gradients per update: the version each worker computes
    on, the newest, the one being written, and ``K`` more for the versions made while a worker's gradient is on its
    way (those it may still be given: :meth:`~stalegrad.runtime.master.Master.submit`)."""
    return n + K + 2


def reap() -> int:
    """Remove the segments of runs whose process is gone (killed before it could remove them): a segment's name
    carries the pid of the driver that made it. Returns how many were removed."""
    if not ROOT.is_dir():
        return 0
    gone = 0
    for path in ROOT.glob(f"{_PREFIX}*-*"):
        pid = path.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            gone += 1
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def leftover(tok: str) -> list[str]:
    """The segments of run ``tok`` that exist."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.glob(f"{tok}-*"))


def unlink_all(tok: str) -> int:
    """Remove every segment of run ``tok`` (the processes that mapped one keep their mapping until they unmap it);
    returns how many there were."""
    names = leftover(tok)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (ROOT / name).unlink()
    return len(names)


@dataclass(frozen=True)
class VersionRef:
    """Version ``version`` of ``w`` lies in row ``slot`` of the version ring."""

    slot: int
    version: int


class Segment:
    """One named segment of ``slots`` rows of ``dim`` float64 (and one int64 tag per row), mapped into this process
    with its pages faulted in at once (``MAP_POPULATE``). ``create``: make it (the name must be new); else map the
    existing one, ``writable`` or read-only (its rows are then read-only arrays)."""

    def __init__(self, name: str, slots: int, dim: int, create: bool = False, writable: bool = True) -> None:
        self.name, self.slots, self.dim = name, int(slots), int(dim)
        nbytes = 8 * self.slots * (1 + self.dim)
        path = ROOT / name
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL if create else (os.O_RDWR if writable else os.O_RDONLY)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, nbytes)
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable or create else 0)
            self._map: mmap.mmap | None = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | _POPULATE, prot=prot)
        except BaseException:
            if create:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        finally:
            os.close(fd)
        buf = np.frombuffer(self._map, dtype=np.uint8)  # read-only when the mapping is
        self.tags = buf[: 8 * self.slots].view(np.int64)
        self.rows = buf[8 * self.slots :].view(np.float64).reshape(self.slots, self.dim)
        if create:
            self.tags[:] = -1

    def close(self) -> None:
        """Unmap it (the arrays over it must no longer be used; those still alive keep the mapping open)."""
        if self._map is None:
            return
        del self.tags, self.rows
        with contextlib.suppress(BufferError):  # a view still held elsewhere: unmapped when it is freed
            self._map.close()
        self._map = None

    def unlink(self) -> None:
        """Remove its name (mappings stay valid until unmapped)."""
        with contextlib.suppress(FileNotFoundError):
            (ROOT / self.name).unlink()


class Slots:
    """Which rows of a segment are in use: :meth:`take` a free one, :meth:`free` it again."""

    def __init__(self, slots: int) -> None:
        self._free = list(range(slots - 1, -1, -1))

    def take(self) -> int | None:
        """A free row (now in use), or None when every row is in use."""
        return self._free.pop() if self._free else None

    def free(self, slot: int) -> None:
        self._free.append(slot)

    def __len__(self) -> int:
        """Free rows."""
        return len(self._free)
