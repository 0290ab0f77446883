"""The write pacer learns Microsoft's enforced budget from its answers, on an injected clock."""

from __future__ import annotations

from bot.microsoft.pacing import WritePacer
from bot.phases import remaining_time
from simulator.microsoft.graph_throttle import Budget, make_budget


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def delete(pacer: WritePacer, budget: Budget, t: FakeTime, n: int) -> tuple[int, int]:
    """Send n writes in batches of 20 against `budget` as Graph.batch does (429s wait for the
    longest Retry-After and go again); returns (sub-requests sent, 429s)."""
    sent = throttled = 0
    for _ in range(0, n, 20):
        pending = 20
        while pending:
            await pacer.writes(pending)
            t.now += 0.004  # the round trip of a $batch
            ok, wait, usage = 0, 0.0, 0.0
            for _ in range(pending):
                sent += 1
                retry = budget.wait_for(1)
                if retry is None:
                    budget.spend(1)
                    ok += 1
                    usage = budget.usage()
                else:
                    throttled += 1
                    wait = max(wait, retry)
            pacer.admitted(ok)
            if usage > 0.8:
                pacer.observe({"x-ms-throttle-limit-percentage": f"{usage:.2f}"})
            pending -= ok
            if pending:
                pacer.throttled(wait)
                await t.sleep(wait)
    return sent, throttled


async def test_documented_budget_is_where_it_starts() -> None:
    """Fresh, the pacer lets the documented 3,000 writes go at once, then 20 writes/s."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    assert pacer.learned_rate() == 20.0
    for _ in range(150):
        await pacer.writes(20)
    assert t.now == 0.0
    await pacer.writes(20)
    assert t.now == 1.0


async def test_a_429_pauses_every_write_and_halves_the_rate() -> None:
    """A 429 with Retry-After 2.5 holds the next write 2.5 s, halves the learned rate and
    empties the burst; the other 429s of the same pause do not cut it again."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    pacer.throttled(2.5)
    pacer.throttled(2.5)
    assert pacer.learned_rate() == 10.0 and pacer.rate() == 0.0
    await pacer.writes(20)
    assert t.now == 2.5  # 25 writes saved up at 10/s during the pause
    await pacer.writes(20)
    assert t.now == 4.0


async def test_a_429_never_cuts_below_what_microsoft_admitted() -> None:
    """After 3,000 writes admitted in the window, a 429 leaves the rate at 20/s (it works)."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    pacer.admitted(3000)
    pacer.throttled(1.0)
    assert pacer.learned_rate() == 20.0


async def test_a_tenth_of_the_budget_is_learned() -> None:
    """Against a token bucket a tenth of the documented one, 6,000 writes all go through, the
    learned rate settles near 2/s, under 3 % are throttled, within 1.25x the least time."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    sent, throttled = await delete(pacer, make_budget("bucket", 300, 150.0, t.clock), t, 6000)
    least = (6000 - 300) / 2.0
    assert t.now <= 1.25 * least
    assert throttled / sent < 0.03
    assert 1.6 <= pacer.learned_rate() <= 2.6


async def test_a_token_bucket_is_faster_than_a_sliding_window_model() -> None:
    """Against the documented budget as a token bucket, 4,200 deletes take about the 60 s the
    bucket allows, not the 150 s a sliding-window pacer waits, with no 429."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    sent, throttled = await delete(pacer, make_budget("bucket", 3000, 150.0, t.clock), t, 4200)
    assert t.now <= 1.10 * 60.0
    assert throttled == 0 and sent == 4200


async def test_ten_times_the_budget_is_found() -> None:
    """Against ten times the documented budget (a token bucket), the pacer speeds up past the
    documented 20/s and stays within 1.25x the least time, under 3 % throttled."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    budget = make_budget("bucket", 30000, 150.0, t.clock)
    sent, throttled = await delete(pacer, budget, t, 60000)
    assert t.now <= 1.25 * (60000 - 30000) / 200.0
    assert throttled / sent < 0.03
    assert pacer.learned_rate() > 100.0


async def test_a_sliding_window_at_the_documented_budget() -> None:
    """Against the documented budget as a sliding window, 20,000 writes take within 1.10x the
    least time (6 windows), under 1 % throttled."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    budget = make_budget("window", 3000, 150.0, t.clock)
    sent, throttled = await delete(pacer, budget, t, 20000)
    assert t.now <= 1.10 * 6 * 150.0
    assert throttled / sent < 0.01


async def test_limit_percentage_header_slows_the_pace() -> None:
    """x-ms-throttle-limit-percentage at 0.85 stops the rate growing; at 0.97, while writes go
    at the pace, it eases the rate off by a tenth (never below what was admitted)."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    for _ in range(150):
        await pacer.writes(20)  # the burst is spent: writes now go at the pace
    for _ in range(10):  # three probe periods held back, with a warning each
        await pacer.writes(20)
        pacer.observe({"x-ms-throttle-limit-percentage": "0.85"})
    assert pacer.learned_rate() == 20.0
    pacer.observe({"X-Ms-Throttle-Limit-Percentage": "0.97"})
    assert pacer.learned_rate() == 18.0


async def test_held_back_without_warning_it_speeds_up() -> None:
    """Writes held back by the pace with no word from Microsoft double the rate each probe
    period (3 s at the documented window) until Microsoft first pushes back."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    for _ in range(150 + 80):
        await pacer.writes(20)
    assert pacer.learned_rate() >= 80.0


async def test_conditional_access_requests_are_a_second_apart() -> None:
    """Conditional access calls are spaced by ca_interval, since its 429 has no Retry-After."""
    t = FakeTime()
    pacer = WritePacer(clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await pacer.conditional_access()
    assert t.now == 2.0


async def test_eta_follows_the_learned_pace() -> None:
    """The ETA of the writes left is the pause plus what the burst does not cover at the rate."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    assert pacer.eta(3400) == 20.0
    pacer.throttled(5.0)
    assert pacer.eta(100) == 15.0


async def test_the_eta_after_a_burst_follows_the_learned_pace() -> None:
    """Right after the documented burst went out at once, the average so far is far above what
    Microsoft allows; the progress ETA is the learned pace's, not that average's."""
    t = FakeTime()
    pacer = WritePacer(clock=t.clock, sleep=t.sleep)
    await pacer.writes(3000)  # the burst the documented window allows, all at once
    t.now += 1.0
    observed = 3000 / 1.0  # writes per second so far
    left = 2000
    eta = remaining_time(left, observed, pacer)
    assert eta is not None and abs(eta - left / pacer.learned_rate()) <= 2.0  # a second refilled
    assert eta > left / observed * 100
    assert remaining_time(0, observed, pacer) == 0.0
