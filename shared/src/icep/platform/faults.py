"""Named crash points for recovery tests.

A test starts a service with `ICEP_FAULTS=relay.after_publish` (for example); when the code reaches that
point the process ends at once, as a power cut or `kill -9` would, so the test can prove that a restart
loses nothing and does nothing twice. With the variable unset these calls cost one set lookup. A failure
point (`fail`) raises instead, so a handler can be made to fail (and, after a restart without it, heal).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("icep.faults")
_armed: frozenset[str] = frozenset()


def arm(names: str) -> None:
    global _armed
    _armed = frozenset(n.strip() for n in names.split(",") if n.strip())


def point(name: str) -> None:
    if name in _armed:
        log.warning("fault point %s reached: exiting the process", name)
        logging.shutdown()
        os._exit(86)


class InjectedFault(RuntimeError):
    """What an armed failure point raises: a bug, as far as the code around it can tell."""


def fail(name: str) -> None:
    """A failure point: with `name` armed (`ICEP_FAULTS=consumer.fail:<event type>`) the code here raises,
    as a handler bug would; the process lives on. Tests of dead letters and their redrive use it."""
    if name in _armed:
        raise InjectedFault(f"fault point {name} armed")
