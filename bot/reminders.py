"""When an open approval request reminds its approvers: a pure schedule of (created, expires,
interval), so a restart recomputes the same times from what the database keeps.

The schedule: a reminder every `reminder_interval` after the request is posted, and a last call
`lead` before it expires, where `lead` is the shorter of `reminder_interval` and a quarter of the
request's lifetime. A regular reminder that would fall less than half a `lead` before the last
call is dropped (the last call follows soon). Nothing is sent at or after expiry. With the
defaults (`approval_ttl` 24h, `reminder_interval` 12h): at 12h, and a last call at 18h (6h left).

A reminder that falls due while the bot is down is sent once when it is back, never several at
once: each reminder due at or before the last one sent counts as sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Reminder:
    """One reminder of a request: when it is due, and whether it is the last call."""

    at: float
    last_call: bool


def lead(created_at: float, expires_at: float, interval: float) -> float:
    """How long before expiry the last call goes out."""
    return min(interval, (expires_at - created_at) / 4)


def next_reminder(
    created_at: float, expires_at: float, interval: float, reminded_at: float | None
) -> Reminder | None:
    """The next reminder to send after the last one sent at `reminded_at` (None: none yet);
    None when no reminder is left before expiry."""
    if expires_at <= created_at or interval <= 0:
        return None
    since = created_at if reminded_at is None else max(reminded_at, created_at)
    early = lead(created_at, expires_at, interval)
    last = expires_at - early
    k = math.floor((since - created_at) / interval) + 1
    while created_at + k * interval <= since:  # rounding: strictly after `since`
        k += 1
    at = created_at + k * interval
    if at < last - early / 2:
        return Reminder(at, last_call=False)
    return Reminder(last, last_call=True) if last > since else None


def schedule(created_at: float, expires_at: float, interval: float) -> list[Reminder]:
    """Every reminder of a request posted at `created_at` that expires at `expires_at`."""
    out: list[Reminder] = []
    reminder = next_reminder(created_at, expires_at, interval, None)
    while reminder is not None:
        out.append(reminder)
        reminder = next_reminder(created_at, expires_at, interval, reminder.at)
    return out


def due(
    created_at: float, expires_at: float, interval: float, reminded_at: float | None, now: float
) -> Reminder | None:
    """The reminder to send at `now`, if one is due since the last sent: a last call once its
    time has come (even when a regular reminder was missed before it), None after expiry."""
    if now >= expires_at:
        return None
    first = next_reminder(created_at, expires_at, interval, reminded_at)
    if first is None or first.at > now:
        return None
    last = expires_at - lead(created_at, expires_at, interval)
    return Reminder(now, last_call=now >= last)
