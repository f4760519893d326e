"""The two asyncio rules every request follows: a total deadline, and no task left behind."""

from __future__ import annotations

import asyncio
from typing import Awaitable


async def within(seconds: float | None, awaitable: Awaitable):
    """``awaitable`` under a total deadline: httpx's timeout is per read, and a reply dripped slowly resets it."""
    if not seconds:
        return await awaitable
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


async def cancel_and_wait(tasks: list) -> None:
    """Cancel the unfinished tasks, wait for all of them, and mark every outcome as seen.

    Whatever a task raised is either propagated by the caller already or moot; fetching it here keeps asyncio
    from reporting "Task exception was never retrieved" when the tasks are collected.
    """
    for task in tasks:
        if not task.done():
            task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()
