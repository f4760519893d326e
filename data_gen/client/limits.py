"""Rate limits: a token bucket per limit (requests or tokens per minute) and the rotation over a role's endpoints."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Awaitable, Callable


class TokenBucket:
    """Refills at ``per_minute / 60`` per second and holds at most two seconds' worth (the burst).

    Every take is charged in full, also one larger than the burst: it waits for a full bucket, then leaves the
    balance negative, and the takes after it wait until that debt is refilled. So in any window of T seconds
    the bucket admits at most burst + rate x T plus one request, whatever the sizes of the requests.
    ``clock`` and ``sleep`` are injectable so a test can run the limiter on a fake clock.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * 2.0)
        self.tokens = self.capacity
        self.charged = 0.0  # everything admitted so far, in full
        self._clock = clock
        self._sleep = sleep
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        needed = min(amount, self.capacity)  # a request above the burst waits for a full bucket, no longer
        async with self._lock:
            while True:
                now = self._clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= needed:
                    self.tokens -= amount
                    self.charged += amount
                    return
                await self._sleep(max(1e-3, (needed - self.tokens) / self.rate))


class EndpointRotation:
    """Round-robin over a role's endpoints, passing over one that asked (with a 429) to be left alone a while."""

    def __init__(self, count: int):
        self._next = itertools.cycle(range(count))
        self._cooldown_until = [0.0] * count

    def pick(self) -> int:
        """The next endpoint not cooling down; when all are, the one whose cooldown ends first."""
        now = time.monotonic()
        for _ in range(len(self._cooldown_until)):
            i = next(self._next)
            if self._cooldown_until[i] <= now:
                return i
        return min(range(len(self._cooldown_until)), key=lambda j: self._cooldown_until[j])

    def cool_down(self, i: int, seconds: float) -> None:
        self._cooldown_until[i] = time.monotonic() + seconds
