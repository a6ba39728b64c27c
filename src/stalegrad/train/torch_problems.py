"""PyTorch models as problems: a ``torch.nn.Module``, a loss and a dataset (tensors) behind the interface of
:class:`~stalegrad.train.problems.Problem`, so SGD can be replayed along a Trace on a real, non-convex model.

* :class:`TorchProblem` -- your own module, loss and tensors (optionally a test set);
* :func:`mlp_digits` -- a small MLP (64-64-64-10, ``d = 8970``) on scikit-learn's bundled 8x8 digits;
* :func:`cnn_digits` -- a small CNN (two 3x3 convolutions, 16 and 32 channels, a 2x2 max-pool, a 256-unit layer;
  ``d = 138,698``) on the same digits.

The point ``w`` is a flat float64 numpy vector, the parameters in ``model.parameters()`` order (the order of
``torch.nn.utils.parameters_to_vector``). At construction the module's parameters are made views of one flat
buffer (``torch.nn.utils.vector_to_parameters``) and their gradients views of another, so each evaluation copies
``w`` once into the model (a cast when the model is float32) and a gradient once out of it; nothing else is copied.

* ``gradient(w, b, rng)``: the mean loss of ``b`` training samples drawn uniformly with replacement with the
  caller's generator (``rng.integers(0, samples, size=b)``, the draw of the numpy problems: same seed, same
  batches), differentiated in train mode; ``b >= samples`` is the full gradient and draws nothing.
* ``loss(w)``: the mean training loss (eval mode, no gradient, in chunks). There is no known optimum, so
  ``error(w) = loss(w)``.
* ``metrics(w)``: with a test set, ``test_loss`` and (for class labels) ``test_accuracy``, reported beside the
  error by ``replay`` and ``train``.

CPU only: the tensors and the module must be on the CPU, and nothing is moved to another device. Every call runs
with ``threads`` torch threads (default 1): the replay is
sequential, and one thread makes the float arithmetic, hence the result, the same on every run. torch's thread
count is process-wide: the problem sets it when it evaluates and leaves it so (``threads=None`` leaves torch's
own setting alone). The built-in models
are initialised from ``seed`` (torch's global generator is left as it was). A model with randomness of its own
(dropout) or state updated in train mode (batch-norm statistics) is not a function of ``w`` alone; the replay's
reproducibility then depends on torch's generator.

Install with ``pip install 'stalegrad[torch]'``; the CPU build of PyTorch alone:
``pip install torch --index-url https://download.pytorch.org/whl/cpu``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SpecError, invalid

if TYPE_CHECKING:
    import torch

__all__ = ["DIGITS_SPLIT", "TorchProblem", "cnn_digits", "digits", "mlp_digits", "require_torch"]

INSTALL = "pip install 'stalegrad[torch]' (or the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"


def require_torch() -> Any:
    """The torch module, or a one-line error saying how to install it."""
    try:
        import torch
    except ImportError:
        raise SpecError(f"torch problems need PyTorch, which is not installed: {INSTALL}") from None
    return torch


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (``None``: torch's setting as it is). torch's setting is process-wide and is
    left at ``n`` afterwards: switching the count back and forth on every call costs more than a small model's
    gradient (OpenMP re-sizes its pool)."""
    if n is not None:
        torch = require_torch()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    yield


def _cpu_tensor(torch: Any, name: str, value: Any) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if t.device.type != "cpu":
        raise invalid(name, f"a tensor on {t.device}", "a CPU tensor (torch problems run on the CPU only)")
    if t.ndim < 1 or t.shape[0] < 1:
        raise invalid(name, f"a tensor of shape {tuple(t.shape)}", "a tensor with at least one sample (row)")
    return t.detach()


