"""The Slack Web API client the bot uses: slack-sdk's, counting every call and failure by method
for /metrics and logging each failure (after slack-sdk's own retries)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import Metrics

log = logging.getLogger("close_account_bot.slack")


class ObservedWebClient(AsyncWebClient):
    """Bolt and the Socket Mode handler need an AsyncWebClient, so this one is a subclass: every
    method of slack-sdk's client goes through `api_call`, which is the one place observed."""

    def __init__(
        self, *args: Any, metrics: Metrics | None = None, quiet: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        # While `run` starts, a failure is the start's to report, in its one line.
        self.quiet = quiet

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        if self.metrics is not None:
            self.metrics.slack_calls.inc(method=api_method)
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            plain_error(exc)
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            self._failed(api_method, error)
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(api_method, type(exc).__name__, str(exc))
            raise

    def _failed(self, method: str, error: str, detail: str = "") -> None:
        if self.metrics is not None:
            self.metrics.slack_errors.inc(method=method, error=error)
        if self.quiet:
            return
        log.warning(
            "Slack %s failed: %s%s",
            method,
            error,
            f" ({detail})" if detail else "",
            extra={"slack_method": method, "slack_error": error},
        )


async def find_message(
    page: Callable[[str | None], Awaitable[Any]], match: Callable[[dict[str, Any]], bool]
) -> str | None:
    """The ts of the first message `match` accepts, reading `page(cursor)` (a history or
    replies call) page by page; None when no page has one."""
    cursor = None
    while True:
        resp = await page(cursor)
        for message in resp.get("messages") or []:
            if match(message):
                return str(message["ts"])
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None


def plain_error(exc: SlackApiError) -> None:
    """Give an answer that was not Slack's JSON (a proxy's "upstream connect error", an HTML or
    plain-text 404 or 502) Slack's error shape, `{"ok": false, "error": "http_502"}`, so every
    `exc.response.get("error")` works; slack-sdk keeps such a body as a string."""
    response = exc.response
    if not isinstance(response.data, dict):
        response.data = {"ok": False, "error": f"http_{response.status_code}"}
