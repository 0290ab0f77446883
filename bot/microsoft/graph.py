"""A small Microsoft Graph client: paging, JSON $batch, Retry-After, bounded retries."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from bot.microsoft.pacing import WritePacer

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_BATCH = 20
log = logging.getLogger("close_account_bot.graph")


class TokenSource(Protocol):
    async def token(self, force_refresh: bool = False) -> str: ...


class GraphError(Exception):
    """A Graph call that failed for good: status, Graph's error code and message, the path."""

    def __init__(self, status: int, code: str, message: str, path: str) -> None:
        super().__init__(f"{status} {code}: {message} ({path})")
        self.status = status
        self.code = code
        self.message = message
        self.path = path


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_text(self) -> str:
        """'403 Authorization_RequestDenied: message' as Graph reported it, or the status."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict):
            return f"{self.status} {error.get('code', '')}: {error.get('message', '')}"
        return str(self.status)


@dataclass(frozen=True)
class BatchRequest:
    id: str
    method: str
    url: str  # relative, like "/users/{id}"
    body: dict[str, Any] | None = None


def error_of(status: int, body: dict[str, Any], path: str) -> GraphError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return GraphError(status, str(error.get("code", "")), str(error.get("message", "")), path)
    return GraphError(status, "", str(body)[:200], path)


def retry_after(headers: dict[str, str], attempt: int, base: float) -> float:
    """Seconds to wait: Retry-After when Microsoft gives it, else exponential with jitter."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                break
    return float(base * (2**attempt) * (0.5 + random.random() / 2))


