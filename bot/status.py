"""The closure's status message: posted once, then edited in place by a coalescing writer within
the workspace's edit budget; each edit shows the closure as it is when sent."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import blocks, messages
from bot.editbudget import EditBudget
from bot.slackapi import BotIdentity, find_message, posted_by, slack_error, transient
from statemachine import approvals as rules
from statemachine import steps
from statemachine.closure import split_state
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage import slack as slack_db
from storage.closures import ClosureRow

log = logging.getLogger("close_account_bot.status")
NEVER = -1e18


def rollback_possible(db: Database, closure: ClosureRow) -> bool | None:
    """Whether `rollback` may still run: until the irreversible step starts acting (None where
    it is not worth saying)."""
    step, phase = split_state(closure.state)
    last = steps.point_of_no_return()
    started = last is not None and closures_db.get_step(db, closure.id, last).started_at is not None
    return rules.rollback_possible(step, phase, irreversible_started=started)


def approved_by(db: Database, closure_id: str) -> dict[str, list[str]]:
    """Who approved each step whose request was approved."""
    return {
        req.step: [v.approver for v in requests_db.votes_for(db, req.id) if v.kind == "approve"]
        for req in requests_db.requests_of(db, closure_id)
        if req.status == "approved"
    }


def status_view(
    db: Database, row: ClosureRow, progress: blocks.Progress | None = None
) -> blocks.StatusView:
    """The closure as its status message shows it, read from the database."""
    step, phase = split_state(row.state)
    failed = phase in ("blocked", "failed", "rejected", "aborted")
    note = messages.shown_reason(phase, row.reason) if failed and row.reason else None
    if step and phase == "awaiting_approval":
        req = requests_db.open_request(db, row.id, step)
        if req is not None:
            votes = [v.approver for v in requests_db.votes_for(db, req.id) if v.kind == "approve"]
            note = messages.approvals_so_far(votes, req.quorum)
    if step and phase == "executing" and progress is None:
        info = closures_db.get_step(db, row.id, step)
        if info.total:
            progress = blocks.Progress(info.done, info.total)
    return blocks.StatusView(
        closure_id=row.id,
        tenant=row.tenant,
        tenant_id=row.tenant_id,
        state=row.state,
        requester=row.requester,
        display_name=row.display_name,
        note=note,
        rollback_possible=rollback_possible(db, row),
        approvals=approved_by(db, row.id),
        progress=progress,
    )


def lookalike_seen(
    db: Database, row: ClosureRow, message: dict[str, Any], *, at: float, kind: str
) -> None:
    """Audit a message that carries the bot's metadata but that the bot did not post (another
    app or a person copying it): it is ignored, never taken for the bot's `kind` of message."""
    audit.record(
        db,
        row,
        "lookalike_ignored",
        at=at,
        actor=str(message.get("user") or message.get("bot_id") or "unknown"),
        detail={"kind": kind, "ts": message.get("ts"), "bot_id": message.get("bot_id")},
    )


