"""What the simulated Microsoft does to slow a caller down: Graph's throttling budgets (sliding
windows on a monotonic clock), injected faults, and the write gate tests use to freeze a run.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


def format_seconds(seconds: float) -> str:
    """Retry-After as Graph may send it: whole seconds, or a fraction when under a few seconds."""
    seconds = max(seconds, 0.001)
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


class SlidingWindow:
    """A budget of `limit` units per `window` seconds, spent by accepted requests only."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._spent: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    def _expire(self, now: float, window: float) -> None:
        while self._spent and self._spent[0][0] <= now - window:
            self._total -= self._spent.popleft()[1]

    def wait_for(self, cost: int, limit: int, window: float) -> float | None:
        """None if `cost` fits in the budget now, else the seconds until it would."""
        now = self._clock()
        self._expire(now, window)
        if self._total + cost <= limit:
            return None
        excess = self._total + cost - limit
        freed = 0
        for when, units in self._spent:
            freed += units
            if freed >= excess:
                return when + window - now
        return window  # a single request costlier than the whole budget

    def spend(self, cost: int) -> None:
        self._spent.append((self._clock(), cost))
        self._total += cost

    def usage(self, limit: int, window: float) -> float:
        self._expire(self._clock(), window)
        return self._total / limit if limit else 1.0


class Interval:
    """At most one accepted request per `interval` seconds (conditional access: 1 per second)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last: float | None = None

    def take(self, interval: float) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < interval:
            return False
        self._last = now
        return True


@dataclass
class FaultRule:
    """One injected fault, consumed by the next `count` Graph responses it matches."""

    kind: str  # "status" or "drop"
    status: int
    count: int
    path_prefix: str
    method: str | None
    retry_after: float | None


class Faults:
    """Inject failures into Graph responses: `sim.faults.throttle(3, path_prefix="/v1.0/users")`.

    Prefixes match the versioned path ("/v1.0/users/abc", "/v1.0/$batch"); a fault matching a
    $batch sub-request becomes that sub-response; drops apply to whole HTTP requests only.
    """

    def __init__(self, default_retry_after: float) -> None:
        self.default_retry_after = default_retry_after
        self.rules: list[FaultRule] = []

    def throttle(
        self,
        count: int = 1,
        *,
        path_prefix: str = "",
        method: str | None = None,
        retry_after: float | Literal["default"] | None = "default",
    ) -> None:
        """The next `count` matching responses are 429; `retry_after=None` sends no Retry-After
        (default: the simulator's `retry_after`)."""
        seconds = self.default_retry_after if retry_after == "default" else retry_after
        self.rules.append(FaultRule("status", 429, count, path_prefix, method, seconds))

    def error(
        self, status: int = 503, count: int = 1, *, path_prefix: str = "", method: str | None = None
    ) -> None:
        """The next `count` matching responses fail with `status` (500, 502, 503, 504...)."""
        self.rules.append(FaultRule("status", status, count, path_prefix, method, None))

    def drop(self, count: int = 1, *, path_prefix: str = "", method: str | None = None) -> None:
        """The next `count` matching HTTP requests have their connection closed, no response."""
        self.rules.append(FaultRule("drop", 0, count, path_prefix, method, None))

    def clear(self) -> None:
        self.rules.clear()

    def take(self, method: str, path: str, *, in_batch: bool) -> FaultRule | None:
        for rule in self.rules:
            if in_batch and rule.kind == "drop":
                continue
            if rule.method is not None and rule.method.upper() != method.upper():
                continue
            if path.startswith(rule.path_prefix):
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
                return rule
        return None


class WriteGate:
    """Lets `after` more successful destructive writes through, then holds the rest."""

    def __init__(self) -> None:
        self._remaining: int | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._someone_waiting = asyncio.Event()
        self.waiting = 0

    def hold(self, after: int) -> None:
        self._remaining = max(after, 0)
        if self._remaining == 0:
            self._open.clear()

    def release(self) -> None:
        self._remaining = None
        self._open.set()

    async def admit(self) -> None:
        """Wait, if writes are held, until release()."""
        if self._remaining is not None and self._remaining <= 0:
            self._open.clear()
        if self._open.is_set():
            return
        self.waiting += 1
        self._someone_waiting.set()
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
            if not self.waiting:
                self._someone_waiting.clear()

    def succeeded(self) -> None:
        if self._remaining is not None:
            self._remaining -= 1

    async def wait_until_held(self) -> None:
        await self._someone_waiting.wait()