class TorchProblem:
    """A ``torch.nn.Module``, a loss and a training set (tensors, samples along the first axis) as a Problem.

    ``loss(outputs, targets)`` returns the mean loss of a batch as a scalar tensor (e.g.
    ``torch.nn.CrossEntropyLoss()``). ``test = (X_test, y_test)`` adds ``test_loss`` and, when the targets are
    integer class labels and the outputs scores per class, ``test_accuracy`` to :meth:`metrics`. ``w_0`` is the
    module's parameters at construction; the module then belongs to the problem (its parameters become views of
    the problem's flat buffer). Floating-point inputs are cast once to the parameters' dtype. ``chunk`` samples
    are evaluated at a time for the full loss. See the module docstring for copies, threads and determinism.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> X, y = torch.randn(100, 3), torch.randn(100, 1)
    >>> p = TorchProblem(torch.nn.Linear(3, 1), torch.nn.MSELoss(), X, y, name="ls")
    >>> p.dim, p.gradient(p.init(), 10, np.random.default_rng(0)).shape, p.error(p.init()) == p.loss(p.init())
    (4, (4,), True)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        X: Any,
        y: Any,
        *,
        test: tuple[Any, Any] | None = None,
        name: str = "torch",
        threads: int | None = 1,
        chunk: int = 1024,
        about: str | None = None,
    ) -> None:
        torch = require_torch()
        if not isinstance(model, torch.nn.Module):
            raise invalid("model", type(model).__name__, "a torch.nn.Module")
        if not callable(loss):
            raise invalid("loss", loss, "a function (outputs, targets) -> the mean loss, a scalar tensor")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise invalid("threads", threads, "an integer >= 1, or None (torch's own setting)")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise invalid("chunk", chunk, "an integer >= 1")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise invalid("model", type(model).__name__, "a module with at least one parameter that requires grad")
        dtypes = {p.dtype for p in params}
        devices = {p.device.type for p in params}
        if devices != {"cpu"}:
            raise invalid("model", f"parameters on {sorted(devices)}", "a module on the CPU (torch problems run there)")
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise invalid("model", f"parameters of dtypes {sorted(map(str, dtypes))}", "one floating-point dtype")
        self.dtype = next(iter(dtypes))
        self.X, self.y = self._data("X", X), _cpu_tensor(torch, "y", y)
        if self.X.shape[0] != self.y.shape[0]:
            raise invalid("y", f"{self.y.shape[0]} samples", f"as many samples as X ({self.X.shape[0]})")
        self.test: tuple[Any, Any] | None = None  # (X_test, y_test) tensors
        if test is not None:
            if not (isinstance(test, (tuple, list)) and len(test) == 2):
                raise invalid("test", type(test).__name__, "a pair (X_test, y_test)")
            Xt, yt = self._data("test X", test[0]), _cpu_tensor(torch, "test y", test[1])
            if Xt.shape[0] != yt.shape[0]:
                raise invalid("test y", f"{yt.shape[0]} samples", f"as many samples as test X ({Xt.shape[0]})")
            self.test = (Xt, yt)
        self.model = model
        self.loss_fn = loss
        self.name = name
        self.threads = threads
        self.chunk = chunk
        self.about = about
        self.samples = int(self.X.shape[0])
        self._params = params
        self._bind(torch.nn.utils.parameters_to_vector(params).detach())
        self.dim = int(self._flat.numel())
        self._w0 = self._w.astype(np.float64)

    def _data(self, name: str, value: Any) -> torch.Tensor:
        torch = require_torch()
        t = _cpu_tensor(torch, name, value)
        return t.to(self.dtype) if t.is_floating_point() and t.dtype != self.dtype else t

    def _bind(self, flat: torch.Tensor) -> None:
        """Make the parameters views of ``flat`` and their gradients views of a flat gradient buffer."""
        torch = require_torch()
        self._flat = flat.contiguous()
        self._gflat = torch.zeros_like(self._flat)
        torch.nn.utils.vector_to_parameters(self._flat, self._params)  # parameters become views: no copy
        self._gviews = []
        offset = 0
        for p in self._params:
            view = self._gflat[offset : offset + p.numel()].view_as(p)
            p.grad = view
            self._gviews.append(view)
            offset += p.numel()
        self._w = self._flat.numpy()  # numpy views of the same memory
        self._g = self._gflat.numpy()

    def _set(self, w: np.ndarray) -> None:
        w = np.asarray(w)
        if w.shape != (self.dim,):
            raise invalid("w", f"an array of shape {w.shape}", f"shape ({self.dim},)")
        np.copyto(self._w, w, casting="same_kind")  # the one copy into the model

    def init(self) -> np.ndarray:
        return self._w0.copy()

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        return np.array(self._backward(w, b, rng), dtype=np.float64)  # the one copy out

    def gradient_into(self, w: np.ndarray, b: int, rng: np.random.Generator, out: np.ndarray) -> None:
        """:meth:`gradient` written into ``out`` (float64, ``(dim,)``): the one copy out goes there."""
        np.copyto(out, self._backward(w, b, rng))

    def _backward(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        """The minibatch's gradient at ``w``, in the model's own flat buffer (valid until the next call)."""
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise invalid("b", b, "an integer >= 1")
        torch = require_torch()
        if b >= self.samples:
            Xb, yb = self.X, self.y
        else:
            idx = torch.from_numpy(rng.integers(0, self.samples, size=b))
            Xb, yb = self.X[idx], self.y[idx]
        with _threads(self.threads):
            self._set(w)
            self._gflat.zero_()
            if not self.model.training:  # Module.train() walks every submodule: only when the mode changes
                self.model.train()
            self.loss_fn(self.model(Xb), yb).backward()
            for p, view in zip(self._params, self._gviews, strict=True):
                if p.grad is not view:  # autograd replaced the buffer instead of accumulating into it
                    view.copy_(p.grad)
                    p.grad = view
        return self._g

    def _mean(self, X: torch.Tensor, y: torch.Tensor, accuracy: bool = False) -> tuple[float, float | None]:
        """Mean loss over ``(X, y)`` (and the fraction classified right, when asked and meaningful)."""
        total, right, labels = 0.0, 0, accuracy and not y.is_floating_point() and y.ndim == 1
        for a in range(0, X.shape[0], self.chunk):
            out = self.model(X[a : a + self.chunk])
            yb = y[a : a + self.chunk]
            total += float(self.loss_fn(out, yb)) * yb.shape[0]
            if labels and out.ndim == 2:
                right += int((out.argmax(dim=1) == yb).sum())
            else:
                labels = False
        return total / X.shape[0], (right / X.shape[0] if labels else None)

    def loss(self, w: np.ndarray) -> float:
        torch = require_torch()
        with _threads(self.threads), torch.no_grad():
            self._set(w)
            if self.model.training:
                self.model.eval()
            return self._mean(self.X, self.y)[0]

    def error(self, w: np.ndarray) -> float:
        """The training loss: there is no known optimum to subtract."""
        return self.loss(w)

    def metrics(self, w: np.ndarray) -> dict[str, float]:
        """On the test set: ``test_loss``, and ``test_accuracy`` for class labels (empty without a test set)."""
        if self.test is None:
            return {}
        torch = require_torch()
        with _threads(self.threads), torch.no_grad():
            self._set(w)
            if self.model.training:
                self.model.eval()
            test_loss, accuracy = self._mean(*self.test, accuracy=True)
        out = {"test_loss": test_loss}
        if accuracy is not None:
            out["test_accuracy"] = accuracy
        return out

    def __getstate__(self) -> dict[str, Any]:
        # the model with parameters of their own: pickled as views, each would carry the whole flat buffer
        state = {
            k: v for k, v in self.__dict__.items() if k not in ("_params", "_flat", "_gflat", "_gviews", "_w", "_g")
        }
        model = copy.deepcopy(self.model)
        for p in model.parameters():
            p.grad = None
            p.data = p.data.clone()
        state["model"] = model
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        torch = require_torch()
        self.__dict__.update(state)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._bind(torch.nn.utils.parameters_to_vector(self._params).detach())

    def __repr__(self) -> str:
        about = self.about or f"{type(self.model).__name__}, {self.samples} samples"
        return f"TorchProblem({self.name!r}, {about}, dim={self.dim})"


#: The digits' train/test split: a fixed permutation (``SeedSequence(0)``), the first 1437 (80%) for training.
DIGITS_SPLIT = 1437


def digits(dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes; nothing downloaded): pixels scaled to [0, 1]
    as ``(samples, 64)`` tensors, split by :data:`DIGITS_SPLIT`. Returns ``X_train, y_train, X_test, y_test``."""
    torch = require_torch()
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(np.random.SeedSequence(0)).permutation(data.target.size)
    X = torch.as_tensor(data.data[order] / 16.0, dtype=dtype or torch.float32)
    y = torch.as_tensor(data.target[order], dtype=torch.int64)
    s = DIGITS_SPLIT
    return X[:s].clone(), y[:s].clone(), X[s:].clone(), y[s:].clone()  # storages of their own


