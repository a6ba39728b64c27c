"""stalegrad: gradient staleness in asynchronous distributed SGD -- predicted, simulated, replayed, run."""

from __future__ import annotations

__version__ = "0.1.0"
