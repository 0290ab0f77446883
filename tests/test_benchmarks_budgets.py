"""The budgets benchmark's yardstick: the least time each enforced budget allows."""

from __future__ import annotations

import pytest

from benchmarks.budgets import CASES, least_time

BUCKET, WINDOW, TENTH, TENFOLD = CASES


def test_token_bucket_least_time_is_the_overflow_at_the_refill_rate() -> None:
    """A full bucket of C refilled at r/s lets N writes finish in (N - C) / r, none before."""
    assert least_time(3000, BUCKET) == pytest.approx(0.0)
    assert least_time(7000, BUCKET) == pytest.approx(4000 / 1000)  # 3,000 per 3 s at 50x
    assert least_time(7000, TENFOLD) == pytest.approx(4000 / 1000)  # 3,000 per 3 s at 5x


def test_sliding_window_least_time_comes_in_whole_windows() -> None:
    """A sliding window of L per W admits N writes in floor((N - 1) / L) windows."""
    assert least_time(3000, WINDOW) == pytest.approx(0.0)
    assert least_time(3001, WINDOW) == pytest.approx(3.0)  # 3,000 in any 3 s at 50x
    assert least_time(9001, WINDOW) == pytest.approx(9.0)


def test_a_tenth_leaves_the_bot_what_other_apps_do_not_spend() -> None:
    """With other apps spending 90 % of a 3,000-per-150 s tenant bucket, the bot has its burst
    and then 2 writes/s (1,000/s at 500x)."""
    assert least_time(5000, TENTH) == pytest.approx(2000 / 1000, rel=1e-3)
