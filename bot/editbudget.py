"""The workspace's budget for status-message edits: Slack's chat.update is tier 3 (50+ a minute
per app and workspace), shared by every closure's status message.

A token bucket with reservations: each edit takes a slot and learns how long to wait for it, so
ten closures editing together share the minute instead of running into 429s.
"""

from __future__ import annotations

STATUS_EDITS_PER_MINUTE = 40.0  # of chat.update's 50: the rest marks approval requests
STATUS_EDIT_BURST = 10


class EditBudget:
    def __init__(
        self, per_minute: float = STATUS_EDITS_PER_MINUTE, burst: int = STATUS_EDIT_BURST
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("an edit budget needs a positive rate and a burst of at least 1")
        self.per_second = per_minute / 60
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None:
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self.burst, self._tokens + elapsed * self.per_second)
        self._at = now

    def take(self, now: float) -> bool:
        """Take a slot if one is free now."""
        self._refill(now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def reserve(self, now: float) -> float:
        """Take the next slot, free or not; the seconds to wait before using it (0: at once)."""
        self._refill(now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.per_second
