"""Thread posts: queued with the state change they report, sent in order and at most once; a post
whose send a crash may have cut is looked up in the thread (the bot's own messages) first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot.slackapi import find_message
from storage import approvals as requests_db
from storage import closures as closures_db
from storage import outbox
from storage import slack as slack_db
from storage.closures import ClosureRow
from storage.db import transaction

MAX_TEXT = 39000  # chat.postMessage's text limit is 40,000 characters


@dataclass(frozen=True)
class Post:
    """A thread post: queued in the outbox, sent in order, at most once."""

    text: str
    step: str | None = None
    kind: str = "reply"
    blocks: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    request_id: int | None = None


@dataclass(eq=False, kw_only=True)
class Outbox:
    db: Database
    client: AsyncWebClient
    clock: Callable[[], float]
    # Posts go in the status message's thread: it is posted first.
    show_status: Callable[[str], Awaitable[None]]
    mark_requests: Callable[[str], Awaitable[None]]  # requests that ended show how, after the posts
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    def enqueue(self, closure_id: str, post: Post) -> int:
        """Queue a thread post; inside a transaction it commits with the state change."""
        return outbox.enqueue(
            self.db,
            closure_id=closure_id,
            step=post.step,
            kind=post.kind,
            text=post.text[:MAX_TEXT],
            blocks=post.blocks,
            metadata=post.metadata,
            request_id=post.request_id,
            at=self.clock(),
        )

    def pending(self, closure_id: str) -> bool:
        return bool(outbox.pending(self.db, closure_id))

    async def say(self, closure_id: str, text: str, *, step: str | None = None) -> None:
        """Post in the closure's thread (through the outbox)."""
        self.enqueue(closure_id, Post(text, step))
        await self.flush(closure_id)

    async def settled(self) -> None:
        """Wait until the sends under way are recorded (a request's ts, say)."""
        for lock in list(self._locks.values()):
            async with lock:
                pass

    async def flush(self, closure_id: str) -> None:
        """Send the closure's queued posts in order; a post whose send may have reached Slack
        before a crash is looked up in the thread first, so nothing is posted twice."""
        async with self._locks.setdefault(closure_id, asyncio.Lock()):
            posts = outbox.pending(self.db, closure_id)
            if not posts:
                await self.mark_requests(closure_id)
                return
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:
                return
            if row.status_ts is None:
                await self.show_status(closure_id)
                row = closures_db.get_closure(self.db, closure_id)
                assert row is not None
            for post in posts:
                await self._send(row, post)
        await self.mark_requests(closure_id)

    async def _send(self, row: ClosureRow, post: outbox.PostRow) -> None:
        # The post's number and when it was queued: a database restored from a backup numbers
        # new posts again from where the backup ends, and the time tells them apart from the
        # posts of the lost database that had the same numbers.
        metadata = post.metadata or {
            "event_type": "close_account_event",
            "event_payload": {
                "closure_id": row.id,
                "post_id": post.id,
                "queued_at": round(post.created_at * 1000),
            },
        }
        ts = None
        if post.sending_at is not None:
            ts = await self._already_posted(row, metadata)
        if ts is None:
            outbox.mark_sending(self.db, post.id, self.clock())
            kwargs: dict[str, Any] = {
                "channel": row.channel,
                "text": post.text,
                "thread_ts": row.status_ts,
                "metadata": metadata,
            }
            if post.blocks is not None:
                kwargs["blocks"] = post.blocks
            resp = await self.client.chat_postMessage(**kwargs)
            ts = str(resp["ts"])
        with transaction(self.db):
            outbox.mark_sent(self.db, post.id, ts)
            slack_db.record_message(
                self.db,
                closure_id=row.id,
                step=post.step,
                kind=post.kind,
                channel=row.channel,
                ts=ts,
                thread_ts=row.status_ts,
                at=self.clock(),
            )
            if post.request_id is not None:
                requests_db.set_request_message(self.db, post.request_id, row.channel, ts)

    async def _already_posted(self, row: ClosureRow, metadata: dict[str, Any]) -> str | None:
        """The ts of the bot's own message in the thread carrying exactly this metadata, if any
        (a message someone else posts with a copy of it is not the bot's post)."""
        assert row.status_ts is not None  # posts go in the status message's thread
        thread = row.status_ts
        me = (await self.client.auth_test()).get("bot_id")

        def page(cursor: str | None) -> Awaitable[Any]:
            return self.client.conversations_replies(
                channel=row.channel, ts=thread, include_all_metadata=True, limit=200, cursor=cursor
            )

        def match(message: dict[str, Any]) -> bool:
            found = message.get("metadata") or {}
            return (
                message.get("bot_id") == me
                and found.get("event_type") == metadata["event_type"]
                and found.get("event_payload") == metadata["event_payload"]
            )

        return await find_message(page, match)
