"""Pacing Graph writes by what Microsoft answers, starting from its documented budgets.

Directory writes are documented at 3,000 per 150 s per app and tenant and 18,000 per 5 min per
tenant across apps, in a token bucket whose refill is not documented; other apps spend the same
tenant's budget, and limits change. So the documented budget is only where the pacer starts: it
learns the write rate Microsoft enforces from its answers (429 with Retry-After, and
`x-ms-throttle-limit-percentage` once 80 % of a budget is used) and follows it both ways.
Conditional access: 1 request per second per tenant, whose 429 carries no Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Mapping

WRITES_PER_APP = (3000, 150.0)
WRITES_PER_TENANT = (18000, 300.0)
CONDITIONAL_ACCESS_INTERVAL = 1.0

# How the learned rate moves. A probe period is a fiftieth of the documented window (3 s at
# Microsoft's 150 s): long enough for a change of pace to show in Microsoft's answers.
PROBE_FRACTION = 1 / 50
SLOW_START = 2.0  # x per quiet probe period until Microsoft first pushes back (10x in ~10 s)
PROBE_UP = 1.01  # x per quiet probe period after that: slow, since it is what risks a 429
BACK_OFF = 0.5  # x on a 429, but never below what Microsoft admitted over the last window
EASE_OFF = 0.9  # x when x-ms-throttle-limit-percentage nears 1.0 (at most once a window)
NEARLY_SPENT = 0.95  # the percentage header at which the pacer slows before a 429
WARNED = 0.8  # Microsoft sends the header from 80 %: no speeding up while it does
FLOOR_FRACTION = 1 / 100  # never slower than this share of the documented rate (0.2/s)
BATCH = 20  # writes in a full $batch: with fewer saved up, writes go at the pace, not a burst


def throttle_percentage(headers: Mapping[str, str]) -> float | None:
    """`x-ms-throttle-limit-percentage` (0.8 to 1.8) as a number, None when absent or garbled."""
    value = next(
        (v for k, v in headers.items() if k.lower() == "x-ms-throttle-limit-percentage"), None
    )
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class WritePacer:
    """One per tenant: writes go out at a learned rate with a learned burst, and wait out any
    pause Microsoft asked for.

    The rate starts at the tightest documented budget (20 writes/s) and the burst at what the
    documented window allows at once (rate x window: 3,000). While writes are held back by the
    pace and Microsoft sends no warning, the rate grows (doubling each probe period until the
    first push-back, then 5 % a period); a 429 halves it, but never below the writes Microsoft
    admitted over the last documented window (that much demonstrably works); the percentage
    header at 95 % eases it off by a tenth. A 429 also empties the burst: Microsoft's budget is
    spent, so what follows the pause goes at the rate, not all at once.
    """

    def __init__(
        self,
        budgets: tuple[tuple[int, float], ...] = (WRITES_PER_APP, WRITES_PER_TENANT),
        *,
        ca_interval: float = CONDITIONAL_ACCESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.ca_interval = ca_interval
        tightest = min(budgets, key=lambda b: b[0] / b[1], default=None)
        self.documented = tightest[0] / tightest[1] if tightest else float("inf")
        self.window = tightest[1] if tightest else 0.0  # the documented window, seconds
        self.probe = self.window * PROBE_FRACTION
        self._rate = self.documented  # learned writes per second
        self._tokens = self.burst()
        self._at = clock()
        self._paused_until = 0.0
        self._last_ca = -1e18
        self._lock = asyncio.Lock()
        self._admitted: collections.deque[tuple[float, int]] = collections.deque()
        self._admitted_total = 0  # over the last window
        self._admitted_sum = 0  # ever
        self._episode: tuple[float, int] | None = None  # (start, _admitted_sum) of push-back
        self._last_429 = -1e18
        self._period_start = clock()
        self._held = False  # a write waited for the pace in this probe period
        self._warned = False  # Microsoft warned or throttled in this probe period
        self._pushed_back = False  # Microsoft has throttled or warned at least once
        self._eased_at = -1e18
        self.waited = 0.0  # seconds spent waiting for budget, for progress and benchmarks
        self.throttled_at: float | None = None  # when the last 429 came
        self.admitted_at: float | None = None  # when Microsoft last accepted a write

    # -- what the core and the metrics read ------------------------------------------------------

    def learned_rate(self) -> float:
        """The write rate (writes/s) the pacer has learned Microsoft allows, pauses aside."""
        return self._rate

    def rate(self) -> float:
        """Writes per second the pacer lets out now (for /metrics and the logs): none while a
        pause Microsoft asked for holds, else the learned rate."""
        if self._paused_until > self.clock():
            return 0.0
        return self._rate

    def burst(self) -> float:
        """Writes that may go at once after a quiet spell: the learned rate over the window."""
        if self._rate == float("inf"):
            return float("inf")
        return max(self._rate * self.window, 20.0)

    def eta(self, writes: int) -> float:
        """Seconds `writes` more writes should take at the learned pace (for progress)."""
        if writes <= 0 or self._rate == float("inf"):
            return 0.0
        self._refill()
        paused = max(self._paused_until - self.clock(), 0.0)
        return paused + max(writes - self._tokens, 0.0) / self._rate

    # -- what Microsoft answered ---------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Microsoft said 429: no write goes out before `seconds` from now."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def throttled(self, retry_after: float) -> None:
        """A write was answered 429: pause for Retry-After, empty the burst, halve the rate,
        but not below what Microsoft admitted while it was throttling (that much works).
        One cut per Retry-After: the other 429s of the same $batch are the same push-back."""
        now = self.clock()
        if self._episode is None or now - self._last_429 > self.window:
            self._episode = (now, self._admitted_sum)  # a new run of push-back starts
        self._last_429 = now
        if self._paused_until <= now and self._rate != float("inf"):
            self._rate = min(self._rate, max(self._rate * BACK_OFF, self._saturated_rate()))
        self._warned = self._pushed_back = True
        self.throttled_at = now
        self.pause(retry_after)
        # Microsoft's budget is spent now; what the pause saves up at the learned rate may go
        # at once after it (a long Retry-After means the budget comes back in a lump).
        self._refill()
        self._tokens = 0.0

    def _saturated_rate(self) -> float:
        """What Microsoft admitted per second since this run of 429s began (the rate it enforces
        while we push against it), or over the last window while that run is too short to tell."""
        floor = self.documented * FLOOR_FRACTION
        assert self._episode is not None
        began, total = self._episode
        span = self.clock() - began
        if span >= self.probe and span > 0:
            return max(floor, (self._admitted_sum - total) / span)
        return max(floor, self.admitted_rate())

    def admitted(self, writes: int) -> None:
        """Microsoft accepted `writes` writes now."""
        if writes <= 0:
            return
        now = self.clock()
        self._admitted.append((now, writes))
        self._admitted_total += writes
        self._admitted_sum += writes
        self.admitted_at = now

    def admitted_rate(self) -> float:
        """Writes per second Microsoft accepted over the last documented window."""
        if not self.window:
            return 0.0
        horizon = self.clock() - self.window
        while self._admitted and self._admitted[0][0] <= horizon:
            self._admitted_total -= self._admitted.popleft()[1]
        return self._admitted_total / self.window

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read `x-ms-throttle-limit-percentage`, which Microsoft sends once 80 % of a budget is
        used (0.8 to 1.8): no speeding up while it comes; near 1.0 ease off before a 429."""
        usage = throttle_percentage(headers)
        if usage is None or usage < WARNED:
            return
        self._warned = self._pushed_back = True
        now = self.clock()
        self._refill()
        bursting = self._tokens >= BATCH
        if usage >= NEARLY_SPENT and not bursting and now - self._eased_at >= self.window:
            self._eased_at = now
            floor = max(self.documented * FLOOR_FRACTION, self.admitted_rate())
            self._rate = min(self._rate, max(self._rate * EASE_OFF, floor))

    # -- pacing --------------------------------------------------------------------------------

    def _refill(self) -> None:
        now = self.clock()
        if self._rate == float("inf"):
            self._tokens = float("inf")
        elif now > self._at:
            self._tokens = min(self.burst(), self._tokens + (now - self._at) * self._rate)
            self._at = now

    def _probe(self) -> None:
        """At the end of each probe period, speed up if the pace held writes back and Microsoft
        said nothing."""
        now = self.clock()
        if not self.probe or now - self._period_start < self.probe:
            return
        if self._last_429 < now - self.window and self._eased_at < now - self.window:
            self._pushed_back = False  # a whole window without a 429 or a cut: probe fast again
        if self._held and not self._warned:
            self._refill()
            self._rate *= PROBE_UP if self._pushed_back else SLOW_START
        self._period_start = now
        self._held = self._warned = False

    async def writes(self, units: int) -> None:
        """Wait until `units` writes may go out now, and count them as sent."""
        if units <= 0:
            return
        async with self._lock:
            while True:
                self._probe()
                self._refill()
                need = min(float(units), self.burst())
                wait = max(
                    self._paused_until - self.clock(),
                    (need - self._tokens) / self._rate if self._tokens < need else 0.0,
                )
                if wait <= 1e-6:  # a microsecond: below what the clock can add to itself
                    break
                if self._paused_until <= self.clock():
                    self._held = True
                self.waited += wait
                await self.sleep(wait)
            self._tokens -= units

    async def conditional_access(self) -> None:
        """Space conditional access requests `ca_interval` apart (their 429 has no Retry-After)."""
        async with self._lock:
            wait = self._last_ca + self.ca_interval - self.clock()
            if wait > 0:
                self.waited += wait
                await self.sleep(wait)
            self._last_ca = self.clock()
