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
    """At most `limit` units spent in any `window` seconds, spent by accepted requests only.

    The strictest reading of a budget "per 2 minutes and 30 seconds": what was spent comes back
    all at once, one whole window later.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._spent: collections.deque[tuple[float, float]] = collections.deque()
        self._total = 0.0

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._total -= self._spent.popleft()[1]

    def wait_for(self, cost: float) -> float | None:
        """None if `cost` fits in the budget now, else the seconds until it would."""
        now = self._clock()
        self._expire(now)
        if self._total + cost <= self.limit + 1e-9:
            return None
        excess = self._total + cost - self.limit
        freed = 0.0
        for when, units in self._spent:
            freed += units
            if freed >= excess - 1e-9:
                return when + self.window - now
        return self.window  # a single request costlier than the whole budget

    def spend(self, cost: float) -> None:
        self._spent.append((self._clock(), cost))
        self._total += cost

    def room(self) -> float:
        self._expire(self._clock())
        return max(self.limit - self._total, 0.0)

    def usage(self) -> float:
        self._expire(self._clock())
        return self._total / self.limit if self.limit else 1.0


class TokenBucket:
    """A bucket of `limit` units, full at first, refilled continuously at `limit / window` per
    second: what throttling-limits.md says identity and access use ("Throttling is based on a
    token bucket algorithm", microsoftgraph/microsoft-graph-docs-contrib
    concepts/throttling-limits.md, Identity and access service limits, Pattern). It does not
    say how a bucket refills; this is the continuous refill that lets the most through.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._tokens = float(limit)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.limit, self._tokens + (now - self._at) * self.limit / self.window)
        self._at = now

    def wait_for(self, cost: float) -> float | None:
        self._refill()
        if self._tokens + 1e-9 >= cost:
            return None
        return (cost - self._tokens) * self.window / self.limit

    def spend(self, cost: float) -> None:
        self._refill()
        self._tokens -= cost

    def room(self) -> float:
        self._refill()
        return max(self._tokens, 0.0)

    def usage(self) -> float:
        self._refill()
        return (self.limit - self._tokens) / self.limit if self.limit else 1.0


Budget = SlidingWindow | TokenBucket
Model = Literal["window", "bucket"]


def make_budget(model: Model, limit: int, window: float, clock: Callable[[], float]) -> Budget:
    return (TokenBucket if model == "bucket" else SlidingWindow)(limit, window, clock)


@dataclass
class WritePolicy:
    """How one tenant's directory writes are throttled; change it between runs, not during one.

    model: "window" (a sliding window, the default and the strictest reading) or "bucket" (a
    token bucket, what Microsoft names without saying how it refills). app: (writes, seconds)
    per app and tenant, None for Microsoft's 3,000 per 150 s (time-scaled) or the tenant's
    `write_budget`. tenant: the same across apps, None for 18,000 per 300 s (time-scaled).
    others: writes per second that other apps in the tenant spend of the tenant budget, all
    the time (the bot is not alone: throttling.md, "A large number of requests across all
    applications in a tenant"); `others_spent` is what they spent before this moment.
    """

    model: Model = "window"
    app: tuple[int, float] | None = None
    tenant: tuple[int, float] | None = None
    others: float = 0.0


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


TENANT_WRITE_LIMIT, TENANT_WRITE_WINDOW = 18000, 300.0