def _seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The module ``build()`` makes, its initial weights drawn from ``seed``; torch's generator is left as it was."""
    torch = require_torch()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid("seed", seed, "an integer >= 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def mlp_digits(seed: int = 0, hidden: tuple[int, ...] = (64, 64)) -> TorchProblem:
    """A small MLP on the 8x8 digits: 64 inputs, ReLU hidden layers of ``hidden`` units, 10 outputs; mean
    cross-entropy; PyTorch's default initialisation drawn from ``seed``. ``d = 8970`` for the default."""
    nn = require_torch().nn
    widths = [int(h) for h in hidden]
    if not widths or min(widths) < 1:
        raise invalid("hidden", hidden, "one or more layer widths >= 1")

    def build() -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        for a, c in zip([64, *widths[:-1]], widths, strict=True):
            layers += [nn.Linear(a, c), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(widths[-1], 10))

    X, y, Xt, yt = digits()
    about = f"MLP 64-{'-'.join(map(str, widths))}-10 on sklearn digits, seed {seed}"
    return TorchProblem(_seeded(seed, build), nn.CrossEntropyLoss(), X, y, test=(Xt, yt), name="mlp-digits",
                        about=about)  # fmt: skip


def cnn_digits(seed: int = 0) -> TorchProblem:
    """A small CNN on the 8x8 digits: conv 3x3 (16 channels), ReLU, conv 3x3 (32), ReLU, max-pool 2x2, a
    256-unit ReLU layer, 10 outputs; mean cross-entropy; initialisation drawn from ``seed``. ``d = 138,698``."""
    nn = require_torch().nn

    def build() -> torch.nn.Module:
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    X, y, Xt, yt = digits()
    about = f"CNN conv16-conv32-pool-256-10 on sklearn digits, seed {seed}"
    return TorchProblem(_seeded(seed, build), nn.CrossEntropyLoss(), X, y, test=(Xt, yt), name="cnn-digits",
                        about=about)  # fmt: skip
