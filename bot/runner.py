"""The runner: one task per open closure, woken by a vote or a command or by its next timer (an
expiry, a poll), with backoff after errors that changed nothing; and the Slack-facing work that
goes after Slack has its answer. What each phase does is `bot.phases`'."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlite_utils import Database

from bot import logs, messages
from bot.approval_requests import ApprovalRequests
from bot.microsoft.azure import ArmError
from bot.microsoft.graph import GraphError
from bot.microsoft.partner import PartnerCenterError
from bot.microsoft.tenant import StepError
from bot.microsoft.tokens import TokenError
from bot.outbox import Outbox, Post
from bot.phases import Interrupted, Phases
from bot.slackapi import slack_error, transient
from bot.status import Status
from bot.transitions import Transitions
from statemachine.closure import is_final, split_state
from storage import approvals as requests_db
from storage import closures as closures_db
from storage import outbox
from storage.closures import ClosureRow

log = logging.getLogger("close_account_bot.runner")


class Wakers:
    """One event per closure: set when something happened that its task should look at."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, closure_id: str) -> asyncio.Event:
        return self._events.setdefault(closure_id, asyncio.Event())

    def wake(self, closure_id: str) -> None:
        self.event(closure_id).set()


class Background:
    """Slack-facing work run after Slack has its answer (Slack's 3 s must never wait on its own
    rate limits), and listeners' work in flight; `stop` lets both finish."""

    def __init__(self) -> None:
        self._inflight: set[asyncio.Task[Any]] = set()

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        """A Slack or network error is logged (the drive loop shows the state again when the
        closure next moves)."""

        async def guarded() -> None:
            try:
                await work
            except SlackApiError as exc:
                log.warning("Slack error after an answer: %s", exc.response.get("error"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("Slack unreachable after an answer: %s", exc)

        task = asyncio.create_task(guarded())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a listener's work in flight so that `finish` lets it end."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def finish(self, within: float = 10) -> None:
        if self._inflight:  # let replies already under way reach Slack
            await asyncio.wait(set(self._inflight), timeout=within)


@dataclass(eq=False, kw_only=True)
class Runner:
    db: Database
    clock: Callable[[], float]
    phases: Phases
    transitions: Transitions
    outbox: Outbox
    status: Status
    requests: ApprovalRequests
    wakers: Wakers
    background: Background
    backoff: float  # after an error that changed nothing
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)

    async def start(self) -> int:
        """Resume every open closure from the database; returns how many."""
        rows = closures_db.open_closures(self.db)
        # A post still queued may have reached Slack from a process whose database this is not
        # (restored from a backup): each is looked up in its thread before it is sent.
        outbox.mark_unsure(self.db, self.clock())
        # Finished closures whose last posts or status edit a crash cut short get them now.
        for row in [*rows, *closures_db.needing_slack(self.db)]:
            self.spawn(row.id)
        return len(rows)

    def spawn(self, closure_id: str) -> None:
        task = self._tasks.get(closure_id)
        if task is None or task.done():
            row = closures_db.get_closure(self.db, closure_id)  # every line it logs names it
            context = logs.closure_context(closure_id, row.tenant, row.state) if row else None
            self._tasks[closure_id] = asyncio.create_task(
                self._drive(closure_id), name=f"closure-{closure_id}", context=context
            )

    async def stop(self) -> None:
        self.status.stop()
        await self.background.finish()
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def running(self) -> int:
        return sum(1 for t in self._tasks.values() if not t.done())

    async def idle(self) -> None:
        """Wait until no closure task is running (tests and the demo use it)."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.wait(tasks)

    async def _drive(self, closure_id: str) -> None:
        waker = self.wakers.event(closure_id)
        while not self._stopping:
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:
                return
            waker.clear()
            try:
                # First what a crash left unsent: the status message and queued thread posts.
                await self._catch_up(row)
                if is_final(row.state):
                    fresh = closures_db.get_closure(self.db, closure_id)
                    if fresh is None or is_final(fresh.state):
                        return
                    continue  # moved on meanwhile (a rollback after an abort): drive it
                delay = await self.phases.run(row)
            except asyncio.CancelledError:
                raise
            except Interrupted:
                delay = None
            except SlackApiError as exc:
                if slack_error(exc) == "message_not_found" and await self._vanished(row):
                    continue  # planned again: a new request is posted
                log.warning("closure %s: Slack error %s", closure_id, slack_error(exc))
                delay = self.backoff
            except (aiohttp.ClientError, TimeoutError) as exc:  # Slack (or ARM) unreachable
                log.warning("closure %s: network error %s; trying again", closure_id, exc)
                delay = self.backoff
            except (GraphError, TokenError, StepError, PartnerCenterError, ArmError) as exc:
                delay = None if await self.transitions.fail(row, str(exc)) else self.backoff
            except Exception as exc:  # a bug must not kill the task silently
                log.exception("closure %s: unexpected error", closure_id)
                reason = f"internal error: {type(exc).__name__}: {exc}"
                delay = None if await self.transitions.fail(row, reason) else self.backoff
            if delay is None:
                continue
            try:
                await asyncio.wait_for(waker.wait(), None if math.isinf(delay) else delay)
            except TimeoutError:
                pass

    async def _catch_up(self, row: ClosureRow) -> None:
        """Send what is queued and bring the status message up to date. A Slack error that
        lasts (the bot removed from the channel, a revoked token) is said in the log and the
        Home tab, with what to fix, and holds up nothing else: the closure's Graph work goes
        on and the posts wait for Slack."""
        try:
            await self.outbox.flush(row.id)
            if row.status_ts is None or row.status_state != row.state:
                await self.status.refresh(row.id)
        except SlackApiError as exc:
            if transient(exc):
                raise
            error = slack_error(exc)
            if outbox.set_trouble(self.db, row.id, error, self.clock()):
                log.error("closure %s: %s", row.id, messages.slack_trouble(error))
            return
        if outbox.clear_trouble(self.db, row.id):
            log.info("closure %s: Slack answers again", row.id)

    async def _vanished(self, row: ClosureRow) -> bool:
        """The open approval request's message is gone (deleted by an admin or a retention
        policy): plan again, so that a new request with a fresh expiry is posted; the votes on
        the vanished message do not carry over. False if no request was waiting."""
        step, phase = split_state(row.state)
        req = requests_db.open_request(self.db, row.id, step) if step else None
        if phase != "awaiting_approval" or req is None or req.ts is None:
            return False
        voters = [v.approver for v in requests_db.votes_for(self.db, req.id)]

        def void() -> list[Post]:
            requests_db.set_request_status(self.db, req.id, "void")
            requests_db.set_marked(self.db, req.id, "void")  # nothing left to edit
            return []

        await self.transitions.transition(
            row.id,
            row.state,
            "replan",
            plan_hash=req.plan_hash,
            also=void,
            detail={"why": "request deleted in Slack", "ts": req.ts, "votes": voters},
            posts=[Post(messages.request_vanished(req.step, voters), req.step)],
        )
        return True
