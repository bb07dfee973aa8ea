"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for Popen: on Linux the child gets SIGTERM when its parent dies, even by SIGKILL,
    so a crashed launcher or test run leaves no orphan. (The signal follows the forking thread, so
    start children from a thread that lives as long as they should.)"""
    return _die_with_parent if sys.platform == "linux" else None
