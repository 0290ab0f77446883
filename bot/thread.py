"""A closure's Slack thread: the status message edited in place, replies, requests, checklists."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import blocks
from bot.config import Settings, TenantSettings
from bot.editbudget import EditBudget
from bot.identity import Directory
from bot.microsoft import steps as ms
from statemachine import approvals as rules
from statemachine.closure import (
    ROLLBACK,
    STEP_TITLES,
    STEPS,
    split_state,
)
from statemachine.plan import Plan
from storage import approvals as requests_db
from storage import audit, outbox
from storage import closures as closures_db
from storage import slack as slack_db
from storage.closures import Row

log = logging.getLogger("close_account_bot.thread")


@dataclass(frozen=True)
class Post:
    """A thread post: queued in the outbox, sent in order, at most once."""

    text: str
    step: str | None = None
    kind: str = "reply"
    blocks: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    request_id: int | None = None


class ClosureOutput:
    """What every part of the runner shares: its clients, and the closure's Slack output."""

    settings: Settings
    db: Database
    client: AsyncWebClient
    tenants: dict[str, ms.Tenant]
    session: aiohttp.ClientSession
    ssl_context: Any
    clock: Callable[[], float]
    directory: Directory
    _tasks: dict[str, asyncio.Task[None]]
    _wakers: dict[str, asyncio.Event]
    _locks: dict[str, asyncio.Lock]
    _last_progress: dict[str, float]
    _flush_locks: dict[str, asyncio.Lock]
    _reconciled: set[int]
    status_interval: float
    _last_edit: dict[str, float]
    _status_writers: dict[str, asyncio.Task[None]]
    _status_stale: set[str]  # status messages that show less than the closure's state
    _edit_budget: EditBudget | None
    _pending_progress: dict[str, blocks.Progress]
    _stopping: bool
    _inflight: set[asyncio.Task[Any]]
    _status_locks: dict[str, asyncio.Lock]
    _shown_status: dict[str, str]  # what each status message shows now, as this process sent it

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run Slack-facing work after Slack has its answer: Slack's 3 s must never wait on
        Slack's own rate limits. stop() lets it finish; a Slack or network error is logged
        (the drive loop shows the state again when it next moves)."""

        async def run() -> None:
            try:
                await work
            except SlackApiError as exc:
                log.warning("Slack error after an answer: %s", exc.response.get("error"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("Slack unreachable after an answer: %s", exc)

        task = asyncio.create_task(run())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _backoff(self) -> float:
        """How long to wait before trying again after an error that changed nothing."""
        return min(self.settings.timing.poll_interval, 30.0)

    def tenant_of(self, row: Row) -> ms.Tenant:
        return self.tenants[row["tenant"]]

    def settings_of(self, row: Row) -> TenantSettings:
        return self.tenants[row["tenant"]].settings

    def requester_of(self, row: Row) -> str:
        """Who asked for what is being approved now: the closure, or its rollback."""
        if split_state(row["state"])[0] == ROLLBACK:
            return str(row["extra"].get("rollback_requester") or row["requester"])
        return str(row["requester"])

    def approver_ids(self, row: Row) -> tuple[str, ...]:
        """The tenant's approvers as user IDs; during a rollback the closure's own requester
        is left out too (rule 1: the requester of a closure never counts)."""
        ids = self.directory.ids(self.settings_of(row).approvers)
        if split_state(row["state"])[0] == ROLLBACK:
            ids = tuple(i for i in ids if i != row["requester"])
        return ids

    def rollback_possible(self, row: Row) -> bool | None:
        """Whether `rollback` may still run: until step 5's approval starts the purge.
        None where it is not worth saying (closed, rolled back, rolling back)."""
        step, phase = split_state(row["state"])
        if phase in ("closed", "rolled_back") or step == ROLLBACK:
            return None
        started = closures_db.get_step(self.db, row["id"], STEPS[-1])["started_at"]
        return started is None

    def record(
        self,
        row: Row,
        action: str,
        *,
        actor: str = "bot",
        step: str | None = None,
        plan_hash: str | None = None,
        event_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append to the audit trail for this closure, now."""
        audit.append(
            self.db,
            tenant=row["tenant"],
            closure_id=row["id"],
            at=self.clock(),
            actor=actor,
            action=action,
            step=step,
            plan_hash=plan_hash,
            event_id=event_id,
            detail=detail,
        )

    def _no(self, step: str | None) -> int:
        return STEPS.index(step) + 1 if step in STEPS else 0

    def _name(self, step: str | None) -> str:
        """'Step 2' for a step of the runbook, 'The rollback' for a rollback."""
        return f"Step {self._no(step)}" if step in STEPS else "The rollback"

    def enqueue(self, closure_id: str, post: Post) -> int:
        """Queue a thread post; inside a transaction it commits with the state change."""
        return outbox.enqueue(
            self.db,
            closure_id=closure_id,
            step=post.step,
            kind=post.kind,
            text=post.text[:39000],
            blocks=post.blocks,
            metadata=post.metadata,
            request_id=post.request_id,
            at=self.clock(),
        )

    async def say(
        self,
        closure_id: str,
        text: str,
        *,
        step: str | None = None,
        kind: str = "reply",
        blocks_: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Post in the closure's thread (through the outbox)."""
        self.enqueue(closure_id, Post(text, step, kind, blocks_, metadata))
        await self.flush(closure_id)

    async def flush(self, closure_id: str) -> None:
        """Send the closure's queued posts in order; a post whose send may have reached Slack
        before a crash is looked up in the thread first, so nothing is posted twice."""
        lock = self._flush_locks.setdefault(closure_id, asyncio.Lock())
        async with lock:
            posts = outbox.pending(self.db, closure_id)
            if not posts:
                await self.mark_requests(closure_id)
                return
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:
                return
            if row["status_ts"] is None:
                await self.refresh_status(closure_id)
                row = closures_db.get_closure(self.db, closure_id)
                assert row is not None
            for post in posts:
                # The post's number and when it was queued: a database restored from a backup
                # numbers new posts again from where the backup ends, and the time tells them
                # apart from the posts of the lost database that had the same numbers.
                metadata = post["metadata"] or {
                    "event_type": "close_account_event",
                    "event_payload": {
                        "closure_id": closure_id,
                        "post_id": post["id"],
                        "queued_at": round(post["created_at"] * 1000),
                    },
                }
                ts = None
                if post["sending_at"] is not None:
                    ts = await self._already_posted(row, metadata)
                if ts is None:
                    outbox.mark_sending(self.db, post["id"], self.clock())
                    kwargs: dict[str, Any] = {
                        "channel": row["channel"],
                        "text": post["text"],
                        "thread_ts": row["status_ts"],
                        "metadata": metadata,
                    }
                    if post["blocks"] is not None:
                        kwargs["blocks"] = post["blocks"]
                    resp = await self.client.chat_postMessage(**kwargs)
                    ts = str(resp["ts"])
                with self.db.atomic():
                    outbox.mark_sent(self.db, post["id"], ts)
                    slack_db.record_message(
                        self.db,
                        closure_id=closure_id,
                        step=post["step"],
                        kind=post["kind"],
                        channel=row["channel"],
                        ts=ts,
                        thread_ts=row["status_ts"],
                        at=self.clock(),
                    )
                    if post["request_id"] is not None:
                        requests_db.set_request_message(
                            self.db, post["request_id"], row["channel"], ts
                        )
        await self.mark_requests(closure_id)

    async def _already_posted(self, row: Row, metadata: dict[str, Any]) -> str | None:
        """The ts of the bot's own message in the thread carrying exactly this metadata, if any
        (a message someone else posts with a copy of it is not the bot's post)."""
        me = (await self.client.auth_test()).get("bot_id")
        cursor = None
        while True:
            resp = await self.client.conversations_replies(
                channel=row["channel"],
                ts=row["status_ts"],
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for message in resp.get("messages") or []:
                if (
                    message.get("bot_id") == me
                    and (message.get("metadata") or {}).get("event_type") == metadata["event_type"]
                    and message["metadata"].get("event_payload") == metadata["event_payload"]
                ):
                    return str(message["ts"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def status_view(self, row: Row, progress: blocks.Progress | None = None) -> blocks.StatusView:
        approved: dict[str, list[str]] = {}
        for req in requests_db.requests_of(self.db, row["id"]):
            if req["status"] == "approved":
                approved[req["step"]] = [
                    v["approver"]
                    for v in requests_db.votes_for(self.db, req["id"])
                    if v["kind"] == "approve"
                ]
        step, phase = split_state(row["state"])
        note = row["reason"] if phase in ("blocked", "failed", "rejected", "aborted") else None
        if step and phase == "awaiting_approval":
            open_req = requests_db.open_request(self.db, row["id"], step)
            if open_req is not None:
                votes = [
                    v["approver"]
                    for v in requests_db.votes_for(self.db, open_req["id"])
                    if v["kind"] == "approve"
                ]
                note = f"Approvals: {len(votes)}/{open_req['quorum']}" + (
                    f" ({blocks.mentions(votes)})" if votes else ""
                )
        if step and phase == "executing" and progress is None:
            info = closures_db.get_step(self.db, row["id"], step)
            if info["total"]:
                progress = blocks.Progress(info["done"], info["total"])
        return blocks.StatusView(
            closure_id=row["id"],
            tenant=row["tenant"],
            tenant_id=row["tenant_id"],
            state=row["state"],
            requester=row["requester"],
            display_name=row["extra"].get("display_name"),
            note=note,
            rollback_possible=self.rollback_possible(row),
            approvals=approved,
            progress=progress,
        )

    async def refresh_status(
        self, closure_id: str, progress: blocks.Progress | None = None
    ) -> None:
        """Post the status message once, then edit it in place: now if its interval is up and
        the workspace's edit budget has a slot free, else through its status writer (at most
        once per `status_interval`, showing the state at that moment)."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return
        if progress is not None:
            self._pending_progress[closure_id] = progress
        if row["status_ts"] is not None:
            now = self.clock()
            due = self._last_edit.get(closure_id, -1e18) + self.status_interval <= now
            if not due or (self._edit_budget is not None and not self._edit_budget.take(now)):
                self.request_status(closure_id)
                return
            self._last_edit[closure_id] = now
        await self._show_status(closure_id, self._pending_progress.pop(closure_id, None))

    def request_status(self, closure_id: str, progress: blocks.Progress | None = None) -> None:
        """Have the status message edited in the background: Slack's rate limits never hold up
        the caller (a vote's answer, a batch of deletes). Requests while one waits are one edit."""
        if progress is not None:
            self._pending_progress[closure_id] = progress
        self._status_stale.add(closure_id)
        writer = self._status_writers.get(closure_id)
        if writer is None or writer.done():
            self._status_writers[closure_id] = asyncio.create_task(
                self._write_status(closure_id), name=f"status-{closure_id}"
            )

    async def _write_status(self, closure_id: str) -> None:
        """Edit the status message while it is stale: at most once per `status_interval` and
        within the workspace's edit budget, each edit showing the closure as it is when sent
        (edits asked for meanwhile are one edit)."""
        while closure_id in self._status_stale:
            wait = self._last_edit.get(closure_id, -1e18) + self.status_interval - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._edit_budget is not None:
                slot = self._edit_budget.reserve(self.clock())
                if slot > 0:
                    await asyncio.sleep(slot)
            self._status_stale.discard(closure_id)
            self._last_edit[closure_id] = self.clock()
            try:
                if outbox.pending(self.db, closure_id):  # the thread says it before the status
                    await self.flush(closure_id)
                await self._show_status(closure_id, self._pending_progress.pop(closure_id, None))
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                error = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
                log.warning("closure %s: status edit failed: %s", closure_id, error)
                if isinstance(exc, SlackApiError) and not _transient(exc):
                    return  # the drive loop shows it again when the closure next moves
                self._status_stale.add(closure_id)
                await asyncio.sleep(self._backoff())
            except Exception:  # a bug must not end the writer silently
                log.exception("closure %s: status edit failed", closure_id)
                return

    async def _show_status(self, closure_id: str, progress: blocks.Progress | None) -> None:
        # One edit of a status message at a time, each showing the closure as it is when it is
        # sent: an edit under way (a vote's, say) never lands after a newer one.
        async with self._status_locks.setdefault(closure_id, asyncio.Lock()):
            row = closures_db.get_closure(self.db, closure_id)
            if row is not None:
                executing = split_state(row["state"])[1] == "executing"
                await self._send_status(row, progress if executing else None)

    async def _send_status(self, row: Row, progress: blocks.Progress | None) -> None:
        closure_id = row["id"]
        view = self.status_view(row, progress)
        metadata = {
            "event_type": "close_account_status",
            "event_payload": {
                "closure_id": row["id"],
                "tenant": row["tenant"],
                "tenant_id": row["tenant_id"],
                "state": row["state"],
            },
        }
        text = blocks.status_text(view)
        body = blocks.status_blocks(view)
        shown = json.dumps([text, body, metadata], sort_keys=True)
        if row["status_ts"] is None:
            ts = None
            if row["status_sending_at"] is not None:  # a crash mid-post: look before posting
                ts = await self._status_posted(row)
            if ts is None:
                closures_db.mark_status_sending(self.db, closure_id, self.clock())
                resp = await self.client.chat_postMessage(
                    channel=row["channel"], text=text, blocks=body, metadata=metadata
                )
                ts = str(resp["ts"])
            closures_db.save_closure(self.db, closure_id, at=self.clock(), status_ts=ts)
            slack_db.record_message(
                self.db,
                closure_id=closure_id,
                step=None,
                kind="status",
                channel=row["channel"],
                ts=ts,
                thread_ts=None,
                at=self.clock(),
            )
        elif self._shown_status.get(closure_id) != shown:  # an unchanged view costs no call
            await self.client.chat_update(
                channel=row["channel"],
                ts=row["status_ts"],
                text=text,
                blocks=body,
                metadata=metadata,
            )
        self._shown_status[closure_id] = shown
        closures_db.set_status_shown(self.db, closure_id, row["state"])

    async def _status_posted(self, row: Row) -> str | None:
        cursor = None
        while True:
            resp = await self.client.conversations_history(
                channel=row["channel"],
                oldest=str(row["created_at"] - 60),
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for message in resp.get("messages") or []:
                meta = message.get("metadata") or {}
                if (
                    meta.get("event_type") == "close_account_status"
                    and (meta.get("event_payload") or {}).get("closure_id") == row["id"]
                ):
                    return str(message["ts"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    async def _request_message(
        self,
        row: Row,
        plan: Plan,
        *,
        quorum: int,
        expires_at: float,
        changes: Sequence[str] = (),
        outcome: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        eligible = rules.eligible_approvers(
            [a for a in self.approver_ids(row) if await self.directory.active(a)],
            self.requester_of(row),
        )
        body = blocks.approval_blocks(
            plan,
            approvers=eligible,
            quorum=quorum,
            expires_at=expires_at,
            changes=changes,
            outcome=outcome,
        )
        metadata = {
            "event_type": "close_account_approval",
            "event_payload": {
                "closure_id": row["id"],
                "tenant": row["tenant"],
                "step": plan.step,
                "plan_hash": plan.hash,
                "quorum": quorum,
                "expires_at": int(expires_at),
            },
        }
        return body, metadata

    def _outcome(self, req: Row) -> str:
        votes = requests_db.votes_for(self.db, req["id"])
        by = {k: [v["approver"] for v in votes if v["kind"] == k] for k in ("approve", "veto")}
        return {
            "approved": f":white_check_mark: Approved by {blocks.mentions(by['approve'])}",
            "rejected": f":x: Vetoed by {blocks.mentions(by['veto'])}",
            "void": ":arrows_counterclockwise: Void: the plan changed (see below)",
            "expired": ":hourglass: Expired: a fresh request follows",
        }.get(req["status"], str(req["status"]))

    async def mark_requests(self, closure_id: str) -> None:
        """Edit each finished approval request in place to show how it ended; after a crash
        this brings them up to date, since what each shows is recorded."""
        for req in requests_db.unmarked(self.db, closure_id):
            await self.mark_request(req)
            requests_db.set_marked(self.db, req["id"], req["status"])

    async def mark_request(self, req: Row) -> None:
        outcome = self._outcome(req)
        row = closures_db.get_closure(self.db, req["closure_id"])
        plan_row = closures_db.get_plan(self.db, req["plan_id"])
        if row is None or plan_row is None:
            return
        plan = Plan.from_dict(plan_row["content"])
        body, metadata = await self._request_message(
            row, plan, quorum=req["quorum"], expires_at=req["expires_at"], outcome=outcome
        )
        await self.client.chat_update(
            channel=req["channel"],
            ts=req["ts"],
            text=f"{outcome}: " + blocks.approval_text(plan),
            blocks=body,
            metadata=metadata,
        )

    async def request_post(
        self, row: Row, plan: Plan, *, quorum: int, expires_at: float, changes: Sequence[str]
    ) -> Post:
        """The approval request for `plan`, to queue with the request row it belongs to."""
        body, metadata = await self._request_message(
            row, plan, quorum=quorum, expires_at=expires_at, changes=changes
        )
        text = blocks.approval_text(plan)
        return Post(text, plan.step, "approval", body, metadata)

    def checklist_post(self, row: Row, step: str, plan: Plan) -> Post:
        settings = self.settings_of(row)
        retained = settings.retain[0] if settings.retain else "the retained Global Administrator"
        footer = (
            f"Sign in as {retained}. The bot re-checks Microsoft every"
            f" {blocks._duration(self.settings.timing.poll_interval)} and moves on by itself."
        )
        if step == "delete_directory":
            footer = (
                "The bot's own access is gone now. It checks Microsoft's authority every"
                f" {blocks._duration(self.settings.timing.poll_interval)} and closes the closure"
                f" after {self.settings.timing.tenant_gone_checks} consecutive"
                " 'tenant not found' answers."
            )
        title = f"{self._name(step)}, {STEP_TITLES[step]}: checklist for a Global Administrator"
        return Post(
            title + "\n" + "\n".join(plan.checklist),
            step,
            "checklist",
            blocks.checklist_blocks(title, plan.checklist, footer),
        )


def _transient(exc: SlackApiError) -> bool:
    """Whether Slack may take the same call later: rate limited, or Slack's own trouble."""
    status = getattr(exc.response, "status_code", 200)
    return exc.response.get("error") == "ratelimited" or status >= 500
