"""What the simulated Microsoft does to slow a caller down: Graph's throttling budgets (sliding
windows on a monotonic clock), injected faults, and the write gate tests use to freeze a run.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from simulator.microsoft.graph_api import is_conditional_access, resource_units
from simulator.microsoft.graph_data import SimTenant
from simulator.microsoft.graph_odata import GraphRequest, GraphResponse, error_body

WRITE_LIMIT, WRITE_WINDOW = 3000, 150.0
READ_WINDOW = 10.0


def format_seconds(seconds: float) -> str:
    """Retry-After as Graph may send it: whole seconds, or a fraction when under a few seconds."""
    seconds = max(seconds, 0.001)
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


class SlidingWindow:
    """A budget of `limit` units per `window` seconds, spent by accepted requests only."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._spent: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    def _expire(self, now: float, window: float) -> None:
        while self._spent and self._spent[0][0] <= now - window:
            self._total -= self._spent.popleft()[1]

    def wait_for(self, cost: int, limit: int, window: float) -> float | None:
        """None if `cost` fits in the budget now, else the seconds until it would."""
        now = self._clock()
        self._expire(now, window)
        if self._total + cost <= limit:
            return None
        excess = self._total + cost - limit
        freed = 0
        for when, units in self._spent:
            freed += units
            if freed >= excess:
                return when + window - now
        return window  # a single request costlier than the whole budget

    def spend(self, cost: int) -> None:
        self._spent.append((self._clock(), cost))
        self._total += cost

    def usage(self, limit: int, window: float) -> float:
        self._expire(self._clock(), window)
        return self._total / limit if limit else 1.0


