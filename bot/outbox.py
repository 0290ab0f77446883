"""Thread posts: queued with the state change they report, sent in order and at most once; a post
whose send a crash may have cut is looked up in the thread (the bot's own messages) first. A post
Slack refuses for good (too long, blocks it rejects) is replaced by a short stand-in or, failing
that, recorded and skipped, with a note to the requester: it never holds up the posts after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import messages
from bot.slackapi import (
    CHANNEL_ERRORS,
    BotIdentity,
    find_message,
    posted_by,
    slack_error,
    transient,
)
from bot.status import lookalike_seen
from storage import approvals as requests_db
from storage import audit, outbox
from storage import closures as closures_db
from storage import slack as slack_db
from storage.closures import ClosureRow
from storage.db import transaction

MAX_TEXT = 39000  # chat.postMessage's text limit is 40,000 characters
log = logging.getLogger("close_account_bot.outbox")


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
    me: BotIdentity
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
            if posts:
                row = closures_db.get_closure(self.db, closure_id)
                if row is None:
                    return
                if row.status_ts is None:
                    await self.show_status(closure_id)
                    row = closures_db.get_closure(self.db, closure_id)
                    assert row is not None
                for post in posts:
                    await self._send(row, post)
        # Outside the lock, posts or none: what follows them may post again (bot.summary's
        # Records says in the thread that the list of what a closure changed was refused).
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
            try:
                resp = await self.client.chat_postMessage(**kwargs)
                ts = str(resp["ts"])
            except SlackApiError as exc:
                if transient(exc) or slack_error(exc) in CHANNEL_ERRORS:
                    raise  # every post would fail: the runner says so and tries again later
                ts = await self._stand_in(row, post, slack_error(exc), metadata)
                if ts is None:
                    return
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

    async def _stand_in(
        self, row: ClosureRow, post: outbox.PostRow, error: str, metadata: dict[str, Any]
    ) -> str | None:
        """Slack refused `post` itself: post a short plain-text stand-in (same metadata, so
        votes and crash recovery work on it); if that is refused too, record the post as
        refused and tell the requester. Either way the posts after it go on."""
        assert row.status_ts is not None
        detail = {"post_id": post.id, "kind": post.kind, "error": error}
        try:
            resp = await self.client.chat_postMessage(
                channel=row.channel,
                text=messages.post_refused(error, post.text),
                thread_ts=row.status_ts,
                metadata=metadata,
            )
        except SlackApiError as exc:
            if transient(exc) or slack_error(exc) in CHANNEL_ERRORS:
                raise
            detail["stand_in_error"] = slack_error(exc)
        else:
            audit.record(
                self.db,
                row,
                "post_refused",
                at=self.clock(),
                step=post.step,
                detail={**detail, "stand_in": True},
            )
            return str(resp["ts"])
        with transaction(self.db):
            outbox.mark_refused(self.db, post.id, error)
            audit.record(
                self.db, row, "post_refused", at=self.clock(), step=post.step, detail=detail
            )
        log.warning("closure %s: Slack refused post %s for good: %s", row.id, post.id, error)
        with contextlib.suppress(SlackApiError, aiohttp.ClientError, TimeoutError):
            await self.client.chat_postEphemeral(
                channel=row.channel, user=row.requester, text=messages.post_lost(error)
            )
        return None

    async def _already_posted(self, row: ClosureRow, metadata: dict[str, Any]) -> str | None:
        """The ts of the bot's own message in the thread carrying exactly this metadata, if any
        (a message someone else posts with a copy of it is not the bot's post)."""
        assert row.status_ts is not None  # posts go in the status message's thread
        thread = row.status_ts
        me = await self.me.ids()
        lookalikes: list[dict[str, Any]] = []

        def page(cursor: str | None) -> Awaitable[Any]:
            return self.client.conversations_replies(
                channel=row.channel, ts=thread, include_all_metadata=True, limit=200, cursor=cursor
            )

        def match(message: dict[str, Any]) -> bool:
            found = message.get("metadata") or {}
            if (
                found.get("event_type") != metadata["event_type"]
                or found.get("event_payload") != metadata["event_payload"]
            ):
                return False
            if posted_by(me, message):
                return True
            lookalikes.append(message)
            return False

        ts = await find_message(page, match)
        for message in lookalikes:
            lookalike_seen(self.db, row, message, at=self.clock(), kind="thread_post")
        return ts
