"""Moves closures: runs each phase's Graph and Slack work, then fires the trigger that records it.

One asyncio task drives each open closure; it sleeps until woken (a vote, a command) or until
its next timer (an expiry, a poll). State changes happen under one lock per tenant around
load -> trigger -> save; Graph and Slack I/O happen outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import blocks
from bot.config import Settings
from bot.editbudget import EditBudget
from bot.identity import Directory
from bot.microsoft import steps as ms
from bot.microsoft.graph import GraphError
from bot.microsoft.tokens import TokenError
from bot.people import People, Reply
from bot.phases import Interrupted
from statemachine.closure import (
    is_final,
)
from storage import closures as closures_db
from storage import outbox

__all__ = ["Reply", "Runner"]
log = logging.getLogger("close_account_bot.runner")


class Runner(People):
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        client: AsyncWebClient,
        tenants: dict[str, ms.Tenant],
        session: aiohttp.ClientSession,
        ssl_context: Any = None,
        clock: Callable[[], float] = time.time,
        status_interval: float = 2.0,
        edit_budget: EditBudget | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.tenants = tenants
        self.session = session
        self.ssl_context = ssl_context
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_progress: dict[str, float] = {}
        self._stopping = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._flush_locks: dict[str, asyncio.Lock] = {}
        self._status_locks: dict[str, asyncio.Lock] = {}
        self._shown_status: dict[str, str] = {}
        self._reconciled: set[int] = set()
        self.status_interval = status_interval
        self._last_edit: dict[str, float] = {}
        self._status_writers: dict[str, asyncio.Task[None]] = {}
        self._status_stale: set[str] = set()
        self._edit_budget = edit_budget
        self._pending_progress: dict[str, blocks.Progress] = {}
        self.directory = Directory(client, db, clock)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Resume every open closure from the database; returns how many."""
        rows = closures_db.open_closures(self.db)
        # A post still queued may have reached Slack from a process whose database this is not
        # (restored from a backup): each is looked up in its thread before it is sent.
        outbox.mark_unsure(self.db, self.clock())
        # Finished closures whose last posts or status edit a crash cut short get them now.
        for row in [*rows, *closures_db.needing_slack(self.db)]:
            self.spawn(row["id"])
        return len(rows)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a listener's work in flight so that stop() lets it finish."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def stop(self) -> None:
        for writer in list(self._status_writers.values()):
            writer.cancel()  # what a status message still lacks is shown after the restart
        if self._inflight:  # let replies already under way reach Slack
            await asyncio.wait(set(self._inflight), timeout=10)
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

    # --- the drive loop ----------------------------------------------------------------------

    async def _drive(self, closure_id: str) -> None:
        waker = self._wakers.setdefault(closure_id, asyncio.Event())
        while not self._stopping:
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:
                return
            waker.clear()
            try:
                # First what a crash left unsent: the status message and queued thread posts.
                await self.flush(closure_id)
                if row["status_ts"] is None or row["status_state"] != row["state"]:
                    await self.refresh_status(closure_id)
                if is_final(row["state"]):
                    fresh = closures_db.get_closure(self.db, closure_id)
                    if fresh is None or is_final(fresh["state"]):
                        return
                    continue  # moved on meanwhile (a rollback after an abort): drive it
                delay = await self._phase(row)
            except asyncio.CancelledError:
                raise
            except Interrupted:
                delay = None
            except SlackApiError as exc:
                log.warning("closure %s: Slack error %s", closure_id, exc.response.get("error"))
                delay = self._backoff()
            except (aiohttp.ClientError, TimeoutError) as exc:  # Slack (or ARM) unreachable
                log.warning("closure %s: network error %s; trying again", closure_id, exc)
                delay = self._backoff()
            except (GraphError, TokenError, ms.StepError) as exc:
                delay = None if await self._fail(row, str(exc)) else self._backoff()
            except Exception as exc:  # a bug must not kill the task silently
                log.exception("closure %s: unexpected error", closure_id)
                failed = await self._fail(row, f"internal error: {type(exc).__name__}: {exc}")
                delay = None if failed else self._backoff()
            if delay is None:
                continue
            try:
                await asyncio.wait_for(waker.wait(), None if math.isinf(delay) else delay)
            except TimeoutError:
                pass

    # --- transitions -------------------------------------------------------------------------
