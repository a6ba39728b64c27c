"""The system file: a versioned, human-readable JSON of a System, with the evidence behind it.

Its top-level keys ``protocol, staleness_bound, n, K, tc, uplink, downlink, compute`` are
:meth:`System.to_dict <stalegrad.spec.System.to_dict>`'s, so :meth:`System.from_dict
<stalegrad.spec.System.from_dict>` reads it (and ignores the rest); the laws are in the ``--compute`` text form
(``"4*gamma(a=2.9, loc=1.01, scale=0.26)"``). Beside them, ``stalegrad fit`` writes ``format`` and ``version``,
``compute_batch`` and ``batch_reference`` (from records at several batch sizes: per class, the law at any batch
size ``b``, ``"4*gamma(a=2.9, loc=0.2 + 0.01*b, scale=0.05 + 0.002*b)"``, and the ``b`` that ``compute``
describes; ``null`` otherwise), the ``delays`` (per direction: the value, how it was found, the fits),
the ``classes`` (law, mean, p95, AIC, BIC, goodness of fit, every candidate), the ``workers`` (their place in the
system and their class), the ``warnings``, the ``notes`` and the ``provenance`` (input files with their SHA-256,
record counts, the level, the seed, the versions). Any command reads it with ``--system FILE``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import SpecError, invalid
from ..spec import System
from ..syntax import describe

__all__ = ["FORMAT", "VERSION", "batch_laws", "document", "option_values", "read_system_file", "write_system_file"]

FORMAT = "stalegrad-system"
#: 2: ``batch_reference`` and ``compute_batch`` (compute time against batch size), ``delays`` per direction with
#: their fits. 3: ``uplink`` and ``downlink`` may be per-worker lists of counted runs (``["3*0.25", "1*0.5"]``).
#: Files of versions 1 and 2 are read as they are.
VERSION = 3


def _sha256(path: str) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def document(cluster: Any) -> dict[str, Any]:
    """The system file's content for a :class:`~stalegrad.fit.cluster.ClusterFit`."""
    from ..artefacts import clean_json, metadata

    system: System = cluster.system
    records = cluster.records
    samples = records.samples()
    klass = {w: c.index for c in cluster.classes for w in c.workers}
    warned: dict[str, list[str]] = {}
    for f in cluster.findings:
        warned.setdefault(f.worker, []).append(f.kind)
    workers = [
        {
            "worker": w,
            "index": i,
            "class": klass[w],
            "records": samples[w].n,
            "censored": samples[w].n_censored,
            "warnings": warned.get(w, []),
        }
        for i, w in enumerate(cluster.worker_order())
    ]
    doc = {
        "format": FORMAT,
        "version": VERSION,
        **system.to_dict(),
        "classes": [c.to_dict() for c in cluster.classes],
        "workers": workers,
        "batch_reference": cluster.batch_reference,
        "compute_batch": cluster.compute_batch(),
        "delays": {"uplink": cluster.uplink.to_dict(), "downlink": cluster.downlink.to_dict()},
        "warnings": cluster.warnings(),
        "notes": list(cluster.notes),
        "provenance": {
            "created_by": "stalegrad fit",
            "inputs": [dict(s.to_dict(), sha256=_sha256(s.path)) for s in records.sources],
            "records": len(records),
            "censored": int(records.censored.sum()),
            "level": cluster.level,
            "gof_samples": cluster.gof_samples,
            "grouping": "k-sample Anderson-Darling, average-linkage tree cut at the level",
            "checks": "Mann-Kendall trend (Hamed-Rao variance), Ljung-Box on ranks; level / workers each",
            "metadata": metadata(cluster.seed),
        },
    }
    return clean_json(doc)


def write_system_file(path: str | Path, cluster: Any) -> Path:
    """Write the system file atomically (``stalegrad.artefacts.write_json``)."""
    from ..artefacts import write_json

    return write_json(path, document(cluster))


