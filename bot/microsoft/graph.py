"""A small Microsoft Graph client: paging, JSON $batch, Retry-After, bounded retries.

A 429 is not a failure: throttled work waits for Retry-After (and the pacer learns from it)
and goes on, without using up an attempt. Only real errors spend attempts; throttling fails a
call only after GIVE_UP_AFTER of 429s with nothing admitted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.microsoft.graph_shapes import MAX_BACKOFF as MAX_BACKOFF
from bot.microsoft.graph_shapes import BatchRequest as BatchRequest
from bot.microsoft.graph_shapes import GraphError as GraphError
from bot.microsoft.graph_shapes import Response as Response
from bot.microsoft.graph_shapes import TokenSource as TokenSource
from bot.microsoft.graph_shapes import error_of as error_of
from bot.microsoft.graph_shapes import retry_after as retry_after
from bot.microsoft.pacing import WritePacer

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_BATCH = 20
# Throttling fails a call only after this long with every answer a 429 and nothing admitted:
# 30 minutes is twelve of Microsoft's 150 s write windows, ten times the longest wait its own
# 5-minute tenant budget can impose, so a budget that still admits nothing is not one that
# refills (the tenant is blocked, or another app spends everything), and a person should know.
GIVE_UP_AFTER = 30 * 60.0
log = logging.getLogger("close_account_bot.graph")


def throttled_too_long(path: str, seconds: float, throttled: int) -> GraphError:
    """The error a step fails with when Microsoft admitted nothing for GIVE_UP_AFTER."""
    return GraphError(
        429,
        "throttledTooLong",
        f"Microsoft answered 429 to every write for {seconds / 60:.0f} min ({throttled} times)"
        " and admitted none; the bot gives up after that bound, the budget is not refilling"
        " (another app may be spending all of it); retry the step later",
        path,
    )


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
        give_up_after: float = GIVE_UP_AFTER,
        clock: Callable[[], float] = time.monotonic,
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
        self.give_up_after = give_up_after
        self.clock = clock
        self.throttled = 0  # 429 answers seen (whole requests and $batch sub-requests)
        self.sent = 0  # requests sent (whole requests and $batch sub-requests)

    def url(self, path: str, beta: bool = False) -> str:
        """The absolute URL of `path`; an absolute URL only on the configured Graph host over
        HTTPS (an @odata.nextLink elsewhere would carry the token there): else a GraphError."""
        if "://" in path:
            own, link = urlsplit(self.graph_url), urlsplit(path)
            if link.scheme != "https" or link.netloc.lower() != own.netloc.lower():
                raise GraphError(
                    0,
                    "foreignLink",
                    f"refusing to send the Graph token to {link.scheme}://{link.netloc}:"
                    f" only https://{own.netloc} is this tenant's Graph",
                    path.split("?")[0],
                )
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
        """One call with retries for 5xx/dropped connections (bounded), 429s (until
        GIVE_UP_AFTER with nothing admitted) and one token refresh on 401."""
        url = self.url(path, beta)
        refreshed = False
        attempt = 0  # real failures only: a 429 is not one
        write = method != "GET" and not path.endswith("/$batch")  # a $batch is summed up whole
        tries = throttled = streak = 0
        since: float | None = None  # when this call's run of 429s began
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
            if resp.status == 429:
                self.throttled += 1
                throttled += 1
                now = self.clock()
                since = now if since is None else since
                if now - since >= self.give_up_after:
                    if write:
                        self._summary(method, path, sent=tries, throttled=throttled, failed=1)
                    raise throttled_too_long(path, now - since, throttled)
                wait = retry_after(resp.headers, streak, self.backoff_base)
                streak += 1
                if method != "GET":
                    self.pacer.throttled(wait)
                await self.sleep(wait)
                continue
            since, streak = None, 0
            if write and resp.status < 500:
                self.pacer.admitted(1)
            if resp.ok or resp.status in ok_statuses:
                if write:
                    self._summary(method, path, sent=tries, throttled=throttled, ok=1)
                return resp
            if resp.status == 401 and not refreshed:
                refreshed = True
                await self.tokens.token(force_refresh=True)
                continue
            if resp.status in RETRYABLE_STATUS and attempt + 1 < self.max_attempts:
                await self.sleep(retry_after(resp.headers, attempt, self.backoff_base))
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
        """Every item of a collection, following @odata.nextLink (an absolute URL) to the end,
        on the configured Graph host over HTTPS only (see `url`)."""
        items: list[dict[str, Any]] = []
        next_url: str | None = self.url(path, beta)
        while next_url:
            body = (await self.request("GET", next_url)).body
            items.extend(body.get("value", []))
            link = body.get("@odata.nextLink")
            next_url = self.url(str(link)) if link else None
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

        Returns the final response for every request id. A throttled sub-request waits for the
        longest Retry-After of its batch (the pacer learns from it) and goes again without
        spending an attempt; one that still fails for a real reason after the bounded attempts
        is returned as it is, for the caller to report. If Microsoft admits none of them for
        GIVE_UP_AFTER, a GraphError "throttledTooLong" says so.
        """
        results: dict[str, Response] = {}
        for start in range(0, len(requests), MAX_BATCH):
            pending = list(requests[start : start + MAX_BATCH])
            tally = {"sent": 0, "throttled": 0}
            attempts: dict[str, int] = {}  # real failures per sub-request; 429s not counted
            streak = 0  # rounds in a row with a 429, for backoff without Retry-After
            since: float | None = None  # when this chunk's run of nothing-but-429s began
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
                wait = throttle_wait = 0.0
                admitted = 0
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
                    if status == 429:
                        self.throttled += 1
                        tally["throttled"] += 1
                        retry.append(req)
                        throttle_wait = max(
                            throttle_wait, retry_after(headers, streak, self.backoff_base)
                        )
                        continue
                    if req.method != "GET" and status < 500:
                        admitted += 1
                    tried = attempts[req.id] = attempts.get(req.id, 0) + 1
                    if status in RETRYABLE_STATUS and tried < self.max_attempts:
                        retry.append(req)
                        wait = max(wait, retry_after(headers, tried - 1, self.backoff_base))
                        continue
                    results[req.id] = resp
                self.pacer.admitted(admitted)
                if throttle_wait and not admitted:
                    now = self.clock()
                    since = now if since is None else since
                    if now - since >= self.give_up_after:
                        self._chunk_summary(requests[start : start + MAX_BATCH], results, tally)
                        raise throttled_too_long("/$batch", now - since, tally["throttled"])
                else:
                    since = None
                if throttle_wait:
                    streak += 1
                    self.pacer.throttled(throttle_wait)
                else:
                    streak = 0
                if retry:
                    await self.sleep(max(wait, throttle_wait))
                pending = retry
            self._chunk_summary(requests[start : start + MAX_BATCH], results, tally, ok_statuses)
        return results

    def _chunk_summary(
        self,
        chunk: Sequence[BatchRequest],
        results: dict[str, Response],
        tally: dict[str, int],
        ok_statuses: Sequence[int] = (),
    ) -> None:
        writes = sorted({r.method for r in chunk} - {"GET"})
        if not writes:
            return
        done = [results[r.id] for r in chunk if r.id in results]
        ok = sum(r.ok or r.status in ok_statuses for r in done)
        self._summary(
            "/".join(writes),
            f"$batch of {len(chunk)}",
            sent=tally["sent"],
            ok=ok,
            throttled=tally["throttled"],
            failed=len(chunk) - ok,
        )
