"""Pacing Graph writes by what Microsoft answers, starting from its documented budgets.

Directory writes are documented at 3,000 per 150 s per app and tenant and 18,000 per 5 min per
tenant across apps, in a token bucket whose refill is not documented; other apps spend the same
tenant's budget, and limits change. So the documented budget is only where the pacer starts: it
learns the write rate Microsoft enforces from its answers (429 with Retry-After, and
`x-ms-throttle-limit-percentage` once 80 % of a budget is used) and follows it both ways.
How a budget comes back is not documented either: a token bucket refills it continuously, a
sliding window gives back what it admitted one window earlier, in a lump. The pacer paces like
a bucket until Microsoft shows it counts over a window (a 429 whose Retry-After is a good part of
the window, not the time one write takes to refill), then it sends each write the moment one it
sent a window earlier has left the window.
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
LUMP = 1 / 10  # a Retry-After this share of the window or longer: Microsoft counts over a window


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

    Against a sliding window that bucket pace is wrong both ways: after its burst the pacer keeps
    sending at the rate into a window that admits nothing until the burst leaves it (429s), and
    halving the rate for them leaves the lumps the window gives back unused. So a 429 whose
    Retry-After is a tenth of the window or more (a bucket's says when one write refills) turns
    the pacer into a window of its own: its cap is what Microsoft admitted over the last window
    (counted by when each write was sent, which is before Microsoft counted it), and a write goes
    once the writes in the window (counted by when Microsoft's answer came, which is after), plus
    those still awaiting an answer, leave room for it. No rate is cut for such a 429: Retry-After
    says when the capacity comes back, and all of it does.
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
        self._cap: float | None = None  # writes per window, once Microsoft showed it counts so
        self._tokens = self.burst()
        self._at = clock()
        self._paused_until = 0.0
        self._last_ca = -1e18
        self._lock = asyncio.Lock()
        # (answered at, sent at, writes) admitted over the last window; writes awaiting an answer
        self._admitted: collections.deque[tuple[float, float, int]] = collections.deque()
        self._inflight: collections.deque[tuple[float, int]] = collections.deque()
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
        return self._rate if self._cap is None else self._cap / self.window

    def window_cap(self) -> float | None:
        """Writes per documented window once Microsoft showed a sliding window, else None."""
        return self._cap

    def rate(self) -> float:
        """Writes per second the pacer lets out now (for /metrics and the logs): none while a
        pause Microsoft asked for holds, else the learned rate."""
        if self._paused_until > self.clock():
            return 0.0
        return self.learned_rate()

    def burst(self) -> float:
        """Writes that may go at once after a quiet spell: the learned rate over the window."""
        if self._cap is not None:
            return self._cap
        if self._rate == float("inf"):
            return float("inf")
        return max(self._rate * self.window, 20.0)

    def eta(self, writes: int) -> float:
        """Seconds `writes` more writes should take at the learned pace (for progress)."""
        if writes <= 0 or self._rate == float("inf"):
            return 0.0
        paused = max(self._paused_until - self.clock(), 0.0)
        if self._cap is not None:
            room = max(self._cap - self._in_window(), 0.0)
            return paused + max(writes - room, 0.0) / self.learned_rate()
        self._refill()
        return paused + max(writes - self._tokens, 0.0) / self._rate

    # -- what Microsoft answered ---------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Microsoft said 429: no write goes out before `seconds` from now."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def throttled(self, retry_after: float) -> None:
        """A write was answered 429: pause for Retry-After, empty the burst, halve the rate,
        but not below what Microsoft admitted while it was throttling (that much works).
        One cut per Retry-After: the other 429s of the same $batch are the same push-back.
        A long Retry-After (or any once the pacer keeps a window) cuts no rate: it caps the
        writes per window at what Microsoft admitted over the last one."""
        now = self.clock()
        if self._episode is None or now - self._last_429 > self.window:
            self._episode = (now, self._admitted_sum)  # a new run of push-back starts
        self._last_429 = now
        if self._rate == float("inf"):
            pass
        elif self._cap is not None or retry_after >= self.window * LUMP:
            fits = max(self._sent_in_window(), self.documented * FLOOR_FRACTION * self.window)
            self._cap = fits if self._cap is None else min(self._cap, fits)
        elif self._paused_until <= now:
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
        """Microsoft answered the oldest writes awaiting an answer and accepted `writes` of them."""
        now = self.clock()
        sent = self._inflight.popleft()[0] if self._inflight else now
        if writes <= 0:
            return
        self._admitted.append((now, sent, writes))
        self._admitted_total += writes
        self._admitted_sum += writes
        self.admitted_at = now

    def admitted_rate(self) -> float:
        """Writes per second Microsoft accepted over the last documented window."""
        if not self.window:
            return 0.0
        horizon = self.clock() - self.window
        while self._admitted and self._admitted[0][0] <= horizon:
            self._admitted_total -= self._admitted.popleft()[2]
        return self._admitted_total / self.window

    def _sent_in_window(self) -> float:
        """Writes admitted that were sent within the last window: no more than Microsoft counts
        in it now (each was sent before Microsoft counted it)."""
        horizon = self.clock() - self.window
        self.admitted_rate()
        return float(sum(n for _, sent, n in self._admitted if sent > horizon))

    def _in_window(self) -> float:
        """Writes admitted whose answer came within the last window, plus those awaiting an
        answer: no fewer than Microsoft counts in it (each was counted before its answer came).
        A write unanswered for a tenth of the window is taken as lost."""
        self.admitted_rate()
        lost = self.clock() - self.window * LUMP
        while self._inflight and self._inflight[0][0] <= lost:
            self._inflight.popleft()
        return self._admitted_total + sum(n for _, n in self._inflight)

    def _window_wait(self, need: float) -> float:
        """Seconds until `need` more writes fit in the pacer's window (0 if they fit now)."""
        assert self._cap is not None
        excess = self._in_window() + need - self._cap
        if excess <= 0:
            return 0.0
        freed, now = 0, self.clock()
        for answered, _, n in self._admitted:
            freed += n
            if freed >= excess:
                return max(answered + self.window - now, 1e-6)
        # only writes awaiting an answer hold it: look again once one may have come
        return self.window * PROBE_FRACTION / 10

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read `x-ms-throttle-limit-percentage`, which Microsoft sends once 80 % of a budget is
        used (0.8 to 1.8): no speeding up while it comes; near 1.0 ease off before a 429."""
        usage = throttle_percentage(headers)
        if usage is None or usage < WARNED:
            return
        self._warned = self._pushed_back = True
        if self._cap is not None:
            return  # a window the pacer fills is meant to be nearly spent
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
        if self._cap is not None:
            answered = self.admitted_at is not None and self.admitted_at >= self._period_start
            if self._held and not self._warned and answered:
                self._cap *= PROBE_UP  # Microsoft admitted more without a warning
        elif self._held and not self._warned:
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
                if self._cap is not None:
                    pace = self._window_wait(need)
                else:
                    pace = (need - self._tokens) / self._rate if self._tokens < need else 0.0
                wait = max(self._paused_until - self.clock(), pace)
                if wait <= 1e-6 and (self._cap is None or pace == 0.0):
                    break  # a microsecond: below what the clock can add to itself
                if self._paused_until <= self.clock():
                    self._held = True
                self.waited += wait
                await self.sleep(wait)
            self._tokens -= units
            self._inflight.append((self.clock(), units))

    async def conditional_access(self) -> None:
        """Space conditional access requests `ca_interval` apart (their 429 has no Retry-After)."""
        async with self._lock:
            wait = self._last_ca + self.ca_interval - self.clock()
            if wait > 0:
                self.waited += wait
                await self.sleep(wait)
            self._last_ca = self.clock()