class Interval:
    """At most one accepted request per `interval` seconds (conditional access: 1 per second)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last: float | None = None

    def take(self, interval: float) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < interval:
            return False
        self._last = now
        return True


@dataclass
class FaultRule:
    """One injected fault, consumed by the next `count` Graph responses it matches."""

    kind: str  # "status" or "drop"
    status: int
    count: int
    path_prefix: str
    method: str | None
    retry_after: float | None


class Faults:
    """Inject failures into Graph responses: `sim.faults.throttle(3, path_prefix="/v1.0/users")`.

    Prefixes match the versioned path ("/v1.0/users/abc", "/v1.0/$batch"); a fault matching a
    $batch sub-request becomes that sub-response; drops apply to whole HTTP requests only.
    """

    def __init__(self, default_retry_after: float) -> None:
        self.default_retry_after = default_retry_after
        self.rules: list[FaultRule] = []

    def throttle(
        self,
        count: int = 1,
        *,
        path_prefix: str = "",
        method: str | None = None,
        retry_after: float | Literal["default"] | None = "default",
    ) -> None:
        """The next `count` matching responses are 429; `retry_after=None` sends no Retry-After
        (default: the simulator's `retry_after`)."""
        seconds = self.default_retry_after if retry_after == "default" else retry_after
        self.rules.append(FaultRule("status", 429, count, path_prefix, method, seconds))

    def error(
        self, status: int = 503, count: int = 1, *, path_prefix: str = "", method: str | None = None
    ) -> None:
        """The next `count` matching responses fail with `status` (500, 502, 503, 504...)."""
        self.rules.append(FaultRule("status", status, count, path_prefix, method, None))

    def drop(self, count: int = 1, *, path_prefix: str = "", method: str | None = None) -> None:
        """The next `count` matching HTTP requests have their connection closed, no response."""
        self.rules.append(FaultRule("drop", 0, count, path_prefix, method, None))

    def clear(self) -> None:
        self.rules.clear()

    def take(self, method: str, path: str, *, in_batch: bool) -> FaultRule | None:
        for rule in self.rules:
            if in_batch and rule.kind == "drop":
                continue
            if rule.method is not None and rule.method.upper() != method.upper():
                continue
            if path.startswith(rule.path_prefix):
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
                return rule
        return None


class WriteGate:
    """Lets `after` more successful destructive writes through, then holds the rest."""

    def __init__(self) -> None:
        self._remaining: int | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._someone_waiting = asyncio.Event()
        self.waiting = 0

    def hold(self, after: int) -> None:
        self._remaining = max(after, 0)
        if self._remaining == 0:
            self._open.clear()

    def release(self) -> None:
        self._remaining = None
        self._open.set()

    async def admit(self) -> None:
        """Wait, if writes are held, until release()."""
        if self._remaining is not None and self._remaining <= 0:
            self._open.clear()
        if self._open.is_set():
            return
        self.waiting += 1
        self._someone_waiting.set()
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
            if not self.waiting:
                self._someone_waiting.clear()

    def succeeded(self) -> None:
        if self._remaining is not None:
            self._remaining -= 1

    async def wait_until_held(self) -> None:
        await self._someone_waiting.wait()


def fault_response(fault: FaultRule, client_request_id: str) -> GraphResponse:
    """The answer an injected status fault gives (429 with or without Retry-After, 5xx)."""
    if fault.status == 429:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = format_seconds(fault.retry_after)
        message = "Too many requests. Please retry later."
        return GraphResponse(
            429, error_body("TooManyRequests", message, client_request_id), headers
        )
    codes = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable"}
    code = codes.get(fault.status, "UnknownError")
    body = error_body(code, "The service is unavailable.", client_request_id)
    return GraphResponse(fault.status, body)


def read_limit(users: int) -> int:
    """Directory resource units per 10 s by tenant size (steps.md)."""
    return 3500 if users < 50 else 5000 if users <= 500 else 8000


class Throttler:
    """Graph's directory budgets per app per tenant (the bot is each tenant's one app):
    resource units per 10 s, writes per 150 s, and conditional access at 1 request per second,
    all shortened by time_scale unless a tenant overrides them.
    """

    def __init__(self, clock: Callable[[], float], time_scale: float) -> None:
        self._clock = clock
        self._time_scale = time_scale
        self._reads: dict[str, SlidingWindow] = {}
        self._writes: dict[str, SlidingWindow] = {}
        self._ca: dict[str, Interval] = {}

    def budgets(self, tenant: SimTenant) -> tuple[tuple[int, float], tuple[int, float]]:
        """((read units, window s), (writes, window s)) in real seconds."""
        reads = tenant.read_budget or (
            read_limit(len(tenant.users)),
            READ_WINDOW / self._time_scale,
        )
        writes = tenant.write_budget or (WRITE_LIMIT, WRITE_WINDOW / self._time_scale)
        return reads, writes

    def check(
        self, tenant: SimTenant, req: GraphRequest, write: bool
    ) -> tuple[GraphResponse | None, dict[str, str]]:
        """Spend the request's budget: (the 429, {}) or (None, headers for the answer)."""
        tid, crid = tenant.tenant_id, req.client_request_id
        if is_conditional_access(req):
            interval = tenant.ca_interval
            gate = self._ca.setdefault(tid, Interval(self._clock))
            if not gate.take(1.0 / self._time_scale if interval is None else interval):
                body = error_body("TooManyRequests", "Too many requests.", crid)
                return GraphResponse(429, body), {}  # conditional access sends no Retry-After
        reads = self._reads.setdefault(tid, SlidingWindow(self._clock))
        writes = self._writes.setdefault(tid, SlidingWindow(self._clock))
        (r_limit, r_window), (w_limit, w_window) = self.budgets(tenant)
        cost = resource_units(req)
        checks = [(reads, cost, r_limit, r_window, "ResourceUnitLimitExceeded", "Read")]
        if write:
            checks.append((writes, 1, w_limit, w_window, "WriteLimitExceeded", "ReadWrite"))
        for window, units, limit, span, reason, scope in checks:
            wait = window.wait_for(units, limit, span)
            if wait is not None:
                usage = min(window.usage(limit, span) + units / limit, 1.8)
                headers = {
                    "Retry-After": format_seconds(wait),
                    "x-ms-throttle-limit-percentage": f"{usage:.2f}",
                    "x-ms-throttle-scope": f"Tenant_Application/{scope}/{tid}/{tenant.client_id}",
                    "x-ms-throttle-information": reason,
                }
                message = "Too many requests. Please retry after the time in Retry-After."
                return GraphResponse(429, error_body("TooManyRequests", message, crid), headers), {}
        usage = 0.0
        for window, units, limit, span, _, _ in checks:
            window.spend(units)
            usage = max(usage, window.usage(limit, span))
        headers = {"x-ms-resource-unit": str(cost)}
        if usage > 0.8:  # Graph starts warning at 80% of a budget
            headers["x-ms-throttle-limit-percentage"] = f"{min(usage, 1.8):.2f}"
        return None, headers
