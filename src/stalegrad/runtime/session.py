"""The Ray instance a run uses: a local one started here (loopback only, no dashboard), or a cluster joined.

A local instance is started *explicitly local* (``ray.init(address="local")``): a head node left on this machine
by ``ray start`` (it writes ``/tmp/ray/ray_current_cluster``, which a plain ``ray.init()`` would join) never
captures a run. Joining a cluster is the user's explicit choice (``address``; DESIGN.md, "Runtime reliability").
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .result import RuntimeFailure

__all__ = ["check_address", "ray_session", "start_local", "stop_local"]


def start_local(num_cpus: int | None = None) -> dict[str, Any]:
    """Start a local Ray instance: dashboard off, every port on loopback only (DESIGN.md), never an existing one.

    Ray binds to the machine's address unless told that it is not a cluster; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    is how it is told (its name notwithstanding, it applies on Linux too). Token authentication is on (Ray's
    default for a new instance), without Ray's notice of it on every run. Every process of the instance carries
    this run's mark (:mod:`stalegrad.runtime.instance`); the processes a killed run left are stopped first.
    Returns Ray's node address and the instance's :class:`~stalegrad.runtime.instance.OwnProcesses` (``"own"``).
    """
    import ray

    from .instance import OwnProcesses, reap_orphans

    reap_orphans()
    own = OwnProcesses()
    # Ray's default for a new instance, token authentication, without its notice on every run
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    # loopback only; and the actors at normal priority (Ray starts workers at niceness 15, so that any other
    # process on the machine delays them: the injected times would then be jittered by unrelated load)
    settings = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0", **own.env()}
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray is imported: set it for an imported ray too
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without the switch: its default applies
        pass
    try:
        ray.init(
            address="local",  # a new instance, whatever RAY_ADDRESS or a stray head node's address file says
            num_cpus=num_cpus,
            include_dashboard=False,
            configure_logging=False,
            logging_level=logging.WARNING,
        )
    except BaseException:  # Ctrl-C or a failure half-way: nothing of the instance may stay
        with contextlib.suppress(Exception):
            ray.shutdown()
        own.stop(grace=0.5)
        raise
    finally:
        notice.setLevel(level)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"address": ray.util.get_node_ip_address(), "started": True, "own": own}


def stop_local(info: dict[str, Any]) -> None:
    """Shut down the local instance :func:`start_local` started and stop whatever of it is left."""
    import ray

    try:
        ray.shutdown()
    finally:
        info["own"].stop()


def check_address(address: str, timeout: float = 5.0) -> str | None:
    """Why a run cannot join the Ray cluster at ``address`` (``"auto"`` or ``HOST:PORT``), or ``None``.

    Ray itself retries an address where nothing answers for minutes, printing its retries; a TCP connection to
    the cluster's port, tried first, answers in at most ``timeout`` seconds. (A port that answers and is not a
    Ray cluster is found out by Ray.)
    """
    text = address.strip()
    if text == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # pragma: no cover - Ray not installed: the run says so
            return None
        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            return f"no running Ray cluster found ({_first_line(exc)})"
        if found is None:  # pragma: no cover - Ray would start a local instance
            return "no running Ray cluster found"
        text = found
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "not HOST:PORT with a port from 1 to 65535"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"nothing answers there ({exc.strerror or exc})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Use the Ray instance of this process if there is one; else start a local one (``address=None``) or join
    ``address`` (``"auto"`` or ``HOST:PORT``), and shut it down at the end (a local one: every process of it)."""
    import ray

    if ray.is_initialized():
        yield {"address": ray.util.get_node_ip_address(), "started": False}
        return
    if address is None:
        info = start_local(num_cpus)
    else:
        why = check_address(address)
        if why is not None:
            raise RuntimeFailure(f"could not join the Ray cluster at --address {address!r}: {why}")
        try:
            ray.init(address=address, configure_logging=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            why = _first_line(exc)
            raise RuntimeFailure(f"could not join the Ray cluster at --address {address!r}: {why}") from None
        info = {"address": address, "started": True}
    try:
        yield info
    finally:
        if "own" in info:
            stop_local(info)
        else:
            ray.shutdown()