@dataclass(eq=False, kw_only=True)
class Status:
    db: Database
    client: AsyncWebClient
    me: BotIdentity
    clock: Callable[[], float]
    interval: float  # at most one edit per closure this often
    budget: EditBudget | None  # the workspace's, shared by every status message
    backoff: float
    flush_thread: Callable[[str], Awaitable[None]]  # the thread says it before the status does
    thread_pending: Callable[[str], bool]
    _last_edit: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _writers: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False, repr=False)
    # Status messages that show less than the closure.
    _stale: set[str] = field(default_factory=set, init=False, repr=False)
    _progress: dict[str, blocks.Progress] = field(default_factory=dict, init=False, repr=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)
    # What each message shows, as this process sent it.
    _shown: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    async def refresh(self, closure_id: str, progress: blocks.Progress | None = None) -> None:
        """Post the status message once, then edit it in place: now if its interval is up and
        the workspace's edit budget has a slot free, else through its writer (at most once per
        `interval`, showing the state at that moment)."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return
        if progress is not None:
            self._progress[closure_id] = progress
        if row.status_ts is not None:
            now = self.clock()
            due = self._last_edit.get(closure_id, NEVER) + self.interval <= now
            if not due or (self.budget is not None and not self.budget.take(now)):
                self.request(closure_id)
                return
            self._last_edit[closure_id] = now
        await self._show(closure_id, self._progress.pop(closure_id, None))

    def request(self, closure_id: str, progress: blocks.Progress | None = None) -> None:
        """Have the status message edited in the background: Slack's rate limits never hold up
        the caller (a vote's answer, a batch of deletes). Requests while one waits are one edit."""
        if progress is not None:
            self._progress[closure_id] = progress
        self._stale.add(closure_id)
        writer = self._writers.get(closure_id)
        if writer is None or writer.done():
            self._writers[closure_id] = asyncio.create_task(
                self._write(closure_id), name=f"status-{closure_id}"
            )

    def stop(self) -> None:
        for writer in list(self._writers.values()):
            writer.cancel()  # what a status message still lacks is shown after the restart

    async def _write(self, closure_id: str) -> None:
        """Edit the status message while it is stale: at most once per `interval` and within
        the edit budget, each edit showing the closure as it is when sent."""
        while closure_id in self._stale:
            wait = self._last_edit.get(closure_id, NEVER) + self.interval - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.budget is not None:
                slot = self.budget.reserve(self.clock())
                if slot > 0:
                    await asyncio.sleep(slot)
            self._stale.discard(closure_id)
            self._last_edit[closure_id] = self.clock()
            try:
                if self.thread_pending(closure_id):
                    await self.flush_thread(closure_id)
                await self._show(closure_id, self._progress.pop(closure_id, None))
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                error = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
                log.warning("closure %s: status edit failed: %s", closure_id, error)
                if isinstance(exc, SlackApiError) and not transient(exc):
                    return  # the drive loop shows it again when the closure next moves
                self._stale.add(closure_id)
                await asyncio.sleep(self.backoff)
            except Exception:  # a bug must not end the writer silently
                log.exception("closure %s: status edit failed", closure_id)
                return

    async def _show(self, closure_id: str, progress: blocks.Progress | None) -> None:
        # One edit of a status message at a time, each showing the closure as it is when it is
        # sent: an edit under way (a vote's, say) never lands after a newer one.
        async with self._locks.setdefault(closure_id, asyncio.Lock()):
            row = closures_db.get_closure(self.db, closure_id)
            if row is not None:
                executing = split_state(row.state)[1] == "executing"
                await self._send(row, progress if executing else None)

    async def _send(self, row: ClosureRow, progress: blocks.Progress | None) -> None:
        view = status_view(self.db, row, progress)
        metadata = {
            "event_type": "close_account_status",
            "event_payload": {
                "closure_id": row.id,
                "tenant": row.tenant,
                "tenant_id": row.tenant_id,
                "state": row.state,
            },
        }
        text = messages.status_summary(row.tenant, row.tenant_id, row.state)
        body = blocks.status_blocks(view)
        shown = json.dumps([text, body, metadata], sort_keys=True)
        if row.status_ts is None:
            ts = None
            if row.status_sending_at is not None:  # a crash mid-post: look before posting
                ts = await self._posted(row)
            if ts is None:
                ts = await self._post(row, text, body, metadata)
            self._store(row, ts)
        elif self._shown.get(row.id) != shown:  # an unchanged view costs no call
            try:
                await self.client.chat_update(
                    channel=row.channel,
                    ts=row.status_ts,
                    text=text,
                    blocks=body,
                    metadata=metadata,
                )
            except SlackApiError as exc:
                if slack_error(exc) != "message_not_found":
                    raise
                # Deleted in Slack (an admin, a retention policy): post it again, so the
                # closure keeps a status message and a thread.
                ts = await self._post(row, text, body, metadata)
                self._store(row, ts)
                audit.record(
                    self.db,
                    row,
                    "status_reposted",
                    at=self.clock(),
                    detail={"old_ts": row.status_ts, "ts": ts},
                )
                log.warning("closure %s: status message deleted in Slack; posted again", row.id)
        self._shown[row.id] = shown
        closures_db.set_status_shown(self.db, row.id, row.state)

    async def _post(
        self, row: ClosureRow, text: str, body: list[dict[str, Any]], metadata: dict[str, Any]
    ) -> str:
        closures_db.mark_status_sending(self.db, row.id, self.clock())
        resp = await self.client.chat_postMessage(
            channel=row.channel, text=text, blocks=body, metadata=metadata
        )
        return str(resp["ts"])

    def _store(self, row: ClosureRow, ts: str) -> None:
        closures_db.save_closure(self.db, row.id, at=self.clock(), status_ts=ts)
        slack_db.record_message(
            self.db,
            closure_id=row.id,
            step=None,
            kind="status",
            channel=row.channel,
            ts=ts,
            thread_ts=None,
            at=self.clock(),
        )

    async def _posted(self, row: ClosureRow) -> str | None:
        """The status message a crash may have posted unrecorded (the bot's own, by metadata)."""

        def page(cursor: str | None) -> Awaitable[Any]:
            return self.client.conversations_history(
                channel=row.channel,
                oldest=str(row.created_at - 60),
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )

        def match(message: dict[str, Any]) -> bool:
            meta = message.get("metadata") or {}
            return (
                meta.get("event_type") == "close_account_status"
                and (meta.get("event_payload") or {}).get("closure_id") == row.id
            )

        lookalikes: list[dict[str, Any]] = []
        me = await self.me.ids()

        def mine(message: dict[str, Any]) -> bool:
            if not match(message):
                return False
            if posted_by(me, message):
                return True
            lookalikes.append(message)
            return False

        ts = await find_message(page, mine)
        for message in lookalikes:  # another app's copy of the status metadata
            lookalike_seen(self.db, row, message, at=self.clock(), kind="status")
        return ts
