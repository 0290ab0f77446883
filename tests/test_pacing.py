"""The write pacer keeps to Microsoft's budgets with an injected clock: no real waiting."""

from __future__ import annotations

from bot.microsoft.pacing import WindowBudget, WritePacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_window_budget_frees_units_as_the_window_slides() -> None:
    """Units spent become available again exactly one window later."""
    t = FakeTime()
    budget = WindowBudget(100, 10.0, t.clock)
    budget.spend(60)
    t.now = 4.0
    budget.spend(40)
    assert budget.wait_for(1) == 6.0
    t.now = 10.0
    assert budget.wait_for(60) == 0.0
    assert budget.wait_for(61) == 4.0


async def test_writes_never_exceed_the_budget_in_any_window() -> None:
    """Pacing 5,000 writes against 3,000 per 150 s spreads them so no window holds more."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    stamps: list[tuple[float, int]] = []
    for _ in range(250):
        await pacer.writes(20)
        stamps.append((t.now, 20))
    for start, _ in stamps:
        in_window = sum(n for at, n in stamps if start <= at < start + 150.0)
        assert in_window <= 3000
    # 3,000 at once, then the remaining 2,000 as the first ones age out of the window.
    assert 150.0 <= t.now <= 151.0


async def test_a_429_pauses_every_write() -> None:
    """After pause(2.5) the next write waits 2.5 s even with budget left."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    pacer.pause(2.5)
    await pacer.writes(1)
    assert t.slept == [2.5]


async def test_conditional_access_requests_are_a_second_apart() -> None:
    """Conditional access calls are spaced by ca_interval, since its 429 has no Retry-After."""
    t = FakeTime()
    pacer = WritePacer(clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await pacer.conditional_access()
    assert t.now == 2.0


def test_near_limit_header_slows_writes() -> None:
    """x-ms-throttle-limit-percentage at 0.97 pauses writes before Microsoft answers 429."""
    t = FakeTime()
    pacer = WritePacer(((3000, 150.0),), clock=t.clock, sleep=t.sleep)
    pacer.observe({"x-ms-throttle-limit-percentage": "0.85"})
    assert pacer._paused_until == 0.0
    pacer.observe({"X-Ms-Throttle-Limit-Percentage": "0.97"})
    assert pacer._paused_until == 1.0
