"""Options shared by the commands, and the turning of their text into library values."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import click

from ..errors import SpecError, invalid
from .link_options import link_delay_options

#: The problems known by name (``--problem``); anything else is ``module:attribute``.
PROBLEMS = ("linreg", "logreg", "mlp-digits", "cnn-digits")
PROBLEM_HELP = (
    "linreg (synthetic least squares), logreg (logistic regression, scikit-learn's breast-cancer data), "
    "mlp-digits or cnn-digits (PyTorch models on scikit-learn's 8x8 digits; pip install 'stalegrad[torch]'), or "
    "module:attribute naming your own Problem (or a function returning one)."
)


def load_problem(name: str, *, dim: int = 20, samples: int = 2000, noise: float = 0.5, l2: float = 1e-3) -> Any:
    """The problem ``--problem name`` names (the data of linreg from a fixed seed, so runs and replays share it)."""
    if name == "linreg":
        from ..train import LinearRegression

        return LinearRegression(dim=dim, samples=samples, noise=noise, seed=0)
    if name == "logreg":
        from ..train import LogisticRegression

        return LogisticRegression(l2=l2)
    if name in ("mlp-digits", "cnn-digits"):  # torch models, initialised from seed 0 (torch is imported here)
        from ..train import torch_problems

        return torch_problems.mlp_digits() if name == "mlp-digits" else torch_problems.cnn_digits()
    if ":" in name:  # module:attribute, a Problem or a function returning one
        import importlib

        module, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise SpecError(f"--problem {name!r} could not be loaded: {exc}") from None
        return obj() if isinstance(obj, type) or not hasattr(obj, "gradient") else obj
    raise SpecError(f"--problem must be one of {', '.join(PROBLEMS)} or module:attribute, got {name!r}")


def builtin_problem(text: str) -> str | None:
    """The ``--problem`` name whose problem has the repr ``text`` (a checkpoint records it), or ``None``. A torch
    problem is built only when ``text`` names it, so resuming a linreg run never needs torch."""
    for name in PROBLEMS:
        torch_model = name in ("mlp-digits", "cnn-digits")
        if (not torch_model or text.startswith(f"TorchProblem({name!r}")) and repr(load_problem(name)) == text:
            return name
    return None


def check_problem_options(problem: str, **given: Any) -> None:
    """Refuse a problem option given on the command line for a problem that does not use it (silently ignored
    otherwise): ``--dim``, ``--samples`` and ``--noise`` belong to linreg, ``--l2`` to logreg."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    owners = {"dim": "linreg", "samples": "linreg", "noise": "linreg", "l2": "logreg"}
    for name in given:
        explicit = ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
        if explicit and owners.get(name) not in (None, problem):
            raise invalid(f"--{name}", given[name], f"left out: it applies to --problem {owners[name]}, not {problem}")


