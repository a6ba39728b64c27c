"""Workers that share a law: a cluster of many workers becomes a few classes, each fitted on its pooled times.

The classes are the branches of a tree of the workers, cut by tests:

1. every pair of workers is compared by the two-sample Anderson–Darling statistic (``scipy.stats.anderson_ksamp``,
   Scholz & Stephens 1987), and the workers are joined into a tree by average linkage on it
   (``scipy.cluster.hierarchy``);
2. from the root down, a branch is one class if the k-sample Anderson–Darling test does not reject, at the
   level, that its workers' times come from one law; otherwise its two sub-branches are examined in turn.

So each cut is a test at the stated level, and a cluster of ``c`` true classes is examined with about ``2c - 1``
tests. scipy interpolates the test's p-value between 0.001 and 0.25, hence the allowed levels.

Censored records enter with their observed times: workers of one class must then be cut off alike, as under a
protocol where all of them face the same cancellations (k-sync: the first K of n finish, whoever they are).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.stats

from ..errors import invalid
from .laws import Sample

__all__ = ["LEVELS", "check_level", "group_workers", "same_law_pvalue"]

#: Levels at which scipy's k-sample Anderson–Darling test gives p-values.
LEVELS = (0.001, 0.25)


def check_level(level: float, parameter: str = "level") -> float:
    """A significance level in :data:`LEVELS` (the range in which the k-sample test has p-values)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not LEVELS[0] <= level <= LEVELS[1]:
        raise invalid(
            parameter,
            level,
            f"a significance level between {LEVELS[0]} and {LEVELS[1]} (where scipy's k-sample Anderson-Darling "
            "test has p-values)",
        )
    return float(level)


def same_law_pvalue(samples: Sequence[Sample]) -> float:
    """The k-sample Anderson–Darling p-value that ``samples`` come from one law (in ``[0.001, 0.25]``)."""
    if len(samples) < 2:
        return 1.0
    times = [s.times for s in samples]
    if np.unique(np.concatenate(times)).size < 2:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when it caps or floors the p-value
        return float(scipy.stats.anderson_ksamp(times).pvalue)


def _statistic(left: np.ndarray, right: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(scipy.stats.anderson_ksamp([left, right]).statistic)


def group_workers(samples: dict[str, Sample], level: float = 0.01) -> list[list[str]]:
    """Classes of workers whose times share a law (see the module docstring), fastest class first.

    >>> rng = np.random.default_rng(0)
    >>> samples = {f"w{i}": Sample.of(rng.gamma(2.0, 1.0 + (i % 2), size=500)) for i in range(4)}
    >>> group_workers(samples)
    [['w0', 'w2'], ['w1', 'w3']]
    """
    import scipy.cluster.hierarchy as hierarchy

    level = check_level(level)
    workers = list(samples)
    if len(workers) < 2:
        return [workers]
    times = [samples[w].times for w in workers]
    m = len(workers)
    distance = [max(_statistic(times[i], times[j]), 0.0) for i in range(m) for j in range(i + 1, m)]
    tree = hierarchy.to_tree(hierarchy.linkage(np.asarray(distance) + 2.0, method="average"))
    classes: list[list[str]] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        members = [workers[i] for i in node.pre_order()]
        if node.is_leaf() or same_law_pvalue([samples[w] for w in members]) > level:
            classes.append(members)
        else:
            pending += [node.get_left(), node.get_right()]
    for c in classes:
        c.sort(key=workers.index)
    return sorted(classes, key=lambda c: (float(np.median(np.concatenate([samples[w].times for w in c]))), c))
