"""What each phase does: plan, ask for approval, execute, wait on people, verify."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bot import blocks
from bot.machine import ClosureMachine
from bot.microsoft.steps import implementation
from bot.microsoft.steps.base import Step, StepContext
from bot.microsoft.tenant import StepError
from bot.microsoft.tokens import TokenError
from bot.thread import Post
from statemachine import approvals as rules
from statemachine import steps
from statemachine.closure import split_state
from statemachine.plan import Plan, diff
from storage import approvals as requests_db
from storage import closures as closures_db
from storage.approvals import RequestRow
from storage.closures import ClosureRow, StepRow

PROGRESS_EVERY = 2.0  # seconds between status-message edits for progress (Slack tier 3)


class Interrupted(Exception):
    """The closure left the phase being worked on (an abort, say) while I/O was under way."""


class Phases(ClosureMachine):
    def action(self, row: ClosureRow) -> Step:
        """What the closure's current step runs: the step itself, or its preparation while the
        closure has asked for it (turning directory sync off before step 1)."""
        step = split_state(row.state)[0]
        assert step is not None
        impl = implementation(step)
        if row.sync_action and impl.preparation is not None:
            return impl.preparation
        return impl

    def context(self, row: ClosureRow, org: dict[str, Any] | None = None) -> StepContext:
        step = split_state(row.state)[0]
        assert step is not None
        info = closures_db.get_step(self.db, row.id, step)
        return StepContext(
            tenant=self.tenant_of(row),
            session=self.session,
            ssl_context=self.ssl_context,
            org=org or {},
            history=self.history(row) if org is not None else {},
            checks=int(info.checks),
            checks_needed=self.settings.timing.tenant_gone_checks,
        )

    async def _plan(self, row: ClosureRow, org: dict[str, Any]) -> Plan:
        return await self.action(row).plan(self.context(row, org))

    def history(self, row: ClosureRow) -> dict[str, Plan]:
        """The approved plans of the steps that started: what the closure changed, and from what."""
        out: dict[str, Plan] = {}
        for step, info in closures_db.steps_of(self.db, row.id).items():
            if steps.is_step(step) and info.plan_id and info.started_at is not None:
                plan_row = closures_db.get_plan(self.db, info.plan_id)
                if plan_row is not None:
                    out[step] = plan_row.plan
        return out

    async def _phase(self, row: ClosureRow) -> float | None:
        step, phase = split_state(row.state)
        assert step is not None
        handler = {
            "planning": self._planning,
            "awaiting_approval": self._awaiting,
            "executing": self._executing,
            "waiting_external": self._waiting,
            "verifying": self._verifying,
        }.get(phase)
        if handler is None:
            return math.inf  # blocked, rejected, failed: wait for a person
        return await handler(row, step)

    async def _planning(self, row: ClosureRow, step: str) -> float | None:
        org = await self._organization(row)
        plan = await self._plan(row, org)
        now = self.clock()
        settings = self.settings_of(row)
        plan_id = closures_db.save_plan(
            self.db,
            closure_id=row.id,
            plan=plan,
            at=now,
        )
        self.record(
            row,
            "plan",
            step=step,
            plan_hash=plan.hash,
            detail={
                "counts": plan.counts(),
                "blockers": list(plan.blocker_texts()),
                "plan_id": plan_id,
            },
        )
        name = self._name(step)
        if plan.blockers:
            impl = implementation(step)
            offer = impl.preparation is not None and plan.blocker_codes() == (impl.clears,)
            reason = " ".join(plan.blocker_texts())
            await self.transition(
                row.id,
                row.state,
                "block",
                reason=reason,
                plan_hash=plan.hash,
                posts=[
                    Post(
                        f":no_entry: {name} ({steps.info(step).title}) is blocked:\n"
                        + "\n".join(f"• {b}" for b in plan.blocker_texts())
                        + f"\nAfter the fix, an admin runs `/close-account retry {row.tenant}`."
                        + (
                            "\nOr the bot turns sync off itself, as an approved action: "
                            f"`/close-account disable-sync {row.tenant}`."
                            if offer
                            else ""
                        ),
                        step,
                    )
                ],
            )
            return None
        if not plan.items:
            await self.transition(
                row.id,
                row.state,
                "nothing_to_do",
                plan_hash=plan.hash,
                posts=[Post(f"{name} ({steps.info(step).title}): nothing to do; verifying.", step)],
            )
            return None
        quorum = settings.quorum_for(step)
        expires_at = now + self.settings.timing.approval_ttl
        changes = row.changes
        post = await self.request_post(
            row, plan, quorum=quorum, expires_at=expires_at, changes=changes
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

        if await self.transition(
            row.id, row.state, "plan_ready", plan_hash=plan.hash, also=open_request
        ):
            if changes:
                closures_db.save_closure(self.db, row.id, at=self.clock(), changes=())
        return None

    async def _awaiting(self, row: ClosureRow, step: str) -> float | None:
        req = requests_db.open_request(self.db, row.id, step)
        if req is None:  # a crash between the state change and the request: plan again
            await self.transition(row.id, row.state, "replan", detail={"why": "no request"})
            return None
        plan_row = closures_db.get_plan(self.db, req.plan_id)
        assert plan_row is not None
        plan = plan_row.plan
        if req.ts is not None and req.id not in self._reconciled:
            # Once per request and process: reactions made while the bot was down count too.
            await self.reconcile_votes(row, req)
            self._reconciled.add(req.id)
        tally = await self._tally(row, req)
        now = self.clock()
        decision = rules.decide(tally, expires_at=req.expires_at, now=now)
        if decision is rules.Decision.VETO:

            def reject() -> None:
                requests_db.set_request_status(self.db, req.id, "rejected")

            reason = f"vetoed by {blocks.mentions(tally.vetoes)}"
            await self.transition(
                row.id,
                row.state,
                "veto",
                tally=tally,
                reason=reason,
                plan_hash=req.plan_hash,
                also=reject,
                posts=[
                    Post(
                        f":x: {self._name(step)} was {reason}. Nothing was changed. An admin"
                        f" can `/close-account retry {row.tenant}` (re-reads the plan and asks"
                        " again) or `abort` it.",
                        step,
                    )
                ],
            )
            return None
        if decision is rules.Decision.APPROVE:
            # The message's reactions are the truth: a removal or a veto Slack never delivered.
            if await self.reconcile_votes(row, req):
                return None
            # Rule 3: re-read the inventory right before acting.
            org = await self._organization(row)
            fresh = await self._plan(row, org)
            if fresh.hash != req.plan_hash or fresh.blockers:
                change = diff(plan, fresh)
                lines = [f"• added: `{i.name or i.id}`" for i in change.added[:10]]
                lines += [f"• removed: `{i.name or i.id}`" for i in change.removed[:10]]
                lines += [f"• changed: `{i.name or i.id}`" for i in change.changed[:10]]
                lines += [f"• blocker: {b}" for b in fresh.blocker_texts()]

                def void() -> None:
                    requests_db.set_request_status(self.db, req.id, "void")
                    closures_db.save_closure(self.db, row.id, at=now, changes=lines)

                await self.transition(
                    row.id,
                    row.state,
                    "replan",
                    plan_hash=req.plan_hash,
                    also=void,
                    detail={"why": "plan changed", "changes": lines},
                    posts=[
                        Post(
                            ":arrows_counterclockwise: The inventory for"
                            f" {self._name(step).lower()} changed since it was approved; the"
                            " approvals are void and a new"
                            " request follows."
                            "\n" + "\n".join(lines),
                            step,
                        )
                    ],
                )
                return None

            def approve() -> None:
                requests_db.set_request_status(self.db, req.id, "approved")
                closures_db.update_step(
                    self.db,
                    row.id,
                    step,
                    plan_id=req.plan_id,
                    done=0,
                    total=len(plan.items),
                    started_at=now,
                    checks=0,
                    next_check_at=None,
                )

            await self.transition(
                row.id,
                row.state,
                "approve",
                tally=tally,
                recount=lambda: self.tally_now(row, req),
                plan_hash=req.plan_hash,
                also=approve,
                detail={"approvers": list(tally.approvals)},
                posts=[
                    Post(
                        f":white_check_mark: {self._name(step)} approved by"
                        f" {blocks.mentions(tally.approvals)} (plan `{req.plan_hash[:12]}`);"
                        " starting.",
                        step,
                    )
                ],
            )
            return None
        if decision is rules.Decision.EXPIRE:

            def expire() -> None:
                requests_db.set_request_status(self.db, req.id, "expired")

            await self.transition(
                row.id,
                row.state,
                "replan",
                plan_hash=req.plan_hash,
                also=expire,
                detail={"why": "expired"},
                posts=[
                    Post(
                        f":hourglass: The approval request for {self._name(step).lower()} expired"
                        f" ({tally.missing} approval(s) missing); a fresh plan follows.",
                        step,
                    )
                ],
            )
            return None
        return min(float(req.expires_at), await self._remind_approvers(row, req, tally)) - now

    async def _remind_approvers(
        self, row: ClosureRow, req: RequestRow, tally: rules.Tally
    ) -> float:
        """Nudge the approvers still needed once per reminder_interval; returns the next time."""
        interval = self.settings.timing.reminder_interval
        due = float(req.reminded_at or req.created_at) + interval
        now = self.clock()
        if now < due:
            return due
        requests_db.set_reminded(self.db, req.id, now)  # first: a reminder fires once
        eligible = rules.eligible_approvers(
            [a for a in self.approver_ids(row) if await self.directory.active(a)],
            self.requesters_of(row),
        )
        waiting = [a for a in eligible if a not in tally.approvals]
        self.record(
            row,
            "reminder",
            step=req.step,
            plan_hash=req.plan_hash,
            detail={"waiting_on": waiting, "missing": tally.missing},
        )
        await self.say(
            row.id,
            f":bell: Reminder: {self._name(req.step).lower()} still needs {tally.missing} more"
            f" approval(s) from {blocks.mentions(waiting)}; the request expires"
            f" {blocks.slack_date(req.expires_at)}.",
            step=req.step,
        )
        return now + interval

    def approved(self, row: ClosureRow, step: str) -> Plan:
        """The plan approved for `step` of this closure; an empty one if none was (the step had
        nothing to do)."""
        info = closures_db.get_step(self.db, row.id, step)
        plan_row = closures_db.get_plan(self.db, info.plan_id) if info.plan_id else None
        if plan_row is None:
            return Plan(step, row.tenant_id, ())
        return plan_row.plan

    async def _executing(self, row: ClosureRow, step: str) -> float | None:
        info = closures_db.get_step(self.db, row.id, step)
        info_plan = closures_db.get_plan(self.db, info.plan_id) if info.plan_id else None
        if info_plan is None:
            raise StepError("no approved plan recorded for this step")
        plan = info_plan.plan
        action = self.action(row)
        # A restart after the step deleted the bot's own access: hand off.
        writes = action.writes and not info.access_gone
        if writes:
            try:
                await self._organization(row)  # the right tenant, right before destroying
            except TokenError:
                if not action.access_may_be_gone(info.done, info.total):
                    raise
                closures_db.update_step(self.db, row.id, step, access_gone=True)
                writes = False
        if writes:
            current = closures_db.get_closure(self.db, row.id)
            if current is None or current.state != row.state:
                raise Interrupted()  # aborted (or rolled back) while this phase got ready
            started = self.clock()
            first = info.done

            async def progress(done: int, total: int) -> None:
                now = self.clock()
                current = closures_db.get_closure(self.db, row.id)
                closures_db.update_step(self.db, row.id, step, done=done, total=total)
                if current is None or current.state != row.state:
                    raise Interrupted()
                if now - self._last_progress.get(row.id, 0.0) >= PROGRESS_EVERY or done == total:
                    self._last_progress[row.id] = now
                    rate = (done - first) / (now - started) if now > started else None
                    eta = (total - done) / rate if rate else None
                    # In the background: a rate-limited edit never slows the writes.
                    self.request_status(row.id, blocks.Progress(done, total, rate, eta))

            await action.execute(self.context(row), plan, progress, info.done)
            self.record(
                row,
                "graph_writes",
                step=step,
                plan_hash=plan.hash,
                detail={"counts": plan.counts(), "elapsed_s": round(self.clock() - started, 3)},
            )
        if action.handed_off(plan):
            await self.transition(
                row.id,
                row.state,
                "hand_off",
                plan_hash=plan.hash,
                posts=[self.checklist_post(row, step, plan)],
            )
            return None
        await self.transition(
            row.id,
            row.state,
            "executed",
            plan_hash=plan.hash,
            posts=[
                Post(
                    f"{self._name(step)}: {len(plan.items):,} changes made through Graph;"
                    " verifying from Microsoft's side.",
                    step,
                )
            ],
        )
        return None

    async def _waiting(self, row: ClosureRow, step: str) -> float | None:
        info = closures_db.get_step(self.db, row.id, step)
        now = self.clock()
        poll = self.settings.timing.poll_interval
        if info.next_check_at and now < info.next_check_at:
            return float(info.next_check_at - now)
        out = await self.action(row).outstanding(self.context(row), self.approved(row, step))
        closures_db.update_step(self.db, row.id, step, next_check_at=now + poll)
        if out.counter is not None:
            closures_db.update_step(self.db, row.id, step, checks=out.counter[0])
        if out.done:
            await self.transition(
                row.id,
                row.state,
                "external_done",
                posts=[Post(f"Microsoft shows {self._name(step).lower()} done; verifying.", step)],
            )
            return None
        remaining = list(out.lines)
        if out.counter is not None:
            remaining = [f"tenant-not-found answers: {out.counter[0]}/{out.counter[1]}"]
        before = None if info.remaining is None else list(info.remaining)
        if remaining != before:
            closures_db.update_step(self.db, row.id, step, remaining=remaining)
            if out.counter is None:
                await self._seen_done(row, step, before or [], remaining)
            elif before is not None or out.counter[0] != 0:
                await self.say(row.id, f"{self._name(step)}: {remaining[0]}.", step=step)
        return min(poll, await self._remind_admin(row, step, info, remaining) - now)

    async def _seen_done(
        self, row: ClosureRow, step: str, before: list[str], now_: list[str]
    ) -> None:
        """Record each admin-center item Microsoft now shows done, and say what is left."""
        done = [item for item in before if item not in now_]
        for item in done:
            self.record(
                row,
                "external_item_done",
                actor="microsoft",
                step=step,
                detail={"item": item},
            )
        lines = [f"• done: {d}" for d in done] + [f"• waiting on: {r}" for r in now_]
        await self.say(row.id, f"{self._name(step)}:\n" + "\n".join(lines), step=step)

    async def _remind_admin(
        self, row: ClosureRow, step: str, info: StepRow, remaining: list[str]
    ) -> float:
        """Nudge the admin once per reminder_interval while a checklist is not done."""
        interval = self.settings.timing.reminder_interval
        due = float(info.reminded_at or info.started_at or self.clock()) + interval
        now = self.clock()
        if now < due:
            return due
        closures_db.update_step(self.db, row.id, step, reminded_at=now)
        self.record(
            row,
            "reminder",
            step=step,
            detail={"waiting_on": remaining},
        )
        retained = ", ".join(self.settings_of(row).retain)
        await self.say(
            row.id,
            f":bell: Reminder: {self._name(step).lower()} is still waiting on a Global"
            f" Administrator ({retained}) in the admin center:\n"
            + "\n".join(f"• {r}" for r in remaining),
            step=step,
        )
        return now + interval

    async def _verifying(self, row: ClosureRow, step: str) -> float | None:
        action = self.action(row)
        pending = await action.verify(self.context(row), self.approved(row, step))
        if pending:
            closures_db.update_step(self.db, row.id, step, next_check_at=None)
            await self.transition(row.id, row.state, "not_yet", detail={"problems": pending})
            return None
        if action is not implementation(step):  # a preparation is done: plan the step itself

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

            await self.transition(
                row.id,
                row.state,
                "again",
                also=plan_step,
                posts=[Post("Directory synchronization is off; planning step 1 itself.", step)],
            )
            return None

        def finish() -> None:
            closures_db.update_step(self.db, row.id, step, finished_at=self.clock())

        posts = [
            Post(
                f":white_check_mark: {self._name(step)} ({steps.info(step).title}) verified from"
                " Microsoft's side.",
                step,
            )
        ]
        if steps.is_step(step) and steps.following(step) is None:
            posts.append(
                Post(
                    f":checkered_flag: Tenant {row.tenant} ({row.tenant_id}) is closed:"
                    " Microsoft no longer knows it."
                )
            )
        await self.transition(row.id, row.state, "verified", also=finish, posts=posts)
        return None