def check_output_dir(parameter: str, path: str) -> None:
    """An output folder, checked before any work: an existing writable folder, or a new one whose parent exists
    and is writable (no parent folders are created)."""
    import os
    from pathlib import Path

    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise invalid(parameter, path, "a folder (this is a file)")
        if not os.access(p, os.W_OK | os.X_OK):
            raise invalid(parameter, path, "a folder you can write to")
        return
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise invalid(parameter, path, f"a folder whose parent exists ({str(parent)!r} does not; create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise invalid(parameter, path, f"a folder in a place you can write to (not {str(parent)!r})")


def check_output_file(parameter: str, path: str, suffixes: tuple[str, ...]) -> None:
    """An output file, checked before any work: a known suffix, an existing writable parent folder, and not a
    folder itself."""
    import os
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise invalid(parameter, path, f"a file name ending in {' or '.join(suffixes)}")
    if p.is_dir():
        raise invalid(parameter, path, "a file name (this is a folder)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise invalid(parameter, path, f"a file in an existing folder ({str(parent)!r} does not exist)")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise invalid(parameter, path, "a file in a place you can write to")


#: Image formats a ``--plot`` path may end in.
IMAGE_SUFFIXES = (".png",)


def parse_sweep(name: str, text: str, kind: type) -> list[Any]:
    """``"16"``, ``"10:20"`` (inclusive), ``"10:20:2"`` or ``"8,12,16"`` into a list of values."""
    word = "an integer" if kind is int else "a number"
    allowed = f"{word}, a range 'first:last[:step]' or a list 'a,b,c'"
    try:
        if ":" in text:
            parts = [kind(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            first, last = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else kind(1)
            if step <= 0 or last < first:
                raise ValueError
            count = math.floor((last - first) / step + 1e-9) + 1
            return [kind(first + k * step) for k in range(count)]
        return [kind(p) for p in text.split(",")]
    except ValueError:
        raise SpecError(f"{name} must be {allowed}, got {text!r}") from None


def compute_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--compute",
        "compute",
        multiple=True,
        metavar="MODEL",
        help="Compute-time model: a scipy.stats name with arguments, e.g. 'expon(loc=1, scale=1.5)', "
        "'gamma(a=2, scale=1)', 'shifted_exponential(alpha=1, rate=2/3)', 'deterministic(value=2)', "
        "'empirical(path=times.csv)'. Heterogeneous workers: repeat with counts, '3*expon(scale=1)'. "
        "Default: the paper's shifted_exponential(alpha=1, rate=2/3).",
    )(f)


def system_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--n, --K, --tc, --uplink, --downlink, --compute, --protocol, --staleness-bound (n, K, tc accept sweeps),
    --model-bytes, --bandwidth, --latency (a fixed delay per direction), and --system FILE."""
    return _system_options(protocols_option(system_file_option(link_delay_options(f))))


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a cluster: those of :func:`system_options` but the protocol's (``advise`` chooses the
    protocol; ``run`` adds :func:`protocols_option` and :func:`protocol_options` itself)."""
    return _system_options(system_file_option(link_delay_options(f)))


def protocols_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--protocol and --staleness-bound."""
    f = click.option(
        "--staleness-bound",
        "staleness_bound",
        type=click.IntRange(min=0),
        default=None,
        help="Asynchronous protocols: the master drops (and counts) gradients with staleness above this.",
    )(f)
    f = click.option(
        "--protocol",
        default="k-batch-async",
        show_default=True,
        metavar="NAME",
        help="k-batch-async (the paper's), k-async, k-sync, k-batch-sync, sync, rennala (Rennala SGD: K = S "
        "gradients on the current version, the rest cancelled), ringmaster (Ringmaster ASGD: K = 1, with "
        "--delay-threshold R) or mindflayer (MindFlayer SGD: rennala with --cutoff); several, comma-separated, "
        "to compare them.",
    )(f)
    return f


def _system_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = compute_option(f)
    f = click.option(
        "--downlink",
        multiple=True,
        metavar="DELAY",
        help="Downlink delay: seconds, or a model like --compute (default tc/2). Per-worker delays: repeat with "
        "counts adding up to --n, like --compute ('3*0.1', '1*expon(scale=2)').",
    )(f)
    f = click.option(
        "--uplink",
        multiple=True,
        metavar="DELAY",
        help="Uplink delay: seconds, or a model like --compute (default tc/2). Per-worker delays: repeat with "
        "counts adding up to --n, like --compute ('3*0.1', '1*expon(scale=2)').",
    )(f)
    f = click.option(
        "--tc",
        "tc",
        default="0",
        show_default=True,
        metavar="SECONDS",
        help="Round-trip communication time (a value, a range a:b:step or a list).",
    )(f)
    f = click.option("--K", "K", default=None, metavar="K", help="Gradients per update (a value, range or list).")(f)
    f = click.option(
        "--n", "n", default=None, metavar="N", help="Workers (a value like 16, a range 10:20 or a list). Required."
    )(f)
    return f


def protocol_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--workers, --delay-threshold, --cutoff: the options of the optimal-time protocols (put under
    :func:`system_options`, so that a system file fills them too)."""
    f = click.option(
        "--cutoff",
        "cutoff",
        default=None,
        metavar="SECONDS",
        help="mindflayer: a round still computing this long after it started is abandoned and restarted (one "
        "value, or one per worker: 1,1,2,4).",
    )(f)
    f = click.option(
        "--delay-threshold",
        "delay_threshold",
        type=click.IntRange(min=1),
        default=None,
        metavar="R",
        help="ringmaster: a round whose delay reaches R updates is stopped and restarted on the newest version; a "
        "gradient of delay >= R is dropped.",
    )(f)
    f = click.option(
        "--workers",
        "workers",
        default=None,
        metavar="WHICH",
        help="The workers that compute (the others sit idle): 'fastest:M' (the M fastest by mean compute time), "
        "a list of indices '0,2,5', or 'all' (default).",
    )(f)
    return f


# ------------------------------------------------------------------ --system FILE (the fit room's system file)


def system_file_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--system FILE: the system options take the file's values (``stalegrad fit --out``, or System.to_dict as
    JSON), except those given on the command line beside it (``--system cluster.json --K 4``)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, system_file: str | None = None, **options: Any) -> Any:
        if system_file is not None:
            from click.core import ParameterSource

            from ..fit.system_file import option_values

            ctx = click.get_current_context()
            given = {k for k in options if ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT)}
            options.update(option_values(system_file, options, given))
        return f(*args, **options)

    return click.option(
        "--system",
        "system_file",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help="Start from this system file (stalegrad fit --out); options given beside it override its values.",
    )(wrapper)


