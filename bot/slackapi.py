"""The Slack Web API client the bot uses: slack-sdk's, counting every call and failure by method
for /metrics and logging each failure (after slack-sdk's own retries), pacing the methods whose
calls come in bursts (reactions.get after a restart) within their tier; the bot's own identity,
so that only its own messages are ever taken for its posts; which errors last."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
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
        self,
        *args: Any,
        metrics: Metrics | None = None,
        quiet: bool = False,
        paces: Mapping[str, Pace] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        # While `run` starts, a failure is the start's to report, in its one line.
        self.quiet = quiet
        self.paces = default_paces() if paces is None else dict(paces)

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        pace = self.paces.get(api_method)
        if pace is not None and (wait := pace.reserve(time.monotonic())) > 0:
            await asyncio.sleep(wait)
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


# -- pacing ----------------------------------------------------------------------------------


@dataclass(eq=False)
class Pace:
    """A token bucket for one Web API method: `burst` calls at once, then `per_minute`. Each
    call reserves the next slot, so calls made together (one per open request after a restart)
    go out spread over the minute instead of meeting Slack's 429."""

    per_minute: float
    burst: int
    _free_at: float = field(default=float("-inf"), init=False)

    def reserve(self, now: float) -> float:
        """Seconds to wait before this call may go out (0: now)."""
        spacing = 60.0 / self.per_minute
        start = max(self._free_at, now - (self.burst - 1) * spacing)
        self._free_at = start + spacing
        return max(0.0, start - now)


def default_paces() -> dict[str, Pace]:
    """Fresh buckets for one client (each client paces its own calls). reactions.get is Tier 3,
    "50+ per minute" (Slack's method page, https://api.slack.com/methods/reactions.get); a
    restart reads one per open request."""
    return {"reactions.get": Pace(per_minute=50, burst=10)}


# -- the bot's own identity ------------------------------------------------------------------


@dataclass(eq=False)
class BotIdentity:
    """Who the bot is in Slack (auth.test's bot_id and user_id), asked once and kept: a
    message is the bot's only if the bot posted it, whatever metadata it carries."""

    client: AsyncWebClient
    _ids: tuple[str | None, str | None] | None = field(default=None, init=False)

    async def ids(self) -> tuple[str | None, str | None]:
        if self._ids is None:
            resp = await self.client.auth_test()
            self._ids = (resp.get("bot_id"), resp.get("user_id"))
        return self._ids

    async def posted(self, message: Mapping[str, Any]) -> bool:
        """Whether the bot posted `message` (a conversations.history or .replies item)."""
        return posted_by(await self.ids(), message)


def posted_by(ids: tuple[str | None, str | None], message: Mapping[str, Any]) -> bool:
    """Whether the bot with `ids` (bot_id, user_id) posted `message`."""
    bot_id, user_id = ids
    if bot_id is None or message.get("bot_id") != bot_id:
        return False
    return message.get("user") in (None, user_id)


# -- which errors last -----------------------------------------------------------------------


def slack_error(exc: BaseException) -> str:
    """Slack's error code, or what went wrong on the way to Slack."""
    if isinstance(exc, SlackApiError):
        plain_error(exc)
        return str(exc.response.get("error") or f"http_{exc.response.status_code}")
    return type(exc).__name__


# Slack's own trouble answered as `ok: false` (Slack's Web API docs, "Common errors" on every
# method page: fatal_error "It's possible some aspect of the operation succeeded before the error
# was raised", internal_error, service_unavailable, request_timeout): the call may be taken later,
# and a post may have gone through, so it is looked up, not re-sent blindly.
SLACK_TROUBLE = frozenset(
    {"ratelimited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)


def transient(exc: SlackApiError) -> bool:
    """Whether Slack may take the same call later: rate limited, or Slack's own trouble."""
    status = getattr(exc.response, "status_code", 200)
    return exc.response.get("error") in SLACK_TROUBLE or status >= 500


# Errors about the channel or the bot's install: every call fails until a person fixes it.
CHANNEL_ERRORS = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "team_access_not_granted",
        "restricted_action",
        "ekm_access_denied",
    }
)
