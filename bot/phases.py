"""The phases of a step, the same for every step: plan, (await approval: `bot.approving`),
execute, wait on people in Microsoft's admin centers, verify. Each does the Graph and Slack work
first, then fires the trigger that records its outcome."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from bot import blocks, messages
from bot.approval_requests import ApprovalRequests
from bot.approving import Approving
from bot.config import Settings
from bot.microsoft.azure import ArmError
from bot.microsoft.graph import GraphError
from bot.microsoft.pacing import WritePacer
from bot.microsoft.partner import PartnerCenterError
from bot.microsoft.steps.base import Step
from bot.microsoft.tenant import StepError
from bot.microsoft.tokens import TokenError
from bot.outbox import Outbox, Post
from bot.patience import Patience, retry_can_fix
from bot.planner import Planner
from bot.status import Status
from bot.transitions import Transitions
from statemachine import steps
from statemachine.closure import split_state
from statemachine.plan import Plan, still_to_do
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage.closures import ClosureRow, StepRow

PROGRESS_EVERY = 2.0  # seconds between status-message edits for progress (Slack tier 3)
log = logging.getLogger("close_account_bot.runner")


class Interrupted(Exception):
    """The closure left the phase being worked on (an abort, say) while I/O was under way."""


@dataclass(eq=False, kw_only=True)
class Phases:
    settings: Settings
    db: Database
    clock: Callable[[], float]
    planner: Planner
    approving: Approving
    requests: ApprovalRequests
    transitions: Transitions
    outbox: Outbox
    status: Status
    patience: Patience  # how long Microsoft's outages and Entra's catching up are waited out
    _last_progress: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    async def run(self, row: ClosureRow) -> float | None:
        """Do the current phase's work; how long until it needs looking at again (None: now,
        infinity: when someone acts)."""
        step, phase = split_state(row.state)
        assert step is not None
        handler = {
            "planning": self._planning,
            "awaiting_approval": self.approving.run,
            "executing": self._executing,
            "waiting_external": self._waiting,
            "verifying": self._verifying,
        }.get(phase)
        if handler is None:
            return math.inf  # blocked, rejected, failed: wait for a person
        try:
            delay = await handler(row, step)
        except (GraphError, ArmError, TokenError, PartnerCenterError) as exc:
            if not retry_can_fix(exc):
                raise
            return self.patience.outage(row, exc)
        self.patience.answered(row)
        return delay

    def _record(self, row: ClosureRow, action: str, step: str, **kw: Any) -> None:
        audit.record(self.db, row, action, at=self.clock(), step=step, **kw)

    async def _planning(self, row: ClosureRow, step: str) -> float | None:
        plan = await self.planner.plan(row)
        now = self.clock()
        plan_id = closures_db.save_plan(self.db, closure_id=row.id, plan=plan, at=now)
        self._record(
            row,
            "plan",
            step,
            plan_hash=plan.hash,
            detail={
                "counts": plan.counts(),
                "blockers": list(plan.blocker_texts()),
                "plan_id": plan_id,
            },
        )
        if plan.blockers:
            impl = self.planner.step(row)
            prep = impl.preparation
            offer = prep.command if prep and plan.blocker_codes() == (impl.clears,) else None
            text = messages.blocked(step, row.tenant, plan.blocker_texts(), offer=offer)
            await self.transitions.transition(
                row.id,
                row.state,
                "block",
                reason=" ".join(plan.blocker_texts()),
                plan_hash=plan.hash,
                posts=[Post(text, step)],
            )
            return None
        if not plan.items:
            await self.transitions.transition(
                row.id,
                row.state,
                "nothing_to_do",
                plan_hash=plan.hash,
                posts=[Post(messages.nothing_to_do(step), step)],
            )
            return None
        tenant = self.settings.tenant(row.tenant)
        assert tenant is not None
        quorum = tenant.quorum_for(step)
        expires_at = now + self.settings.timing.approval_ttl
        post = await self.requests.post(
            row, plan, quorum=quorum, expires_at=expires_at, changes=row.changes
        )

        def open_request() -> list[Post]:
            request_id = requests_db.create_request(
                self.db,
                closure_id=row.id,
                step=step,
                plan_id=plan_id,
                plan_hash=plan.hash,
                quorum=quorum,
                expires_at=expires_at,
                at=now,
            )
            return [dataclasses.replace(post, request_id=request_id)]

        if (
            await self.transitions.transition(
                row.id, row.state, "plan_ready", plan_hash=plan.hash, also=open_request
            )
            and row.changes
        ):
            closures_db.save_closure(self.db, row.id, at=self.clock(), changes=())
        return None

    async def _executing(self, row: ClosureRow, step: str) -> float | None:
        info = closures_db.get_step(self.db, row.id, step)
        plan = self.planner.approved(row, step)
        if plan is None:
            raise StepError("no approved plan recorded for this step")
        action = self.planner.action(row)
        # A restart after the step deleted the bot's own access: hand off.
        writes = action.writes and not info.access_gone
        org: dict[str, Any] = {}
        if writes:
            try:
                org = await self.planner.organization(row)  # the right tenant, right before
            except TokenError:
                if not action.access_may_be_gone(info.done, info.total):
                    raise
                closures_db.update_step(self.db, row.id, step, access_gone=True)
                writes = False
        if writes:
            # Only what Microsoft still shows to do: a step resumed after a crash, or from a
            # backup older than Microsoft's state, never writes again to what it changed.
            todo = still_to_do(plan, await action.plan(self.planner.context(row, org)))
            await self._write(row, step, action, plan, todo)
        if action.handed_off(plan):
            await self.transitions.transition(
                row.id,
                row.state,
                "hand_off",
                plan_hash=plan.hash,
                posts=[await self._checklist(row, step, plan, action)],
            )
            return None
        await self.transitions.transition(
            row.id,
            row.state,
            "executed",
            plan_hash=plan.hash,
            posts=[Post(messages.executed(step, len(plan.items)), step)],
        )
        return None

    async def _write(
        self, row: ClosureRow, step: str, action: Step, plan: Plan, todo: Plan
    ) -> None:
        """Run the step's writes on what is left to do, keeping its progress and the status
        message up to date; stops at the next batch once the closure left this phase."""
        first = len(plan.items) - len(todo.items)
        closures_db.update_step(self.db, row.id, step, done=first)
        current = closures_db.get_closure(self.db, row.id)
        if current is None or current.state != row.state:
            raise Interrupted()  # aborted (or rolled back) while this phase got ready
        started = self.clock()
        pacer = self.planner.tenant(row).graph.pacer

        async def progress(done: int, total: int) -> None:
            done, total = first + done, first + total
            now = self.clock()
            current = closures_db.get_closure(self.db, row.id)
            closures_db.update_step(self.db, row.id, step, done=done, total=total)
            if current is None or current.state != row.state:
                raise Interrupted()
            if now - self._last_progress.get(row.id, 0.0) >= PROGRESS_EVERY or done == total:
                self._last_progress[row.id] = now
                rate = (done - first) / (now - started) if now > started else None
                eta = remaining_time(total - done, rate, pacer)
                # In the background: a rate-limited edit never slows the writes.
                self.status.request(row.id, blocks.Progress(done, total, rate, eta))

        await action.execute(self.planner.context(row), todo, progress, 0)
        self._record(
            row,
            "graph_writes",
            step,
            plan_hash=plan.hash,
            detail={
                "counts": plan.counts(),
                "already_done": first,
                "elapsed_s": round(self.clock() - started, 3),
            },
        )

    async def _checklist(self, row: ClosureRow, step: str, plan: Plan, action: Step) -> Post:
        """The admin-center checklist, mentioning the retained administrator's Slack user (or
        saying why nobody is pinged) in its text and its footer."""
        tenant = self.settings.tenant(row.tenant)
        ping = await self.approving.approvers.directory.retained_admin(tenant)
        timing = self.settings.timing
        footer = messages.checklist_footer(
            ping.account,
            timing.poll_interval,
            confirmations=timing.tenant_gone_checks if action.counts_confirmations else None,
        )
        title, who = messages.checklist_title(step), messages.checklist_ping(ping)
        return Post(
            "\n".join([title, *map(messages.inert, plan.checklist), who]),
            step,
            "checklist",
            blocks.checklist_blocks(title, plan.checklist, f"{who}\n{footer}"),
        )

    async def _waiting(self, row: ClosureRow, step: str) -> float | None:
        info = closures_db.get_step(self.db, row.id, step)
        now = self.clock()
        poll = self.settings.timing.poll_interval
        if info.next_check_at and now < info.next_check_at:
            return float(info.next_check_at - now)
        plan = self.planner.approved(row, step) or Plan(step, row.tenant_id, ())
        out = await self.planner.action(row).outstanding(self.planner.context(row), plan)
        closures_db.update_step(self.db, row.id, step, next_check_at=now + poll)
        if out.counter is not None:
            closures_db.update_step(self.db, row.id, step, checks=out.counter[0])
        if out.done:
            await self.transitions.transition(
                row.id,
                row.state,
                "external_done",
                posts=[Post(messages.external_done(step), step)],
            )
            return None
        remaining = list(out.lines)
        if out.counter is not None:
            remaining = [messages.confirmations(*out.counter)]
        before = None if info.remaining is None else list(info.remaining)
        if remaining != before:
            closures_db.update_step(self.db, row.id, step, remaining=remaining)
            if out.counter is None:
                await self._seen_done(row, step, before or [], remaining)
            elif before is not None or out.counter[0] != 0:  # the first 0/N goes unsaid
                await self.outbox.say(
                    row.id, messages.confirmations_post(step, remaining[0]), step=step
                )
        return min(poll, await self._remind_admin(row, step, info, remaining) - now)

    async def _seen_done(
        self, row: ClosureRow, step: str, before: list[str], now: list[str]
    ) -> None:
        """Record each admin-center item Microsoft now shows done, and say what is left."""
        done = [item for item in before if item not in now]
        for item in done:
            self._record(row, "external_item_done", step, actor="microsoft", detail={"item": item})
        await self.outbox.say(row.id, messages.seen_done(step, done, now), step=step)

    async def _remind_admin(
        self, row: ClosureRow, step: str, info: StepRow, remaining: list[str]
    ) -> float:
        """Nudge the retained administrator (a mention when Slack knows them) once per
        reminder_interval while a checklist is not done."""
        interval = self.settings.timing.reminder_interval
        due = float(info.reminded_at or info.started_at or self.clock()) + interval
        now = self.clock()
        if now < due:
            return due
        closures_db.update_step(self.db, row.id, step, reminded_at=now)
        self._record(row, "reminder", step, detail={"waiting_on": remaining})
        ping = await self.approving.approvers.directory.retained_admin(
            self.settings.tenant(row.tenant)
        )
        await self.outbox.say(row.id, messages.remind_admin_ping(step, ping, remaining), step=step)
        return now + interval

    async def _verifying(self, row: ClosureRow, step: str) -> float | None:
        plan = self.planner.approved(row, step) or Plan(step, row.tenant_id, ())
        try:
            pending = await self.planner.action(row).verify(self.planner.context(row), plan)
        except StepError as exc:
            return self.patience.not_caught_up(row, exc)
        self.patience.verified(row)
        if pending:
            closures_db.update_step(self.db, row.id, step, next_check_at=None)
            await self.transitions.transition(
                row.id, row.state, "not_yet", detail={"problems": pending}
            )
            return None
        if self.planner.preparing(row):  # the preparation is done: plan the step itself

            def plan_step() -> list[Post]:
                closures_db.save_closure(self.db, row.id, at=self.clock(), sync_action=False)
                closures_db.update_step(
                    self.db,
                    row.id,
                    step,
                    plan_id=None,
                    done=0,
                    total=0,
                    started_at=None,
                    next_check_at=None,
                    remaining=None,
                    access_gone=False,
                )
                return []

            await self.transitions.transition(
                row.id,
                row.state,
                "again",
                also=plan_step,
                posts=[Post(messages.prepared(step), step)],
            )
            return None

        def finish() -> None:
            closures_db.update_step(self.db, row.id, step, finished_at=self.clock())

        posts = [Post(messages.verified(step), step)]
        if steps.is_step(step) and steps.following(step) is None:
            posts.append(Post(messages.closed(row.tenant, row.tenant_id)))
        await self.transitions.transition(row.id, row.state, "verified", also=finish, posts=posts)
        return None


def remaining_time(left: int, rate: float | None, pacer: WritePacer) -> float | None:
    """Seconds the step's `left` writes should still take: what the pace Microsoft allows says
    (the pacer's learned rate, saved-up burst and any pause it asked for), or what the writes so
    far say if they went slower than that pace. The average so far alone is too hopeful after a
    burst: the burst is spent, and the rest goes at the learned pace (issue 11)."""
    if left <= 0:
        return 0.0
    paced = pacer.eta(left)
    observed = left / rate if rate else None
    return max(paced, observed) if observed is not None else paced or None
