"""The approval reminder schedule (`bot.reminders`), driven by a fake clock."""

from __future__ import annotations

import pytest

from bot.reminders import Reminder, due, next_reminder, schedule

H = 3600.0


def hours(reminders: list[Reminder]) -> list[tuple[float, bool]]:
    return [(r.at / H, r.last_call) for r in reminders]


def test_defaults_remind_twice_the_last_six_hours_before_expiry() -> None:
    """With approval_ttl 24h and reminder_interval 12h: at 12h, then a last call at 18h."""
    assert hours(schedule(0.0, 24 * H, 12 * H)) == [(12.0, False), (18.0, True)]


@pytest.mark.parametrize(
    ("ttl", "interval", "expected"),
    [
        (24, 1, [*((float(h), False) for h in range(1, 23)), (23.0, True)]),
        (24, 5, [(5.0, False), (10.0, False), (15.0, False), (19.0, True)]),
        (4, 12, [(3.0, True)]),  # an interval longer than the request: one last call
        (24, 17, [(18.0, True)]),  # 17h falls an hour before the last call: dropped
    ],
)
def test_schedule_reminds_every_interval_then_a_last_call(
    ttl: float, interval: float, expected: list[tuple[float, bool]]
) -> None:
    """Every reminder_interval, a last call min(interval, ttl/4) before expiry, none close to it."""
    assert hours(schedule(100 * H, (100 + ttl) * H, interval * H)) == [
        (h + 100, last) for h, last in expected
    ]


def test_no_reminder_at_or_after_expiry() -> None:
    """Nothing is due once the request has expired, whatever was sent before."""
    assert due(0.0, 24 * H, 12 * H, None, 24 * H) is None
    assert due(0.0, 24 * H, 12 * H, 12 * H, 30 * H) is None
    assert next_reminder(0.0, 24 * H, 12 * H, 18 * H) is None


def test_a_fake_clock_sees_each_reminder_once_and_in_order() -> None:
    """Ticking a clock every minute fires exactly the scheduled reminders, the last call last."""
    sent: list[Reminder] = []
    reminded_at: float | None = None
    now = 0.0
    while now < 25 * H:
        reminder = due(0.0, 24 * H, 12 * H, reminded_at, now)
        if reminder is not None:
            sent.append(reminder)
            reminded_at = now
        now += 60.0
    assert hours(sent) == [(12.0, False), (18.0, True)]


def test_a_restart_after_missed_reminders_sends_one_last_call() -> None:
    """Down from 11h to 20h: one reminder when back, the last call (never a burst)."""
    reminder = due(0.0, 24 * H, 12 * H, None, 20 * H)
    assert reminder == Reminder(20 * H, last_call=True)
    assert due(0.0, 24 * H, 12 * H, 20 * H, 21 * H) is None
    assert next_reminder(0.0, 24 * H, 12 * H, 20 * H) is None


def test_a_late_regular_reminder_does_not_skip_the_last_call() -> None:
    """A regular reminder sent late (13h) still leaves the last call due at 18h."""
    assert due(0.0, 24 * H, 12 * H, None, 13 * H) == Reminder(13 * H, last_call=False)
    assert next_reminder(0.0, 24 * H, 12 * H, 13 * H) == Reminder(18 * H, last_call=True)
