"""Waiting with a bound without losing a cancellation.

Python 3.11's `asyncio.wait_for` returns the inner result when the outer task is cancelled in the same
loop iteration in which the inner awaitable finishes: the cancellation is swallowed. A loop that waits
for its wake-up event that way (`wait_for(event.wait(), poll)`) and is cancelled just as a commit wakes
it goes on running, so a shutdown (or a test's teardown) waits for it forever. `asyncio.timeout` counts
cancellations and re-raises them, and needs no extra task per wait; these helpers use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds have passed; True when it was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, raising `TimeoutError` after `seconds` (and a cancellation always)."""
    async with asyncio.timeout(seconds):
        return await awaitable