class Throttler:
    """Graph's directory budgets (microsoftgraph/microsoft-graph-docs-contrib
    concepts/throttling-limits.md, Identity and access service limits): resource units per
    10 s per app and tenant, writes per 150 s per app and tenant and per 300 s per tenant across
    apps, and conditional access at 1 request per second; all shortened by time_scale unless a
    tenant overrides them. Each request and each `$batch` sub-request is checked on its own
    (concepts/throttling.md, "Throttling and batching": "Requests in a batch are evaluated
    individually against throttling limits"); only a request that fits is spent ("Only the
    requests exceeding the limits will be throttled").
    """

    def __init__(self, clock: Callable[[], float], time_scale: float) -> None:
        self._clock = clock
        self._time_scale = time_scale
        self._budgets: dict[tuple[str, str], tuple[tuple[str, int, float], Budget]] = {}
        self._ca: dict[str, Interval] = {}
        self._policies: dict[str, WritePolicy] = {}
        self._others_at: dict[str, float] = {}

    def policy(self, tenant: SimTenant) -> WritePolicy:
        """The tenant's write policy, to change: `sim.throttler.policy(t).model = "bucket"`."""
        return self._policies.setdefault(tenant.tenant_id, WritePolicy())

    def budgets(self, tenant: SimTenant) -> tuple[tuple[int, float], tuple[int, float]]:
        """((read units, window s), (writes per app, window s)) in real seconds."""
        reads = tenant.read_budget or (
            read_limit(len(tenant.users)),
            READ_WINDOW / self._time_scale,
        )
        policy = self.policy(tenant)
        writes = policy.app or tenant.write_budget or (WRITE_LIMIT, WRITE_WINDOW / self._time_scale)
        return reads, writes

    def tenant_budget(self, tenant: SimTenant) -> tuple[int, float]:
        """Writes across apps per window, in real seconds."""
        return self.policy(tenant).tenant or (
            TENANT_WRITE_LIMIT,
            TENANT_WRITE_WINDOW / self._time_scale,
        )

    def _budget(self, tid: str, scope: str, model: str, limit: int, window: float) -> Budget:
        """The budget for (tenant, scope), made afresh when its shape changes."""
        shape = (model, limit, window)
        held = self._budgets.get((tid, scope))
        if held is None or held[0] != shape:
            held = (shape, make_budget(model, limit, window, self._clock))  # type: ignore[arg-type]
            self._budgets[(tid, scope)] = held
        return held[1]

    def _others(self, tenant: SimTenant, budget: Budget) -> None:
        """What other apps spent of the tenant budget since the last look (as much as fits)."""
        rate = self.policy(tenant).others
        now = self._clock()
        last = self._others_at.get(tenant.tenant_id, now)
        self._others_at[tenant.tenant_id] = now
        if rate > 0 and now > last:
            spent = min(rate * (now - last), budget.room())
            if spent > 0:
                budget.spend(spent)

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
        policy = self.policy(tenant)
        (r_limit, r_window), (w_limit, w_window) = self.budgets(tenant)
        reads = self._budget(tid, "reads", "window", r_limit, r_window)
        cost = resource_units(req)
        checks: list[tuple[Budget, float, str, str]] = [
            (reads, cost, "ResourceUnitLimitExceeded", "Tenant_Application/Read")
        ]
        if write:
            writes = self._budget(tid, "writes", policy.model, w_limit, w_window)
            t_limit, t_window = self.tenant_budget(tenant)
            across = self._budget(tid, "tenant", policy.model, t_limit, t_window)
            self._others(tenant, across)
            checks.append((writes, 1, "WriteLimitExceeded", "Tenant_Application/ReadWrite"))
            checks.append((across, 1, "WriteLimitExceeded", "Tenant/Write"))
        for budget, units, reason, scope in checks:
            wait = budget.wait_for(units)
            if wait is not None:
                # x-ms-throttle-* headers: concepts/throttling-limits.md, Additional headers.
                usage = min(budget.usage() + units / budget.limit, 1.8)
                headers = {
                    "Retry-After": format_seconds(wait),
                    "x-ms-throttle-limit-percentage": f"{usage:.2f}",
                    "x-ms-throttle-scope": f"{scope}/{tenant.client_id}/{tid}",
                    "x-ms-throttle-information": reason,
                }
                message = "Too many requests. Please retry after the time in Retry-After."
                return GraphResponse(429, error_body("TooManyRequests", message, crid), headers), {}
        usage = 0.0
        for budget, units, _, _ in checks:
            budget.spend(units)
            usage = max(usage, budget.usage())
        headers = {"x-ms-resource-unit": str(cost)}
        # "Returned only when the application consumed more than 0.8 of its limit. The value
        # ranges from 0.8 to 1.8" (throttling-limits.md, Regular responses requests).
        if usage > 0.8 + 1e-9:
            headers["x-ms-throttle-limit-percentage"] = f"{min(usage, 1.8):.2f}"
        return None, headers
