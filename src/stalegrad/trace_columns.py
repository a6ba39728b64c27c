"""The columns of a Trace and the codes of its ``dropped`` column: what the Trace container
(:mod:`stalegrad.trace`) and its checks (:mod:`stalegrad.trace_checks`) share."""

from __future__ import annotations

import numpy as np

__all__ = ["APPLIED", "COLUMNS", "DROP_REASONS", "LATE", "STALE"]

#: ``dropped`` codes: applied, dropped for staleness above the bound, dropped because its version was superseded
#: (synchronous protocols take only gradients of the current version).
APPLIED, STALE, LATE = 0, 1, 2
DROP_REASONS = {APPLIED: "applied", STALE: "staleness above the bound", LATE: "computed on a superseded version"}

#: Trace columns and their dtypes.
COLUMNS = {
    "worker": np.int32,
    "round": np.int64,
    "start": np.float64,
    "sent": np.float64,
    "arrive": np.float64,
    "version": np.int64,
    "update": np.int64,
    "staleness": np.int64,
    "dropped": np.int8,
}
