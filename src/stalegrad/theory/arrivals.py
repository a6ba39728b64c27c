"""The law of ``A'_i``: the gradients that reach the master between the version a round of worker ``i`` uses and its
own gradient's arrival, ahead of it (the staleness is ``floor((Phi + A'_i) / K)``, :mod:`stalegrad.theory.pmf`).

With fixed delays (``Tc = U + D``) and compute times ``X ~ F_i``,

    A'_i = 1 + J_i + S_i,      J_i ~ N_i^o(Tc),      S_i | X = sum_{k != i} N_k^eq(Tc + X),   X ~ F_i:

the worker's previous gradient, its earlier gradients still in flight (an ordinary renewal count) and the other
workers' arrivals in the window (independent stationary renewal counts, :mod:`stalegrad.theory.counts`). Workers
with the same compute-time model form a class; the cost grows with the number of classes, not with ``n``.

* Exponential times (:func:`arrivals_closed_form`): the others are Poisson processes, so ``A'_i - 1 ~
  Poisson(Lambda Tc) + Geometric_0(lambda_i / Lambda)``.
* Any non-lattice law (:func:`arrivals_numerical`): the count laws on a grid; the generating function of ``S_i``
  on ``M`` roots of unity, ``integral prod_d G_d(z; Tc + x)^(n_d - [d = i]) dF_i(x)`` (product-trapezoid weights
  with the exact increments of ``F_i``), inverted by one FFT; three grids and Richardson extrapolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import System
from ..syntax import describe
from .counts import CountLaws, count_laws

__all__ = ["ArrivalLaws", "WorkerClass", "arrivals_closed_form", "arrivals_numerical", "worker_classes"]

#: grid step of the coarsest grid: the smallest time scale (mean or standard deviation) over this
STEPS_PER_SCALE = 24
#: grid points of the finest grid at most (beyond, the compute-time tail is cut and the cut mass reported)
MAX_POINTS = 1 << 14
#: complex entries of the generating-function arrays handled at once (windows x roots: cache-sized)
CHUNK = 1 << 15


@dataclass(frozen=True)
class WorkerClass:
    """Workers with the same compute-time model (and round trip), and their share of all gradients,
    ``sum lambda_i / Lambda``."""

    workers: tuple[int, ...]
    model: Any
    mean: float
    share: float
    tc: float = 0.0  # the workers' round trip ``Tc_i`` (the window's fixed part)


@dataclass(frozen=True, eq=False)
class ArrivalLaws:
    """``laws[c][a] = P(A'_c = a)`` per class; ``cut[c]``: the compute-time mass left off the grid; ``error``: the
    estimated total-variation error (share-weighted); ``step``: the finest grid step (``None``: closed form)."""

    laws: list[np.ndarray]
    cut: list[float]
    error: float
    step: float | None


def worker_classes(system: System) -> list[WorkerClass]:
    """Workers grouped by compute-time model (models with the same text form are one class) and round trip
    (per-worker delays: ``System.tcs``), in worker order."""
    groups: dict[tuple[str, float], list[int]] = {}
    models: dict[tuple[str, float], Any] = {}
    for i, (m, tc) in enumerate(zip(system.compute, system.tcs, strict=True)):
        key = (describe(m), tc)
        groups.setdefault(key, []).append(i)
        models.setdefault(key, m)
    total = sum(1.0 / mu for mu in system.means)
    out = []
    for key, workers in groups.items():
        mu = float(models[key].mean())
        out.append(WorkerClass(tuple(workers), models[key], mu, len(workers) / mu / total, key[1]))
    return out


def arrivals_by_round_trip(classes: list[WorkerClass], method: Any, *args: Any) -> ArrivalLaws:
    """``method(classes, tc, *args)`` (:func:`arrivals_closed_form` or :func:`arrivals_numerical`) once per
    distinct round trip of the classes, each class's law taken from the call with its own ``tc`` (the other
    workers' arrivals do not depend on their own delays: stationary streams, shifted)."""
    trips = sorted({c.tc for c in classes})
    if len(trips) == 1:
        return method(classes, trips[0], *args)
    laws: list[np.ndarray] = [np.zeros(0)] * len(classes)
    cut = [0.0] * len(classes)
    error, step = 0.0, None
    for tc in trips:
        found = method(classes, tc, *args)
        mine = [j for j, c in enumerate(classes) if c.tc == tc]
        for j in mine:
            laws[j], cut[j] = found.laws[j], found.cut[j]
        error += sum(classes[j].share for j in mine) * found.error / max(sum(c.share for c in classes), 1e-300)
        if found.step is not None:
            step = found.step if step is None else min(step, found.step)
    return ArrivalLaws(laws, cut, error, step)


def arrivals_closed_form(classes: list[WorkerClass], tc: float, tol: float) -> ArrivalLaws:
    """``A'_i = 1 + Poisson(Lambda Tc) + Geometric_0(p_i)``, ``p_i = lambda_i / Lambda``, for exponential workers:
    besides its previous gradient, the worker's earlier gradients in flight (Poisson(lambda_i Tc)) and the others'
    arrivals over ``Tc`` (Poisson((Lambda - lambda_i) Tc)) make Poisson(Lambda Tc), and over its ``Exp(lambda_i)``
    compute time the others add a geometric number. The sum is the recursion ``r_m = p_i pi_m + q_i r_{m-1}`` over
    the Poisson pmf ``pi``, i.e. its convolution with ``p_i q_i^m``; mass ``< tol`` is left in the tail."""
    total = sum(len(c.workers) / c.mean for c in classes)
    lam = total * tc
    laws, cut = [], []
    for c in classes:
        p = (1.0 / c.mean) / total
        q = 1.0 - p
        import scipy.stats

        length = int(scipy.stats.poisson.isf(tol / 4, lam)) + 2
        if q > 0:
            length += math.ceil(math.log(tol / 4) / math.log(q))
        m = np.arange(length)
        r = np.convolve(scipy.stats.poisson.pmf(m, lam), p * q**m)[:length]
        laws.append(np.concatenate([[0.0], r]))
        cut.append(max(0.0, 1.0 - float(r.sum())))
    return ArrivalLaws(laws, cut, 0.0, None)


def arrivals_numerical(
    classes: list[WorkerClass], tc: float, tol: float, steps_per_scale: int = STEPS_PER_SCALE
) -> ArrivalLaws:
    """``P(A'_c = a)`` per class from grids of step ``h``, ``h/2``, ``h/4`` (:func:`_on_grid`, errors ``O(h^2)``),
    with the compute-time tails cut at mass ``tol`` (or where the grid budget ends).

    Richardson extrapolation: ``E = (4 R(h/2) - R(h)) / 3`` on both pairs of grids. Where the differences between
    grids shrink as ``h^2`` (observed order within 0.2 of 2), the two ``E`` are extrapolated once more (``(16 E' -
    E) / 15``) and the error estimate is ``|E' - E| / 3`` in total variation (the error of ``E'`` if ``E``
    converges at least as ``h^2``). Otherwise (density jumps off the grid, singular densities) the result is
    ``E'`` and the estimate ``|E' - E|`` (the error of ``E'`` for any order >= 1).
    """
    scales = []
    for c in classes:
        std = float(c.model.std()) if callable(getattr(c.model, "std", None)) else math.nan
        scales.append(min(c.mean, std) if math.isfinite(std) and std > 0 else c.mean)
    h = min(scales) / steps_per_scale
    body = max(_upper(c.model, 1e-4) for c in classes)
    while 4 * (tc + body) / h > MAX_POINTS:  # coarsen until the bulk fits the budget; the tail is cut
        h *= 2
    h = _aligned_step(classes, tc, h)
    reach = MAX_POINTS * h / 4 - tc - 2 * h
    steps = [math.ceil(min(_upper(c.model, tol), reach) / h - 1e-9) for c in classes]
    nodes = _mixing_nodes(classes, h, steps)
    R = [_on_grid(classes, tc, h / 2**lev, [_refined(x, 2**lev) for x in nodes]) for lev in range(3)]
    shares = [c.share for c in classes]
    order = math.log2(max(_mixed_tv(shares, R[0], R[1]), 1e-300) / max(_mixed_tv(shares, R[1], R[2]), 1e-300))
    E0 = [_richardson(a, b, 4.0) for a, b in zip(R[0], R[1], strict=True)]
    E1 = [_richardson(a, b, 4.0) for a, b in zip(R[1], R[2], strict=True)]
    change = _mixed_tv(shares, E0, E1)
    if abs(order - 2.0) < 0.2:
        best, error = [_richardson(a, b, 16.0) for a, b in zip(E0, E1, strict=True)], change / 3.0
    else:
        best, error = E1, change
    cut = [_sf(c.model, x[-1] * h) for c, x in zip(classes, nodes, strict=True)]
    return ArrivalLaws([_trim(np.maximum(b, 0.0), 1e-15) for b in best], cut, float(error), h / 4)


# ------------------------------------------------------------------------------------------------ one grid


def _on_grid(classes: list[WorkerClass], tc: float, h: float, nodes: list[np.ndarray]) -> list[np.ndarray]:
    """``P(A'_c = a)`` for each class ``c``, mixing the windows ``Tc + x`` over ``x = j h``, ``j`` in ``nodes[c]``
    (increasing, from 0)."""
    r = math.floor(tc / h + 1e-9)
    delta = tc - r * h if tc - r * h > 1e-9 * h else 0.0
    columns = np.unique(np.concatenate(nodes))
    last = int(columns[-1])
    laws = [count_laws(c.model, c.mean, h, r + last + 2) for c in classes]
    counts = [len(c.workers) for c in classes]
    in_flight = [_in_flight(c, tc, h, law, r, delta) for c, law in zip(classes, laws, strict=True)]
    weights = [np.zeros(columns.size) for _ in classes]
    for w, cls, x in zip(weights, classes, nodes, strict=True):
        w[np.searchsorted(columns, x)] = _stieltjes_weights(cls.model, x * h)
    others = [np.zeros(1) for _ in classes]
    i0 = 0
    M = _fft_size(laws, counts, r + int(columns[min(15, columns.size - 1)]), delta)  # sizes the first chunk
    while i0 < columns.size:
        i1 = min(i0 + max(16, CHUNK // M), columns.size)
        # the windows grow along the chunk: the last one's support bounds the chunk's (no aliasing in the FFT)
        M = _fft_size(laws, counts, r + int(columns[i1 - 1]), delta)
        tables = [np.fft.rfft(_fold(law.equilibrium(r + columns[i0:i1], delta), M), M, axis=1) for law in laws]
        # the other workers' arrivals: G_c^(n_c - 1) prod_{d != c} G_d^(n_d), from running products over the classes
        # before c and products of those after it (a cost linear in the number of classes)
        minus_one = [_power(t, n - 1) for t, n in zip(tables, counts, strict=True)]
        for m1, t in zip(minus_one[1:], tables[1:], strict=True):
            t *= m1  # the tables after the first now hold G_d^(n_d)
        if len(classes) > 1:
            tables[0] *= minus_one[0]
        after: list[np.ndarray | None] = [None] * len(classes)
        for d in range(len(classes) - 1, 0, -1):
            later = after[d]
            after[d - 1] = tables[d] if later is None else tables[d] * later
        before: np.ndarray | None = None
        for c in range(len(classes)):
            prod = minus_one[c]
            for factor in (before, after[c]):
                if factor is not None:
                    prod *= factor
            if weights[c][i0:i1].any():
                mixed = (weights[c][i0:i1] @ prod.view(np.float64)).view(np.complex128)  # real weights: BLAS
                others[c] = _add(others[c], np.fft.irfft(mixed, M))
            before = tables[c] if before is None else before * tables[c]
        i0 = i1
    # the worker's earlier gradients in flight, and its own previous gradient (+1)
    return [np.concatenate([[0.0], np.convolve(o, j)]) for o, j in zip(others, in_flight, strict=True)]


def _mixing_nodes(classes: list[WorkerClass], h: float, steps: list[int]) -> list[np.ndarray]:
    """Per class, the grid indices ``j`` of the compute times ``x = j h`` it is mixed over, from 0 past
    ``steps[c]``: every grid point while more than 1e-4 of the mass lies beyond, then every 2nd, 4th, 8th point
    below 1e-4, 1e-6, 1e-8 (the tail weighs little; its error stays ``O(h^2)``, as the finer grids refine every
    interval alike)."""
    out = []
    for c, last in zip(classes, steps, strict=True):
        beyond = _sf_array(c.model, np.arange(last + 1) * h)
        stride = np.select([beyond > 1e-4, beyond > 1e-6, beyond > 1e-8], [1, 2, 4], 8)
        j, nodes = 0, [0]
        while j < last:
            j += int(stride[j])
            nodes.append(j)
        out.append(np.array(nodes))
    return out


def _refined(nodes: np.ndarray, factor: int) -> np.ndarray:
    """The nodes of a grid ``factor`` times finer: each interval split into ``factor`` equal ones."""
    starts, gaps = nodes[:-1] * factor, np.diff(nodes)
    fine = (starts[:, None] + gaps[:, None] * np.arange(factor)[None, :]).ravel()
    return np.append(fine, nodes[-1] * factor)


def _in_flight(c: WorkerClass, tc: float, h: float, law: CountLaws, r: int, delta: float) -> np.ndarray:
    """``P(J = j)``, ``J ~ N^o(Tc)``: the worker's own earlier gradients still travelling (a finer grid of its own
    when ``Tc`` is off the main grid)."""
    if delta == 0.0:
        return law.ordinary[:, r].copy()
    cells = 8 + math.ceil(64 * tc / h)
    return count_laws(c.model, c.mean, tc / cells, cells + 1).ordinary[:, -1].copy()


def _fft_size(laws: list[CountLaws], counts: list[int], column: int, delta: float) -> int:
    """An FFT length beyond the support of all workers' arrivals in the window at ``column`` (mass < 1e-13 left
    out); it bounds every shorter window's, since counts grow with the window."""
    rows = [_trim(law.equilibrium(np.array([column]), delta)[0], 1e-30) for law in laws]
    hard = sum(n * (row.size - 1) for n, row in zip(counts, rows, strict=True)) + 1
    size = _fast_len(hard)
    spectra = [np.fft.rfft(row, size) ** n for row, n in zip(rows, counts, strict=True)]
    tail = np.cumsum(np.maximum(np.fft.irfft(np.prod(spectra, axis=0), size), 0.0)[::-1])[::-1]
    beyond = np.flatnonzero(tail > 1e-13)
    return _fast_len(int(beyond[-1]) + 2 if beyond.size else 2)


def _fast_len(n: int) -> int:
    """The smallest 5-smooth number ``>= n`` (``2^a 3^b 5^c``: a fast FFT length). scipy.fft.next_fast_len gives
    the same, but importing scipy.fft costs more than every FFT of a prediction.

    >>> [_fast_len(k) for k in (1, 7, 97, 1000)]
    [1, 8, 100, 1000]
    """
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def _power(t: np.ndarray, n: int) -> np.ndarray:
    """``t ** n`` for an integer ``n >= 0`` by repeated squaring in place (numpy's complex power is slower)."""
    if n == 0:
        return np.ones_like(t)
    base = t
    while not n & 1:  # the result starts at the lowest set bit
        base = base * base if base is t else np.multiply(base, base, out=base)
        n >>= 1
    out = base.copy()
    n >>= 1
    while n:
        base = base * base if base is t else np.multiply(base, base, out=base)
        if n & 1:
            np.multiply(out, base, out=out)
        n >>= 1
    return out


def _fold(rows: np.ndarray, M: int) -> np.ndarray:
    """Columns summed modulo ``M`` (what a length-``M`` DFT sees of a longer sequence)."""
    if rows.shape[1] <= M:
        return rows
    padded = np.concatenate([rows, np.zeros((rows.shape[0], -rows.shape[1] % M))], axis=1)
    return padded.reshape(rows.shape[0], -1, M).sum(axis=1)


def _stieltjes_weights(model: Any, x: np.ndarray) -> np.ndarray:
    """Weights of ``integral_[0, x[-1]] g dF ~ sum_j w_j g(x_j)`` on the increasing nodes ``x`` (``x[0] = 0``): the
    product trapezoid rule with the exact increments of ``F`` (and its atom at 0)."""
    cdf = np.clip(np.asarray(model.cdf(x), dtype=float), 0.0, 1.0)
    d = np.diff(cdf)
    w = np.zeros(x.size)
    w[0] = cdf[0]
    w[:-1] += 0.5 * d
    w[1:] += 0.5 * d
    return w


# ------------------------------------------------------------------------------------------------ the grid step


def _aligned_step(classes: list[WorkerClass], tc: float, h0: float) -> float:
    """The grid step: at most ``h0`` and, where they are commensurate, dividing ``Tc`` and the ends of the compute
    times' supports (the kinks of the convolution powers then fall on grid points and the errors are smooth in
    the step, as Richardson extrapolation needs). A ``Tc`` below ``h0 / 4`` stays off the grid (one partial cell,
    :meth:`~stalegrad.theory.counts.CountLaws.equilibrium`)."""
    features = [tc] if tc >= h0 / 4 else []
    for c in classes:
        features += [float(v) for v in c.model.support() if 0 < float(v) < math.inf]
    common = 0.0
    for v in features:
        g = v if common == 0.0 else _commensurate(common, v, h0 / 4)
        if g is not None:
            common = g
    return common / math.ceil(common / h0 - 1e-9) if common > 0 else h0


def _commensurate(a: float, b: float, smallest: float) -> float | None:
    """The largest ``g >= smallest`` of which ``a`` and ``b`` are whole multiples (to 1e-9), or ``None``."""
    x, y = max(a, b), min(a, b)
    while y >= smallest:
        x, y = y, math.fmod(x, y)
        if y < 1e-9 * x:
            return x if all(abs(v / x - round(v / x)) < 1e-9 for v in (a, b)) else None
    return None


def _upper(model: Any, eps: float) -> float:
    """A time beyond which the law has mass ``eps`` at most (its upper end if it is bounded)."""
    high = float(model.support()[1])
    if callable(getattr(model, "isf", None)):
        x = float(model.isf(eps))
    elif callable(getattr(model, "ppf", None)):
        x = float(model.ppf(1.0 - eps))
    else:
        x = float(model.mean())
        while float(model.cdf(x)) < 1.0 - eps:
            x *= 2.0
    return min(x, high) if math.isfinite(x) else high


def _sf(model: Any, x: float) -> float:
    return float(_sf_array(model, np.array([x]))[0])


def _sf_array(model: Any, x: np.ndarray) -> np.ndarray:
    sf = getattr(model, "sf", None)
    values = sf(x) if callable(sf) else 1.0 - np.asarray(model.cdf(x), dtype=float)
    return np.clip(np.asarray(values, dtype=float), 0.0, 1.0)


# ------------------------------------------------------------------------------------------------ sequences


def _richardson(coarse: np.ndarray, fine: np.ndarray, factor: float) -> np.ndarray:
    """``(factor F - C) / (factor - 1)``: removes an error ``c h^p`` between steps ``h`` and ``h/2`` for
    ``factor = 2^p``."""
    size = max(coarse.size, fine.size)
    return (factor * _pad(fine, size) - _pad(coarse, size)) / (factor - 1.0)


def _mixed_tv(shares: list[float], a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Total variation between two families of per-class laws, weighted by the classes' shares of gradients."""
    return sum(s * _tv(x, y) for s, x, y in zip(shares, a, b, strict=True))


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    size = max(a.size, b.size)
    return 0.5 * float(np.abs(_pad(a, size) - _pad(b, size)).sum())


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size = max(a.size, b.size)
    return _pad(a, size) + _pad(b, size)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([a, np.zeros(size - a.size)]) if a.size < size else a


def _trim(pmf: np.ndarray, floor: float) -> np.ndarray:
    """Drop the trailing entries whose total is below ``floor`` (rounding noise), keeping at least one."""
    tail = np.cumsum(pmf[::-1])[::-1]
    keep = np.flatnonzero(tail >= floor)
    return pmf[: (keep[-1] + 1 if keep.size else 1)].copy()