def read_system_file(path: str | Path, parameter: str = "--system") -> tuple[System, dict[str, Any]]:
    """The System of a system file (``stalegrad fit --out``, or any :meth:`System.to_dict` JSON), and the file's
    content."""
    p = Path(path)
    allowed = "an existing system file (JSON from stalegrad fit --out, or System.to_dict)"
    if not p.is_file():
        raise invalid(parameter, str(path), allowed)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{parameter} {str(path)!r} is not a JSON system file: {exc}") from None
    if not isinstance(doc, dict):
        raise invalid(parameter, str(path), allowed)
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise invalid(f"{parameter} format", fmt, f"{FORMAT!r}")
    version = doc.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise invalid(f"{parameter} version", version, f"at most {VERSION} (written by a newer stalegrad?)")
    try:
        return System.from_dict(doc), doc
    except SpecError as exc:
        raise SpecError(f"{parameter} {str(path)!r}: {exc}") from None


def batch_laws(path: str | Path, n: int) -> list[str] | None:
    """The file's ``compute_batch`` (checked: laws of ``b`` for exactly ``n`` workers), or ``None``."""
    from ..batch_law import parse_batch_law

    _, doc = read_system_file(path)
    texts = doc.get("compute_batch")
    if texts is None:
        return None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise invalid("--system compute_batch", texts, "a list of laws of b in text form, or null")
    if sum(parse_batch_law(t, "--system compute_batch")[0] for t in texts) != n:
        raise invalid("--system compute_batch", texts, f"laws for exactly n = {n} workers")
    return texts


def _delay_text(delay: Any) -> str | tuple[str, ...]:
    """A delay in the options' text form: one value, or per-worker runs ``("3*0.25", "1*expon(scale=0.5)")``."""
    if isinstance(delay, tuple):
        from ..delays import describe_delays

        return tuple(describe_delays(delay))
    return repr(delay) if isinstance(delay, float) else describe(delay)


def option_values(path: str | Path, options: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """The system options' values taken from a system file: every option of ``options`` not in ``given`` (the
    ones on the command line), in the options' text form. ``--tc`` given replaces both delays."""
    system, _ = read_system_file(path)
    d = system.to_dict()
    values: dict[str, Any] = {
        "n": str(system.n),
        "K": str(system.K),
        "protocol": system.protocol,
        "staleness_bound": system.staleness_bound,
        "uplink": _delay_text(system.uplink),
        "downlink": _delay_text(system.downlink),
        "workers": None if system.workers is None else ",".join(str(i) for i in system.workers),
        "delay_threshold": system.delay_threshold,
        "cutoff": None if system.cutoffs is None else ",".join(repr(c) for c in system.cutoffs),
    }
    if system.identical:  # one law for every worker: any --n
        values["compute"] = (describe(system.compute[0]),)
    else:
        values["compute"] = tuple(d["compute"])
        if "n" in given and "compute" not in given and str(options.get("n")).strip() != str(system.n):
            raise invalid("--n", options.get("n"), f"{system.n}, the workers of {path} (or give --compute for them)")
    for name in ("uplink", "downlink"):
        per_worker = isinstance(getattr(system, name), tuple) and name not in given and "tc" not in given
        if per_worker and "n" in given and str(options.get("n")).strip() != str(system.n):
            raise invalid("--n", options.get("n"), f"{system.n}, the workers of {path} (or give --{name} for them)")
    if "compute_batch" in options:
        laws = batch_laws(path, system.n) or []
        if system.identical and len(laws) == 1:  # one law of b for every worker: any --n, as for compute
            from ..batch_law import parse_batch_law

            laws = [parse_batch_law(laws[0], "--system compute_batch")[1].text]
        values["compute_batch"] = tuple(laws)
        if "compute" in given:  # the file's batch laws describe the file's compute laws, not the given ones
            given = given | {"compute_batch"}
    if "tc" in given:
        given = given | {"uplink", "downlink"}
    return {k: v for k, v in values.items() if k in options and k not in given}
