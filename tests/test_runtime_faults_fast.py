"""Faults of a real run answered without Ray: a bad ``--address`` at once, Ctrl-C twice, the updates a run made
with every worker when workers were lost. (The faults injected into real runs are in
``tests/test_runtime_faults.py``.)"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from stalegrad.runtime.measured import full_set
from stalegrad.runtime.run import ctrl_c_once


def test_a_bad_address_fails_at_once_with_one_line(cli_here):
    """Nothing listens at 127.0.0.1:1: one ``Error:`` line, exit 2 (Ray itself retries for minutes). The bound is
    the issue's (15 s) against a hang of minutes, not a speed measurement: a refused connection answers in
    microseconds."""
    began = time.monotonic()
    code, out, err = cli_here(["run", "--n", "2", "--K", "1", "--updates", "10", "--address", "127.0.0.1:1"])
    assert time.monotonic() - began < 15
    assert code == 2 and out == ""
    assert err == (
        "Error: --address must be 'auto' or the HOST:PORT of a running Ray cluster, got '127.0.0.1:1': nothing "
        "answers there (Connection refused)\n"
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"])
def test_an_address_that_is_not_host_port_is_one_line(cli_here, address):
    code, _, err = cli_here(["run", "--n", "2", "--K", "1", "--address", address])
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"Error: --address must be 'auto' or the HOST:PORT of a running Ray cluster, got {address!r}")


def test_a_second_ctrl_c_is_noted_and_changes_nothing(capsys):
    """The first SIGINT raises KeyboardInterrupt; the ones after it, until the block ends, only say so once; after
    the block Ctrl-C is Python's again."""
    cleaned = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_once():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # not reached: the signal's handler raises at once
        finally:  # the run's final checkpoint and Ray's shutdown: two more Ctrl-Cs change nothing
            for _ in range(2):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
            cleaned.append(True)
    assert cleaned == [True]
    assert capsys.readouterr().err.count("Ctrl-C again: noted;") == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def columns(workers, versions, updates):
    return {"worker": np.array(workers), "version": np.array(versions), "update": np.array(updates)}


def test_full_set_is_the_stretch_every_worker_ran():
    # K = 1, 2 workers, updates 1..10; worker 1's death seen at version 4, its last gradient applied at update 3
    cols = columns([0, 1, 1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 2, 3, 4, 5, 6, 7, 8], list(range(1, 11)))
    assert full_set(cols, [], [], 10) is None
    assert full_set(cols, [(1, 4)], [], 10) == (1, 3)  # not restarted: before the loss only
    # restarted at 4: its new incarnation's first gradient (on version 5 > 4) applied at update 7
    cols = columns([0, 1, 1, 0, 0, 0, 1, 0, 1, 0], [0, 0, 1, 2, 3, 4, 5, 6, 7, 8], list(range(1, 11)))
    assert full_set(cols, [(1, 4)], [(1, 4)], 10) == (7, 10)  # the longer stretch: after its return
    assert full_set(cols, [(1, 4)], [], 10) == (1, 3)  # lost twice, restarted once: before the first loss
    assert full_set(cols, [(1, 4), (1, 8)], [(1, 4)], 10) == (1, 3)
