"""A loop cancelled in the very iteration its wake-up arrives still ends (the bounded waits of the relay,
the dispatcher, the observers, the audit writer and the streams)."""

from __future__ import annotations

import asyncio

import pytest

from icep.platform.aio import wait_event, within


async def loop_forever(wake: asyncio.Event) -> None:
    while True:
        await wait_event(wake, 60.0)
        wake.clear()


@pytest.mark.parametrize("turns", range(4))
async def test_a_cancel_arriving_with_the_wake_up_ends_the_loop(turns: int) -> None:
    wake = asyncio.Event()
    task = asyncio.create_task(loop_forever(wake))
    for _ in range(3):
        await asyncio.sleep(0)  # the loop is waiting
    wake.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5.0)
    assert task.cancelled()


async def test_wait_event_answers_whether_the_event_was_set() -> None:
    wake = asyncio.Event()
    assert await wait_event(wake, 0.01) is False
    asyncio.get_running_loop().call_soon(wake.set)
    assert await wait_event(wake, 5.0) is True


async def test_within_returns_the_result_or_times_out() -> None:
    assert await within(5.0, asyncio.sleep(0, result=7)) == 7
    with pytest.raises(TimeoutError):
        await within(0.01, asyncio.Event().wait())
