"""The Ray instance a run uses: a local one started here (loopback only, no dashboard), or a cluster joined.

A local instance is started *explicitly local* (``ray.init(address="local")``): a head node left on this machine
by ``ray start`` (it writes ``/tmp/ray/ray_current_cluster``, which a plain ``ray.init()`` would join) never
captures a run. Joining a cluster is the user's explicit choice (``address``; DESIGN.md, "Runtime reliability").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .result import RuntimeFailure

__all__ = ["ray_session", "start_local"]


def start_local(num_cpus: int | None = None) -> dict[str, Any]:
    """Start a local Ray instance: dashboard off, every port on loopback only (DESIGN.md), never an existing one.

    Ray binds to the machine's address unless told that it is not a cluster; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    is how it is told (its name notwithstanding, it applies on Linux too). Returns Ray's node address.
    """
    import ray

    # loopback only; and the actors at normal priority (Ray starts workers at niceness 15, so that any other
    # process on the machine delays them: the injected times would then be jittered by unrelated load)
    settings = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0"}
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
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"address": ray.util.get_node_ip_address(), "started": True}


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Use the Ray instance of this process if there is one; else start a local one (``address=None``) or join
    ``address`` (``"auto"`` or ``HOST:PORT``), and shut it down at the end."""
    import ray

    if ray.is_initialized():
        yield {"address": ray.util.get_node_ip_address(), "started": False}
        return
    if address is None:
        info = start_local(num_cpus)
    else:
        try:
            ray.init(address=address, configure_logging=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"could not join the Ray cluster at --address {address!r}: {exc}") from None
        info = {"address": address, "started": True}
    try:
        yield info
    finally:
        ray.shutdown()
