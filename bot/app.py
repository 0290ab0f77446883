"""The Bolt app: thin listeners that ack first and hand the work to the core objects."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import commands, home
from bot.actions import Actions
from bot.home import HomeSource
from bot.reactions import Reactions
from bot.runner import Background
from storage import audit

log = logging.getLogger("close_account_bot.app")


class _SameToken(logging.Filter):
    """Drops Bolt's "As you gave `client` as well, `token` will be unused." at every start.

    AsyncApp takes `token or os.environ["SLACK_BOT_TOKEN"]` and warns when that is set next to
    `client` (slack_bolt/app/async_app.py, AsyncApp.__init__), so `run`, whose token comes from
    that variable, cannot avoid it without editing its own environment; the client carries the
    very same token. Only that one message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


class OwnApp:
    """The workspace, enterprise and app the bot's token belongs to (auth.test, asked once and
    kept): a request naming any other was not meant for this bot, signed or not."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._ids: asyncio.Task[dict[str, str | None]] | None = None

    async def ids(self) -> dict[str, str | None]:
        if self._ids is None or (self._ids.done() and self._ids.exception() is not None):
            self._ids = asyncio.ensure_future(self._ask())
        return await asyncio.shield(self._ids)

    async def _ask(self) -> dict[str, str | None]:
        resp = await self.client.auth_test()
        return {
            "team_id": resp.get("team_id"),
            "enterprise_id": resp.get("enterprise_id") or None,
            # auth.test names the app for some tokens; without it the app is not compared.
            "app_id": resp.get("app_id"),
        }

    async def stranger(self, body: Mapping[str, Any]) -> str | None:
        """Which of team, enterprise or app in `body` is not the bot's own, if any."""
        if "team_id" not in body and "api_app_id" not in body:
            return None  # url_verification and the like name no workspace
        own = await self.ids()
        auths = body.get("authorizations")
        first = auths[0] if isinstance(auths, list) and auths else {}
        theirs = {
            "team_id": body.get("team_id"),
            "enterprise_id": body.get("enterprise_id") or first.get("enterprise_id") or None,
            "app_id": body.get("api_app_id"),
        }
        for key in ("team_id", "enterprise_id", "app_id"):
            if key == "app_id" and own[key] is None:
                continue
            if (theirs[key] or None) != own[key]:
                return key
        return None


def build_app(
    *,
    actions: Actions,
    reactions: Reactions,
    home_source: HomeSource,
    background: Background,
    client: AsyncWebClient,
    signing_secret: str | None,
    own_app: OwnApp | None = None,
    db: Database | None = None,  # where refusals of other teams' requests are audited
    clock: Callable[[], float] = time.time,
) -> AsyncApp:
    bolt_logger = logging.getLogger(f"slack_bolt.{AsyncApp.__name__}")  # Bolt's get_bolt_logger
    if not any(isinstance(f, _SameToken) for f in bolt_logger.filters):
        bolt_logger.addFilter(_SameToken())
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        # Socket Mode has no signature; HTTP mode always checks it.
        request_verification_enabled=signing_secret is not None,
        # Events are answered only once processed: a vote is stored before Slack hears 200,
        # so a crash in between makes Slack deliver it again (and the event ID dedupes it).
        process_before_response=True,
    )

    own = own_app or OwnApp(client)

    @app.middleware
    async def only_for_this_app(
        body: dict[str, Any], next: Callable[[], Awaitable[BoltResponse | None]]
    ) -> BoltResponse | None:
        # Events and commands carry team_id, api_app_id and enterprise_id; Slack signs them
        # for the app they are for, so one naming another is refused and left in the log.
        stranger = await own.stranger(body)
        if stranger is not None:
            kind = body.get("type") or ("command" if "command" in body else "request")
            what = body.get("event_id") or body.get("command") or "-"
            log.warning(
                "refused a %s for another %s (%s)", kind, stranger.removesuffix("_id"), what
            )
            if db is not None:
                auths = body.get("authorizations")
                first = auths[0] if isinstance(auths, list) and auths else {}
                event = body.get("event")
                user = body.get("user_id") or (
                    event.get("user") if isinstance(event, dict) else None
                )
                audit.foreign_refused(
                    db,
                    at=clock(),
                    actor=str(user or "unknown"),
                    detail={
                        "kind": kind,
                        "what": what,
                        "mismatch": stranger,
                        "team_id": body.get("team_id"),
                        "app_id": body.get("api_app_id"),
                        "enterprise_id": body.get("enterprise_id")
                        or first.get("enterprise_id")
                        or None,
                    },
                )
            return BoltResponse(status=401, body="")
        return await next()

    @app.command("/close-account")
    async def close_account(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        # A slow command (the plan preview) says at once that it is working; the rest acks empty.
        user, text = str(body.get("user_id", "")), str(body.get("text", ""))
        await ack(text=commands.first_answer(actions, user, text) or "")

        async def run() -> None:
            reply = await commands.handle(
                actions, str(body.get("user_id", "")), str(body.get("text", ""))
            )
            await respond(text=reply.text, response_type="ephemeral")

        # After the ack: a command may take longer than Slack's 3 s (it answers at response_url).
        background.run(run())

    async def on_reaction(body: dict[str, Any], event: dict[str, Any], added: bool) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "message":
            return
        if not body.get("event_id"):
            return
        with background.busy():
            await reactions.reaction(
                user=str(event.get("user", "")),
                reaction=str(event.get("reaction", "")),
                channel=str(item.get("channel", "")),
                ts=str(item.get("ts", "")),
                added=added,
                event_id=str(body.get("event_id", "")),
            )

    @app.event("reaction_added")
    async def reaction_added(body: dict[str, Any], event: dict[str, Any]) -> None:
        await on_reaction(body, event, True)

    @app.event("app_home_opened")
    async def app_home_opened(event: dict[str, Any]) -> None:
        # views.publish goes after the answer: Slack's 3 s must not wait on its rate limits.
        background.run(home.publish_home(home_source, str(event.get("user", ""))))

    @app.event("reaction_removed")
    async def reaction_removed(body: dict[str, Any], event: dict[str, Any]) -> None:
        await on_reaction(body, event, False)

    return app
