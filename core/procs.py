"""Worker processes tied to the process that started them (a study's trials, a training comparison's runs).

* :func:`pdeathsig`: ``prctl`` bound in the parent (Linux), or None elsewhere.
* :func:`child_setup`: a ``preexec_fn`` for :class:`subprocess.Popen` that asks the kernel to send the
  child ``sig`` when the driver dies in any way (``PR_SET_PDEATHSIG``, including ``kill -9``), and
  exits at once if the driver is already gone. A study's trials take SIGKILL (a trial reruns on
  resume); a training run takes SIGINT (it finishes its update and writes its checkpoint).
* :func:`signal_group`: a signal to a child started with ``process_group=0`` (Ctrl-C in a terminal
  reaches only the driver; the driver decides what its workers get, and when).

Design: docs/reliability.md §4.

May import: the standard library only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from typing import Callable

_PR_SET_PDEATHSIG = 1


def pdeathsig():
    """``prctl`` bound in the parent (Linux), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


def child_setup(prctl, driver_pid: int, sig: int = signal.SIGKILL) -> Callable[[], None]:
    """preexec_fn: receive ``sig`` when the driver dies; if it is already gone, exit now."""
    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != driver_pid:
            os._exit(1)
    return setup


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group of ``proc`` (started with ``process_group=0``); a group
    already gone is not an error."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
