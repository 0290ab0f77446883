"""The Bolt app: thin listeners that ack first and hand the work to the core objects."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands, home
from bot.actions import Actions
from bot.home import HomeSource
from bot.reactions import Reactions
from bot.runner import Background

log = logging.getLogger("close_account_bot.app")


class _SameToken(logging.Filter):
    """Drops Bolt's "As you gave `client` as well, `token` will be unused." at every start.

    AsyncApp takes `token or os.environ["SLACK_BOT_TOKEN"]` and warns when that is set next to
    `client` (slack_bolt/app/async_app.py, AsyncApp.__init__), so `run`, whose token comes from
    that variable, cannot avoid it without editing its own environment; the client carries the
    very same token. Only that one message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_app(
    *,
    actions: Actions,
    reactions: Reactions,
    home_source: HomeSource,
    background: Background,
    client: AsyncWebClient,
    signing_secret: str | None,
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

    @app.command("/close-account")
    async def close_account(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()

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
