"""Pacing Graph writes to Microsoft's documented budgets instead of running into 429 storms.

Directory writes: 3,000 per 150 s per app and tenant (and 18,000 per 5 min per tenant across
apps); conditional access: 1 request per second per tenant, whose 429 carries no Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

WRITES_PER_APP = (3000, 150.0)
WRITES_PER_TENANT = (18000, 300.0)
CONDITIONAL_ACCESS_INTERVAL = 1.0


class WindowBudget:
    """A sliding-window budget: at most `limit` units in any `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._spent: collections.deque[tuple[float, int]] = collections.deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._used -= self._spent.popleft()[1]

    def wait_for(self, units: int) -> float:
        """Seconds until `units` more fit (0 when they fit now)."""
        now = self.clock()
        self._expire(now)
        excess = self._used + units - self.limit
        if excess <= 0:
            return 0.0
        freed = 0
        for at, spent in self._spent:
            freed += spent
            if freed >= excess:
                return at + self.window - now
        return self.window

    def spend(self, units: int) -> None:
        self._spent.append((self.clock(), units))
        self._used += units


class WritePacer:
    """One per tenant: every write waits for room in each budget and for any 429 pause."""

    def __init__(
        self,
        budgets: tuple[tuple[int, float], ...] = (WRITES_PER_APP, WRITES_PER_TENANT),
        *,
        ca_interval: float = CONDITIONAL_ACCESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.budgets = [WindowBudget(limit, window, clock) for limit, window in budgets]
        self.ca_interval = ca_interval
        self.clock = clock
        self.sleep = sleep
        self._paused_until = 0.0
        self._last_ca = -1e18
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting for budget, for progress and benchmarks

    def pause(self, seconds: float) -> None:
        """Microsoft said 429: no write goes out before `seconds` from now."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def observe(self, headers: dict[str, str]) -> None:
        """Slow down before a 429 when Microsoft says the budget is nearly spent.

        `x-ms-throttle-limit-percentage` (0.8 to 1.8) appears once 80 % of the budget is used;
        near 1.0 we leave one batch's worth of budget time between writes.
        """
        value = next(
            (v for k, v in headers.items() if k.lower() == "x-ms-throttle-limit-percentage"), None
        )
        try:
            usage = float(value) if value is not None else 0.0
        except ValueError:
            return
        if usage >= 0.95 and self.budgets:
            first = self.budgets[0]
            self.pause(20 * first.window / first.limit)

    def rate(self) -> float:
        """Writes per second the pacer lets out now (for /metrics and the logs): none while a
        pause Microsoft asked for holds, else the tightest budget's limit over its window."""
        if self._paused_until > self.clock():
            return 0.0
        return min((b.limit / b.window for b in self.budgets), default=float("inf"))

    async def writes(self, units: int) -> None:
        """Wait until `units` writes may go out now, and count them as spent."""
        if units <= 0:
            return
        async with self._lock:
            while True:
                wait = max(
                    [self._paused_until - self.clock()]
                    + [b.wait_for(min(units, b.limit)) for b in self.budgets]
                )
                if wait <= 0:
                    break
                self.waited += wait
                await self.sleep(wait)
            for budget in self.budgets:
                budget.spend(units)

    async def conditional_access(self) -> None:
        """Space conditional access requests `ca_interval` apart (their 429 has no Retry-After)."""
        async with self._lock:
            wait = self._last_ca + self.ca_interval - self.clock()
            if wait > 0:
                self.waited += wait
                await self.sleep(wait)
            self._last_ca = self.clock()
