"""Slack's Web API rate limits, enforced when the simulator is asked to: each method's tier per app
and workspace, and chat.postMessage's one message per second per channel with short bursts.

Slack answers a call over its limit with HTTP 429, `{"ok": false, "error": "ratelimited"}` and a
whole-second `Retry-After`. The tiers are those of Slack's method reference (tests compare them
with it); bursts are allowed up to a minute's worth, refilled evenly. `time_scale` runs Slack's
clock faster, as the Microsoft simulator's does, so tests see the limits without waiting minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# Requests per minute per tier (docs.slack.dev/apis/web-api/rate-limits).
TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}

# The tier of each method the simulator implements; "special" ones are listed apart.
METHOD_TIERS = {
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "conversations.info": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.open": 3,
    "users.info": 4,
    "users.lookupByEmail": 3,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "views.publish": 4,
    "reactions.get": 3,
    "reactions.add": 3,
}
# Special rate limits: chat.postMessage is one message per second per channel (bursts allowed);
# auth.test and chat.getPermalink are treated as tier 4.
SPECIAL_AS_TIER = {"auth.test": 4, "chat.getPermalink": 4}
POST_PER_SECOND = 1.0
POST_BURST = 10  # Slack allows "short bursts >1" without a number; this is on the strict side


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Take one request; 0 if allowed, else the seconds until one would be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


class RateLimits:
    """Token buckets per method (and per channel for chat.postMessage)."""

    def __init__(
        self, *, time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.limited: list[tuple[str, int]] = []  # (method, Retry-After) of each 429 sent

    def _bucket(self, method: str, channel: str) -> _Bucket | None:
        key = (method, channel if method == "chat.postMessage" else "")
        bucket = self._buckets.get(key)
        if bucket is None:
            if method == "chat.postMessage":
                capacity, per_second = float(POST_BURST), POST_PER_SECOND
            else:
                tier = METHOD_TIERS.get(method) or SPECIAL_AS_TIER.get(method)
                if tier is None:
                    return None
                capacity = float(TIER_PER_MINUTE[tier])
                per_second = capacity / 60
            bucket = _Bucket(capacity, per_second * self.time_scale, capacity, self.clock())
            self._buckets[key] = bucket
        return bucket

    def check(self, method: str, channel: str = "") -> int | None:
        """None if the call may go ahead, else the Retry-After (whole seconds, at least 1)."""
        bucket = self._bucket(method, channel)
        if bucket is None:
            return None
        wait = bucket.take(self.clock())
        if wait <= 0:
            return None
        retry_after = max(1, math.ceil(wait))
        self.limited.append((method, retry_after))
        return retry_after
