"""Transitions under the tenant's lock: load -> trigger -> save, with the audit record and the
thread posts that report it in the same transaction (into an end state, the closure's summary
too: bot.summary); then the posts are sent and the status message shows the new state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlite_utils import Database

from bot import logs, messages, summary
from bot.outbox import Outbox, Post
from bot.status import Status
from statemachine import approvals as rules
from statemachine.closure import Closure, attach, detach, fire, split_state
from storage import audit
from storage import closures as closures_db
from storage.closures import ClosureRow
from storage.db import transaction

# A transition is the runner's line in the log, whichever object fired it.
log = logging.getLogger("close_account_bot.runner")


@dataclass(eq=False, kw_only=True)
class Transitions:
    db: Database
    clock: Callable[[], float]
    outbox: Outbox
    status: Status
    wake: Callable[[str], None]  # the closure's drive loop looks again
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    def lock(self, tenant: str) -> asyncio.Lock:
        """One lock per tenant around every load -> change -> save of its closures and votes."""
        return self._locks.setdefault(tenant, asyncio.Lock())

    async def transition(
        self,
        closure_id: str,
        expected: str | tuple[str, ...] | None,
        trigger: str,
        *,
        actor: str = "bot",
        tally: rules.Tally | None = None,
        reason: str | None = None,
        event_id: str | None = None,
        plan_hash: str | None = None,
        detail: dict[str, Any] | None = None,
        also: Callable[[], list[Post] | None] | None = None,
        posts: Sequence[Post] = (),
        recount: Callable[[], rules.Tally] | None = None,
    ) -> ClosureRow | None:
        """Load, fire, save; in the same transaction run `also` and queue `posts` (and the posts
        `also` returns). Then send the posts and edit the status. None if it didn't apply."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return None
        async with self.lock(row.tenant):
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:  # final states move only where the machine allows (rollback)
                return None
            if expected is not None and row.state not in (
                (expected,) if isinstance(expected, str) else expected
            ):
                return None
            if recount is not None:  # the votes as they are now, under the lock
                tally = recount()
            model = attach(
                Closure(
                    id=row.id,
                    tenant=row.tenant,
                    tenant_id=row.tenant_id,
                    requester=row.requester,
                    state=row.state,
                    failed_phase=row.failed_phase,
                    tally=tally,
                )
            )
            try:
                if not getattr(model, f"may_{trigger}")() or not fire(model, trigger):
                    return None
            finally:
                detach(model)
            with transaction(self.db):
                closures_db.save_closure(
                    self.db,
                    closure_id,
                    at=self.clock(),
                    state=model.state,
                    failed_phase=model.failed_phase,
                    clear_failure=model.failed_phase is None,
                    reason=reason,
                )
                audit.record(
                    self.db,
                    row,
                    trigger,
                    at=self.clock(),
                    actor=actor,
                    step=split_state(row.state)[0],
                    plan_hash=plan_hash,
                    event_id=event_id,
                    detail={"from": row.state, "to": model.state, **(detail or {})},
                )
                queued = list(posts)
                if also is not None:
                    queued += also() or []
                ended = closures_db.get_closure(self.db, closure_id)
                if ended is not None:  # the summary, last, once per end (closed, aborted...)
                    queued += summary.queue_summary(self.db, ended, at=self.clock())
                for post in queued:
                    self.outbox.enqueue(closure_id, post)
            new = closures_db.get_closure(self.db, closure_id)
        logs.note_state(closure_id, model.state)
        # A failure's line says why (the reason is what the thread says too; never a secret).
        why = f": {reason}" if reason and trigger == "fail" else ""
        log.info(
            "closure %s: %s -> %s (%s by %s)%s",
            closure_id,
            row.state,
            model.state,
            trigger,
            actor,
            why,
            extra={
                "closure_id": closure_id,
                "tenant": row.tenant,
                "state": model.state,
                "from_state": row.state,
                "trigger": trigger,
                "actor": actor,
                **({"reason": reason} if why else {}),
            },
        )
        self.wake(closure_id)
        try:
            await self.outbox.flush(closure_id)
            await self.status.refresh(closure_id)
        except SlackApiError as exc:  # the drive loop sends what is queued once Slack is back
            log.warning("closure %s: Slack error %s", closure_id, exc.response.get("error"))
        return new

    async def fail(self, row: ClosureRow, reason: str) -> bool:
        """Record a failure the runner could not retry away; False if it could not apply."""
        step, _ = split_state(row.state)
        return None is not await self.transition(
            row.id,
            row.state,
            "fail",
            reason=reason,
            detail={"error": reason},
            posts=[Post(messages.failed(step, row.tenant, reason), step)],
        )
