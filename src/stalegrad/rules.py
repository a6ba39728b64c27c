"""What each protocol changes, as a handful of flags (:data:`RULES`): the event engines
(:mod:`stalegrad.sim.events`, :mod:`stalegrad.sim.compiled`) and the real runtime (:mod:`stalegrad.runtime.protocol`)
read the same table (docs/model.md says what each protocol does). Light on purpose: a Ray actor imports it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RULES", "Rules"]


@dataclass(frozen=True)
class Rules:
    """What a protocol changes: the engine's handlers read these flags and nothing else."""

    waits: bool  # after sending, a worker idles until a version reaches it
    cancels: bool  # a new version cancels a round computing on an older one
    current_only: bool  # the master takes only gradients computed on its current version
    to_contributors: bool  # a new version goes only to the workers whose gradients made it
    stops: bool = False  # ringmaster: a round whose delay reaches R is stopped (the master sends the new version)
    cutoffs: bool = False  # mindflayer: a round still computing at its worker's cutoff is abandoned


RULES = {
    "k-batch-async": Rules(waits=False, cancels=False, current_only=False, to_contributors=False),
    "k-async": Rules(waits=True, cancels=False, current_only=False, to_contributors=True),
    "k-sync": Rules(waits=True, cancels=True, current_only=True, to_contributors=False),
    "k-batch-sync": Rules(waits=False, cancels=True, current_only=True, to_contributors=False),
    "sync": Rules(waits=True, cancels=True, current_only=True, to_contributors=False),
    "rennala": Rules(waits=False, cancels=True, current_only=True, to_contributors=False),
    "ringmaster": Rules(waits=True, cancels=False, current_only=False, to_contributors=True, stops=True),
    "mindflayer": Rules(waits=False, cancels=True, current_only=True, to_contributors=False, cutoffs=True),
}