def parse_delay(name: str, text: str | Sequence[str] | None) -> Any:
    """A delay option: ``None`` or nothing given (tc/2), a number of seconds, or a model in the --compute syntax;
    repeated (or with a count, ``3*0.25``), the per-worker delays as ``(count, delay)`` runs, in worker order."""
    texts = (text,) if isinstance(text, str) else tuple(text or ())
    if not texts:
        return None
    if len(texts) == 1 and not _counted(texts[0]):
        return _one_delay(name, texts[0])
    from ..delays import parse_delay_text

    return [parse_delay_text(name, t) for t in texts]


def _counted(text: str) -> bool:
    head = text.split("(")[0]
    return "*" in head


def _one_delay(name: str, text: str) -> Any:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise invalid(name, text, "a finite number of seconds >= 0, or a model like 'expon(scale=0.5)'")
        return seconds
    from ..syntax import parse_model

    count, model = parse_model(text, name)
    if count != 1:
        raise SpecError(f"{name} must be one delay model without a count, got {text!r}")
    return model


def _per_worker(name: str, delay: Any, n: int) -> Any:
    """A parsed delay option for ``n`` workers: one delay as it is, counted runs expanded (their counts must add up
    to ``n``)."""
    if not isinstance(delay, list):
        return delay
    total = sum(count for count, _ in delay)
    if total != n:
        raise SpecError(f"{name} counts must add up to --n = {n}, got {total} (one delay, or counted like --compute)")
    return [d for count, d in delay for _ in range(count)]


def build_systems(
    n: str | None,
    K: str | None,
    tc: str,
    uplink: str | Sequence[str] | None,
    downlink: str | Sequence[str] | None,
    compute: tuple[str, ...],
    protocol: str = "k-batch-async",
    staleness_bound: int | None = None,
    workers: str | None = None,
    delay_threshold: int | None = None,
    cutoff: str | None = None,
) -> list[Any]:
    """Every System of the sweep (the product of the protocols and the values of n, K and tc), validated.

    ``--delay-threshold`` goes to ringmaster and ``--cutoff`` to mindflayer only; in a list of several protocols
    ringmaster updates on every gradient (K = 1) whatever ``--K`` says."""
    from ..spec import PROTOCOLS, System
    from ..syntax import parse_model

    protocols = [p.strip() for p in protocol.split(",") if p.strip()]
    for p in protocols:
        if p not in PROTOCOLS:
            raise invalid("--protocol", p, f"one of {', '.join(PROTOCOLS)} (comma-separated for several)")
    if n is None or K is None:
        raise click.UsageError(f"Missing option '{'--n' if n is None else '--K'}'.")
    up, down = parse_delay("--uplink", uplink), parse_delay("--downlink", downlink)
    ns = parse_sweep("--n", n, int)
    Ks = parse_sweep("--K", K, int)
    tcs = parse_sweep("--tc", tc, float)
    texts = compute or ("shifted_exponential(alpha=1, rate=2/3)",)
    models = [(text, *parse_model(text, "--compute")) for text in texts]
    if up is not None and down is not None and tc != "0":
        raise invalid("--tc", tc, "left out when both --uplink and --downlink are given (they set the round trip)")
    explicit = len(models) > 1 or "*" in texts[0].split("(")[0]
    if delay_threshold is not None and "ringmaster" not in protocols:
        raise invalid("--delay-threshold", delay_threshold, "given with --protocol ringmaster only")
    if cutoff is not None and "mindflayer" not in protocols:
        raise invalid("--cutoff", cutoff, "given with --protocol mindflayer only")
    systems = []
    for proto, n_, K_, tc_ in itertools.product(protocols, ns, Ks, tcs):
        if explicit:
            total = sum(count for _, count, _ in models)
            if total != n_:
                raise SpecError(f"--compute counts must add up to --n = {n_}, got {total} ({' + '.join(texts)})")
            laws: Any = [model for _, count, model in models for _ in range(count)]
        else:
            laws = models[0][2]
        if tc_ < 0 or not math.isfinite(tc_):
            raise invalid("--tc", tc_, "a finite number of seconds >= 0")
        bound = staleness_bound if proto in ("k-batch-async", "k-async") else None
        extra: dict[str, Any] = {"workers": workers}
        if proto == "ringmaster":
            extra["delay_threshold"] = delay_threshold
            K_ = 1 if len(protocols) > 1 else K_
        if proto == "mindflayer":
            extra["cutoffs"] = cutoff
        systems.append(
            System(
                n=n_, K=K_, tc=tc_, uplink=_per_worker("--uplink", up, n_),
                downlink=_per_worker("--downlink", down, n_), compute=laws, protocol=proto, staleness_bound=bound,
                **extra,
            )
        )  # fmt: skip
    return systems
