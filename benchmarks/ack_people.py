"""The people of the ack-latency benchmark: a Slack simulator that notes when each command's
reply arrives, and two approvers who approve every step-1 request like a quick human."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from benchmarks.common import APPROVERS, say
from simulator.slack.server import SimMessage, SlackSimulator

APPROVER_DELAY = 1.0  # seconds from an approval request appearing to the approvers' reactions
REVOTE_AFTER = 10.0  # seconds after which a vote the bot did not count is cast again


class TimedSlack(SlackSimulator):
    """The Slack simulator, noting when each response_url delivery arrives."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reply_at: dict[str, float] = {}

    async def _response_url(self, request: web.Request) -> web.Response:
        self.reply_at.setdefault(request.match_info["key"], time.perf_counter())
        return await super()._response_url(request)


class Approvers:
    """Two approvers approve every step-1 request, APPROVER_DELAY after it appears (a quick
    human). A vote the bot did not count (the closure still awaits approval REVOTE_AFTER later)
    is counted in `lost` and cast again: reaction removed and added back."""

    def __init__(self, slack: SlackSimulator, state_of: Callable[[str], str | None]) -> None:
        self.slack = slack
        self.state_of = state_of  # a tenant's closure state, as last sampled
        self.lost = 0
        self.queue: asyncio.Queue[SimMessage] = asyncio.Queue()
        slack.subscribe(self.on_message)

    def on_message(self, kind: str, msg: SimMessage) -> None:
        meta = msg.metadata or {}
        payload = meta.get("event_payload") or {}
        if (
            kind == "posted"
            and meta.get("event_type") == "close_account_approval"
            and payload.get("step") == "delete_users"
        ):
            self.queue.put_nowait(msg)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                msg = await self.queue.get()
                group.create_task(self.approve(msg))

    async def approve(self, msg: SimMessage) -> None:
        tenant = str(((msg.metadata or {}).get("event_payload") or {}).get("tenant"))
        await asyncio.sleep(APPROVER_DELAY)
        for user in APPROVERS[:2]:
            await self.react(msg, user)
        while True:
            await asyncio.sleep(REVOTE_AFTER)
            if self.state_of(tenant) != "delete_users.awaiting_approval":
                return
            self.lost += 1
            for user in APPROVERS[:2]:
                await self.react(msg, user, remove=True)
                await self.react(msg, user)

    async def react(self, msg: SimMessage, user: str, remove: bool = False) -> None:
        try:
            result = await self.slack.react(
                user_id=user, channel=msg.channel, ts=msg.ts, name="white_check_mark", remove=remove
            )
        except ValueError as exc:
            say(f"  approver {user}: {exc}")
            return
        if result.status != 200:
            say(f"  approver {user}: the bot answered {result.status} {result.body!r}")
