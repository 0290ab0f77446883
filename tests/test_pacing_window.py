"""Against a sliding window the pacer learns it from Retry-After and fills it as it empties."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from bot.microsoft.pacing import WritePacer
from simulator.microsoft.graph_throttle import Budget, make_budget
from tests.test_pacing import FakeTime

UNEVEN = (0.002, 0.004, 0.008, 0.016)  # $batch round trips in turn: 2,667 writes/s on average


async def delete(
    pacer: WritePacer, budget: Budget, t: FakeTime, n: int, trips: Sequence[float]
) -> tuple[int, int, float]:
    """Send n writes in batches of 20 as Graph.batch does, each $batch taking the next round
    trip of `trips` (its sub-requests processed one after another); returns (sub-requests sent,
    429s, seconds from the first write admitted to the last)."""
    sent = throttled = 0
    trip = itertools.cycle(trips)
    first = last = None
    for _ in range(0, n, 20):
        pending = 20
        while pending:
            await pacer.writes(pending)
            step = next(trip) / pending
            ok, wait = 0, 0.0
            for _ in range(pending):
                t.now += step
                sent += 1
                retry = budget.wait_for(1)
                if retry is None:
                    budget.spend(1)
                    ok += 1
                    first = t.now if first is None else first
                    last = t.now
                else:
                    throttled += 1
                    wait = max(wait, retry)
            pacer.admitted(ok)
            if budget.usage() > 0.8:
                pacer.observe({"x-ms-throttle-limit-percentage": f"{budget.usage():.2f}"})
            pending -= ok
            if pending:
                pacer.throttled(wait)
                await t.sleep(wait)
    assert first is not None and last is not None
    return sent, throttled, last - first


async def full_window(t: FakeTime) -> WritePacer:
    """A pacer that sent the documented 3,000 writes at t=0, all admitted, and whose next
    $batch, a second later, was answered 429 with Retry-After 149 s (a full sliding window)."""
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    for _ in range(150):
        await pacer.writes(20)
        pacer.admitted(20)
    await pacer.writes(20)
    assert t.now == 1.0
    pacer.admitted(0)
    pacer.throttled(149.0)
    return pacer


async def test_a_long_retry_after_learns_the_window_and_cuts_no_rate() -> None:
    """A 429 whose Retry-After is most of the window cuts no rate: the pacer caps its window at
    the 3,000 Microsoft admitted in it, and all 3,000 go again the moment the first leave it."""
    t = FakeTime()
    pacer = await full_window(t)
    assert pacer.window_cap() == 3000 and pacer.learned_rate() == 20.0
    for _ in range(150):
        await pacer.writes(20)
        pacer.admitted(20)
    assert t.now == 150.0  # the whole window came back at once, and went at once
    await pacer.writes(20)
    assert t.now == 300.0  # the next room: when those leave the window


async def test_a_short_retry_after_still_cuts_the_rate() -> None:
    """A 429 whose Retry-After is what one write takes to refill is a bucket's: the rate is
    halved (never below what was admitted) and no window is assumed."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    pacer.throttled(0.5)
    assert pacer.window_cap() is None and pacer.learned_rate() == 10.0


async def test_writes_awaiting_an_answer_count_against_the_window() -> None:
    """Once the window is learned, writes sent but not yet answered take room in it; one left
    unanswered for a tenth of the window is taken as lost."""
    t = FakeTime()
    pacer = await full_window(t)
    for _ in range(150):
        await pacer.writes(20)  # no answer comes
    assert t.now == 150.0
    await pacer.writes(20)
    assert 165.0 <= t.now <= 165.5


async def test_the_limit_header_does_not_slow_a_full_window() -> None:
    """A window the pacer fills is meant to be nearly spent: the percentage header at 1.0
    leaves its cap alone."""
    t = FakeTime()
    pacer = await full_window(t)
    pacer.observe({"x-ms-throttle-limit-percentage": "1.00"})
    assert pacer.window_cap() == 3000 and pacer.learned_rate() == 20.0


async def test_a_sliding_window_with_uneven_round_trips() -> None:
    """Against the documented budget as a sliding window (100x compressed: 3,000 per 1.5 s) and
    round trips of 2-16 ms, 20,000 writes take within 1.10x the least time (6 windows) and only
    the first window's edge is throttled (one $batch)."""
    t = FakeTime()
    pacer = WritePacer(((3000, 1.5),), clock=t.clock, sleep=t.sleep)
    budget = make_budget("window", 3000, 1.5, t.clock)
    sent, throttled, elapsed = await delete(pacer, budget, t, 20000, UNEVEN)
    assert elapsed <= 1.10 * 9.0
    assert throttled <= 20 and sent == 20000 + throttled


async def test_a_token_bucket_with_uneven_round_trips_stays_a_bucket() -> None:
    """Against the documented budget as a token bucket with the same uneven round trips, the
    pacer is never throttled, never assumes a window, and is within 1.10x the least time."""
    t = FakeTime()
    pacer = WritePacer(((3000, 1.5),), clock=t.clock, sleep=t.sleep)
    budget = make_budget("bucket", 3000, 1.5, t.clock)
    sent, throttled, elapsed = await delete(pacer, budget, t, 20000, UNEVEN)
    assert elapsed <= 1.10 * 8.5 and throttled == 0 and sent == 20000
    assert pacer.window_cap() is None