class Graph:
    """Graph for one tenant. `on_request` sees every (method, path, status) for progress/metrics."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        graph_url: str,
        tokens: TokenSource,
        ssl_context: ssl.SSLContext | None = None,
        max_attempts: int = 8,
        backoff_base: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_request: Callable[[str, str, int], None] | None = None,
        pacer: WritePacer | None = None,
        name: str = "",
    ) -> None:
        self.session = session
        self.name = name  # the tenant's configured name, for the logs
        self.graph_url = graph_url.rstrip("/")
        self.tokens = tokens
        self.ssl_context = ssl_context
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.on_request = on_request
        self.pacer = pacer or WritePacer(sleep=sleep)
        self.throttled = 0  # 429 answers seen (whole requests and $batch sub-requests)
        self.sent = 0  # requests sent (whole requests and $batch sub-requests)

    def url(self, path: str, beta: bool = False) -> str:
        if path.startswith("https://") or path.startswith("http://"):
            return path
        return f"{self.graph_url}/{'beta' if beta else 'v1.0'}{path}"

    async def _send(
        self, method: str, url: str, body: dict[str, Any] | None, force_refresh: bool
    ) -> Response:
        token = await self.tokens.token(force_refresh=force_refresh)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        async with self.session.request(
            method,
            url,
            json=body,
            headers=headers,
            ssl=self.ssl_context if self.ssl_context is not None else True,
        ) as resp:
            text = await resp.text()
            parsed: dict[str, Any] = {}
            if text:
                try:
                    loaded = json.loads(text)
                    parsed = loaded if isinstance(loaded, dict) else {"value": loaded}
                except ValueError:
                    parsed = {"error": {"code": "nonJsonResponse", "message": text[:200]}}
            return Response(resp.status, parsed, dict(resp.headers))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        beta: bool = False,
        ok_statuses: Sequence[int] = (),
    ) -> Response:
        """One call with retries for 429/5xx/dropped connections and one token refresh on 401."""
        url = self.url(path, beta)
        refreshed = False
        attempt = 0
        write = method != "GET" and not path.endswith("/$batch")  # a $batch is summed up whole
        tries = throttled = 0
        while True:
            await self._pace(method, path, 1)
            try:
                self.sent += 1
                tries += 1
                resp = await self._send(method, url, body, force_refresh=False)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                attempt += 1
                if attempt >= self.max_attempts:
                    if write:
                        self._summary(method, path, sent=tries, throttled=throttled, failed=1)
                    raise GraphError(
                        0, "connectionError", str(exc) or type(exc).__name__, path
                    ) from exc
                await self.sleep(retry_after({}, attempt - 1, self.backoff_base))
                continue
            if self.on_request is not None:
                self.on_request(method, path, resp.status)
            if method != "GET":
                self.pacer.observe(resp.headers)
            if resp.ok or resp.status in ok_statuses:
                if write:
                    self._summary(method, path, sent=tries, throttled=throttled, ok=1)
                return resp
            if resp.status == 401 and not refreshed:
                refreshed = True
                await self.tokens.token(force_refresh=True)
                continue
            if resp.status in RETRYABLE_STATUS and attempt + 1 < self.max_attempts:
                wait = retry_after(resp.headers, attempt, self.backoff_base)
                if resp.status == 429:
                    self.throttled += 1
                    throttled += 1
                    if method != "GET":
                        self.pacer.pause(wait)
                await self.sleep(wait)
                attempt += 1
                continue
            if write:
                self._summary(
                    method, path, sent=tries, throttled=throttled, failed=1, status=resp.status
                )
            raise error_of(resp.status, resp.body, path)

    def _summary(
        self,
        method: str,
        what: str,
        *,
        sent: int,
        ok: int = 0,
        throttled: int = 0,
        failed: int = 0,
        status: int | None = None,
    ) -> None:
        """One INFO line per write or $batch of writes: what was sent and how it ended."""
        pace = self.pacer.rate()
        log.info(
            "graph %s: %s %s: %d sent, %d ok, %d throttled, %d failed%s; pace %.3g writes/s",
            self.name or self.graph_url,
            method,
            what,
            sent,
            ok,
            throttled,
            failed,
            f" (last answer {status})" if status is not None else "",
            pace,
            extra={
                "tenant": self.name or None,
                "method": method,
                "sent": sent,
                "ok": ok,
                "throttled": throttled,
                "failed": failed,
                "pace": pace,
            },
        )

    async def _pace(self, method: str, path: str, writes: int) -> None:
        if "/identity/conditionalAccess" in path:
            await self.pacer.conditional_access()
        if method not in ("GET", "HEAD") and not path.endswith("/$batch"):
            await self.pacer.writes(writes)

    async def get(self, path: str, *, beta: bool = False) -> dict[str, Any]:
        return (await self.request("GET", path, beta=beta)).body

    async def get_all(self, path: str, *, beta: bool = False) -> list[dict[str, Any]]:
        """Every item of a collection, following @odata.nextLink (an absolute URL) to the end."""
        items: list[dict[str, Any]] = []
        next_url: str | None = self.url(path, beta)
        while next_url:
            body = (await self.request("GET", next_url)).body
            items.extend(body.get("value", []))
            link = body.get("@odata.nextLink")
            next_url = str(link) if link else None
        return items

    async def patch(self, path: str, body: dict[str, Any], *, beta: bool = False) -> Response:
        return await self.request("PATCH", path, body=body, beta=beta)

    async def batch(
        self,
        requests: Sequence[BatchRequest],
        *,
        beta: bool = False,
        ok_statuses: Sequence[int] = (),
    ) -> dict[str, Response]:
        """Send in $batch chunks of 20; retry each throttled or failed sub-request on its own.

        Returns the final response for every request id. Sub-requests that still fail after
        the bounded attempts are returned as they are, for the caller to report.
        """
        results: dict[str, Response] = {}
        for start in range(0, len(requests), MAX_BATCH):
            pending = list(requests[start : start + MAX_BATCH])
            chunk = {r.id for r in pending}
            tally = {"sent": 0, "throttled": 0}
            attempt = 0
            while pending:
                envelope = {
                    "requests": [
                        {
                            "id": r.id,
                            "method": r.method,
                            "url": r.url,
                            **(
                                {"body": r.body, "headers": {"Content-Type": "application/json"}}
                                if r.body is not None
                                else {}
                            ),
                        }
                        for r in pending
                    ]
                }
                await self.pacer.writes(sum(r.method != "GET" for r in pending))
                outer = await self.request("POST", "/$batch", body=envelope, beta=beta)
                by_id = {str(r.get("id")): r for r in outer.body.get("responses", [])}
                retry: list[BatchRequest] = []
                wait = 0.0
                for req in pending:
                    sub = by_id.get(req.id) or {"status": 503}
                    status = int(sub.get("status", 0))
                    headers = {str(k): str(v) for k, v in (sub.get("headers") or {}).items()}
                    body = sub.get("body") if isinstance(sub.get("body"), dict) else {}
                    resp = Response(status, body or {}, headers)
                    self.sent += 1
                    tally["sent"] += 1
                    if req.method != "GET":
                        self.pacer.observe(headers)
                    if self.on_request is not None:
                        self.on_request(req.method, req.url, status)
                    if status in RETRYABLE_STATUS and attempt + 1 < self.max_attempts:
                        retry.append(req)
                        wait = max(wait, retry_after(headers, attempt, self.backoff_base))
                        if status == 429:
                            self.throttled += 1
                            tally["throttled"] += 1
                            self.pacer.pause(wait)
                        continue
                    results[req.id] = resp
                if retry:
                    attempt += 1
                    await self.sleep(wait)
                pending = retry
            writes = sorted({r.method for r in requests[start : start + MAX_BATCH]} - {"GET"})
            if writes:
                done = [results[i] for i in chunk]
                ok = sum(r.ok or r.status in ok_statuses for r in done)
                self._summary(
                    "/".join(writes),
                    f"$batch of {len(chunk)}",
                    sent=tally["sent"],
                    ok=ok,
                    throttled=tally["throttled"],
                    failed=len(done) - ok,
                )
        return results
