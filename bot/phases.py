"""What each phase does: plan, ask for approval, execute, wait on people, verify."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any

from bot import blocks
from bot.machine import ClosureMachine
from bot.microsoft import rollback as rb
from bot.microsoft import steps as ms
from bot.microsoft.tokens import TokenError
from bot.thread import Post
from statemachine import approvals as rules
from statemachine.closure import (
    ROLLBACK,
    STEP_TITLES,
    STEPS,
    split_state,
)
from statemachine.plan import Plan, diff
from storage import approvals as requests_db
from storage import closures as closures_db
from storage.closures import Row

PlanFn = Callable[[ms.Tenant, dict[str, Any]], Awaitable[Plan]]
ExecFn = Callable[[ms.Tenant, Plan, ms.Progress, int], Awaitable[None]]

PLANNERS: dict[str, PlanFn] = {
    "delete_users": ms.plan_delete_users,
    "cancel_subscriptions": ms.plan_cancel_subscriptions,
    "delete_disabled_subscriptions": ms.plan_delete_disabled_subscriptions,
    "disable_mfa": ms.plan_disable_mfa,
    "delete_directory": ms.plan_delete_directory,
}
EXECUTORS: dict[str, ExecFn] = {
    "delete_users": ms.execute_delete_users,
    "cancel_subscriptions": ms.execute_cancel_subscriptions,
    "disable_mfa": ms.execute_disable_mfa,
    "delete_directory": ms.execute_delete_directory,
    ROLLBACK: rb.execute_rollback,
}
# Steps whose last part is done by a person in an admin center and re-checked by polling.
HANDED_OFF = frozenset(
    {"cancel_subscriptions", "delete_disabled_subscriptions", "delete_directory"}
)
PROGRESS_EVERY = 2.0  # seconds between status-message edits for progress (Slack tier 3)


class Interrupted(Exception):
    """The closure left the phase being worked on (an abort, say) while I/O was under way."""


class Phases(ClosureMachine):
    async def _plan(self, row: Row, step: str, org: dict[str, Any]) -> Plan:
        if step == ROLLBACK:
            return await rb.plan_rollback(self.tenant_of(row), org, self.history(row))
        if step == "delete_users" and row["extra"].get("sync_action"):
            return await ms.plan_disable_sync(self.tenant_of(row), org)
        return await PLANNERS[step](self.tenant_of(row), org)

    def history(self, row: Row) -> dict[str, Plan]:
        """The approved plans of the steps that started: what the closure changed, and from what."""
        out: dict[str, Plan] = {}
        for step, info in closures_db.steps_of(self.db, row["id"]).items():
            if step in STEPS and info["plan_id"] and info["started_at"] is not None:
                plan_row = closures_db.get_plan(self.db, info["plan_id"])
                if plan_row is not None:
                    out[step] = Plan.from_dict(plan_row["content"])
        return out

    async def _phase(self, row: Row) -> float | None:
        step, phase = split_state(row["state"])
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

    async def _planning(self, row: Row, step: str) -> float | None:
        org = await self._organization(row)
        plan = await self._plan(row, step, org)
        now = self.clock()
        settings = self.settings_of(row)
        plan_id = closures_db.save_plan(
            self.db,
            closure_id=row["id"],
            step=step,
            plan_hash=plan.hash,
            content=plan.as_dict(),
            at=now,
        )
        self.record(
            row,
            "plan",
            step=step,
            plan_hash=plan.hash,
            detail={"counts": plan.counts(), "blockers": list(plan.blockers), "plan_id": plan_id},
        )
        name = self._name(step)
        if plan.blockers:
            reason = " ".join(plan.blockers)
            await self.transition(
                row["id"],
                row["state"],
                "block",
                reason=reason,
                plan_hash=plan.hash,
                posts=[
                    Post(
                        f":no_entry: {name} ({STEP_TITLES[step]}) is blocked:\n"
                        + "\n".join(f"• {b}" for b in plan.blockers)
                        + f"\nAfter the fix, an admin runs `/close-account retry {row['tenant']}`."
                        + (
                            "\nOr the bot turns sync off itself, as an approved action: "
                            f"`/close-account disable-sync {row['tenant']}`."
                            if ms.sync_blocker_only(plan)
                            else ""
                        ),
                        step,
                    )
                ],
            )
            return None
        if not plan.items:
            await self.transition(
                row["id"],
                row["state"],
                "nothing_to_do",
                plan_hash=plan.hash,
                posts=[Post(f"{name} ({STEP_TITLES[step]}): nothing to do; verifying.", step)],
            )
            return None
        quorum = settings.quorum_for(step)
        expires_at = now + self.settings.timing.approval_ttl
        changes = row["extra"].get("changes") or []
        post = await self.request_post(
            row, plan, quorum=quorum, expires_at=expires_at, changes=changes
        )

        def open_request() -> list[Post]:
            request_id = requests_db.create_request(
                self.db,
                closure_id=row["id"],
                step=step,
                plan_id=plan_id,
                plan_hash=plan.hash,
                quorum=quorum,
                expires_at=expires_at,
                at=now,
            )
            return [dataclasses.replace(post, request_id=request_id)]

        if await self.transition(
            row["id"], row["state"], "plan_ready", plan_hash=plan.hash, also=open_request
        ):
            if changes:
                extra = {k: v for k, v in row["extra"].items() if k != "changes"}
                fresh = closures_db.get_closure(self.db, row["id"])
                if fresh is not None:
                    extra["display_name"] = fresh["extra"].get("display_name")
                closures_db.save_closure(self.db, row["id"], at=self.clock(), extra=extra)
        return None

    async def _awaiting(self, row: Row, step: str) -> float | None:
        req = requests_db.open_request(self.db, row["id"], step)
        if req is None:  # a crash between the state change and the request: plan again
            await self.transition(row["id"], row["state"], "replan", detail={"why": "no request"})
            return None
        plan_row = closures_db.get_plan(self.db, req["plan_id"])
        assert plan_row is not None
        plan = Plan.from_dict(plan_row["content"])
        if req["ts"] is not None and req["id"] not in self._reconciled:
            # Once per request and process: reactions made while the bot was down count too.
            await self.reconcile_votes(row, req)
            self._reconciled.add(req["id"])
        tally = await self._tally(row, req)
        now = self.clock()
        if tally.vetoed:

            def reject() -> None:
                requests_db.set_request_status(self.db, req["id"], "rejected")

            reason = f"vetoed by {blocks.mentions(tally.vetoes)}"
            await self.transition(
                row["id"],
                row["state"],
                "veto",
                tally=tally,
                reason=reason,
                plan_hash=req["plan_hash"],
                also=reject,
                posts=[
                    Post(
                        f":x: {self._name(step)} was {reason}. Nothing was changed. An admin"
                        f" can `/close-account retry {row['tenant']}` (re-reads the plan and asks"
                        " again) or `abort` it.",
                        step,
                    )
                ],
            )
            return None
        if tally.met and not rules.expired(req["expires_at"], now):
            # The message's reactions are the truth: a removal or a veto Slack never delivered.
            if await self.reconcile_votes(row, req):
                return None
            # Rule 3: re-read the inventory right before acting.
            org = await self._organization(row)
            fresh = await self._plan(row, step, org)
            if fresh.hash != req["plan_hash"] or fresh.blockers:
                change = diff(plan, fresh)
                lines = [f"• added: `{i.name or i.id}`" for i in change.added[:10]]
                lines += [f"• removed: `{i.name or i.id}`" for i in change.removed[:10]]
                lines += [f"• changed: `{i.name or i.id}`" for i in change.changed[:10]]
                lines += [f"• blocker: {b}" for b in fresh.blockers]

                def void() -> None:
                    requests_db.set_request_status(self.db, req["id"], "void")
                    closures_db.save_closure(
                        self.db, row["id"], at=now, extra={**row["extra"], "changes": lines}
                    )

                await self.transition(
                    row["id"],
                    row["state"],
                    "replan",
                    plan_hash=req["plan_hash"],
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
                requests_db.set_request_status(self.db, req["id"], "approved")
                closures_db.update_step(
                    self.db,
                    row["id"],
                    step,
                    plan_id=req["plan_id"],
                    done=0,
                    total=len(plan.items),
                    started_at=now,
                    checks=0,
                    next_check_at=None,
                )

            await self.transition(
                row["id"],
                row["state"],
                "approve",
                tally=tally,
                recount=lambda: self.tally_now(row, req),
                plan_hash=req["plan_hash"],
                also=approve,
                detail={"approvers": list(tally.approvals)},
                posts=[
                    Post(
                        f":white_check_mark: {self._name(step)} approved by"
                        f" {blocks.mentions(tally.approvals)} (plan `{req['plan_hash'][:12]}`);"
                        " starting.",
                        step,
                    )
                ],
            )
            return None
        if rules.expired(req["expires_at"], now):

            def expire() -> None:
                requests_db.set_request_status(self.db, req["id"], "expired")

            await self.transition(
                row["id"],
                row["state"],
                "replan",
                plan_hash=req["plan_hash"],
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
        return min(float(req["expires_at"]), await self._remind_approvers(row, req, tally)) - now

    async def _remind_approvers(self, row: Row, req: Row, tally: rules.Tally) -> float:
        """Nudge the approvers still needed once per reminder_interval; returns the next time."""
        interval = self.settings.timing.reminder_interval
        due = float(req["reminded_at"] or req["created_at"]) + interval
        now = self.clock()
        if now < due:
            return due
        requests_db.set_reminded(self.db, req["id"], now)  # first: a reminder fires once
        eligible = rules.eligible_approvers(
            [a for a in self.approver_ids(row) if await self.directory.active(a)],
            self.requester_of(row),
        )
        waiting = [a for a in eligible if a not in tally.approvals]
        self.record(
            row,
            "reminder",
            step=req["step"],
            plan_hash=req["plan_hash"],
            detail={"waiting_on": waiting, "missing": tally.missing},
        )
        await self.say(
            row["id"],
            f":bell: Reminder: {self._name(req['step']).lower()} still needs {tally.missing} more"
            f" approval(s) from {blocks.mentions(waiting)}; the request expires"
            f" {blocks.slack_date(req['expires_at'])}.",
            step=req["step"],
        )
        return now + interval

    def _approved(self, row: Row, step: str) -> Plan:
        """The plan approved for `step` of this closure."""
        info = closures_db.get_step(self.db, row["id"], step)
        plan_row = closures_db.get_plan(self.db, info["plan_id"]) if info["plan_id"] else None
        if plan_row is None:
            raise ms.StepError("no approved plan recorded for this step")
        return Plan.from_dict(plan_row["content"])

    @staticmethod
    def _own_app_maybe_gone(step: str, info: Row) -> bool:
        """Step 5 got as far as deleting the bot's own application (the last write)."""
        return step == STEPS[-1] and bool(info["total"]) and info["done"] >= info["total"] - 1

    @staticmethod
    def _own_app_gone(step: str, info: Row) -> bool:
        return step == STEPS[-1] and bool(info["detail"].get("own_app_gone"))

    async def _executing(self, row: Row, step: str) -> float | None:
        info = closures_db.get_step(self.db, row["id"], step)
        plan = self._approved(row, step)
        executor = ms.execute_disable_sync if ms.is_sync_plan(plan) else EXECUTORS.get(step)
        if executor is not None and self._own_app_gone(step, info):
            executor = None  # a restart after the bot deleted its own application: hand off
        org: dict[str, Any] = {}
        if executor is not None:
            try:
                org = await self._organization(row)  # the right tenant, right before destroying
            except TokenError:
                if not self._own_app_maybe_gone(step, info):
                    raise
                closures_db.update_step(
                    self.db, row["id"], step, detail={**info["detail"], "own_app_gone": True}
                )
                executor = None
        if executor is not None:
            # Only what Microsoft still shows to do: a step resumed after a crash, or from a
            # backup older than Microsoft's state, never writes again to what it changed.
            todo = ms.still_to_do(plan, await self._plan(row, step, org))
            first = len(plan.items) - len(todo.items)
            closures_db.update_step(self.db, row["id"], step, done=first)
            current = closures_db.get_closure(self.db, row["id"])
            if current is None or current["state"] != row["state"]:
                raise Interrupted()  # aborted (or rolled back) while this phase got ready
            started = self.clock()

            async def progress(done: int, total: int) -> None:
                done, total = first + done, first + total
                now = self.clock()
                current = closures_db.get_closure(self.db, row["id"])
                closures_db.update_step(self.db, row["id"], step, done=done, total=total)
                if current is None or current["state"] != row["state"]:
                    raise Interrupted()
                if now - self._last_progress.get(row["id"], 0.0) >= PROGRESS_EVERY or done == total:
                    self._last_progress[row["id"]] = now
                    rate = (done - first) / (now - started) if now > started else None
                    eta = (total - done) / rate if rate else None
                    # In the background: a rate-limited edit never slows the writes.
                    self.request_status(row["id"], blocks.Progress(done, total, rate, eta))

            await executor(self.tenant_of(row), todo, progress, 0)
            self.record(
                row,
                "graph_writes",
                step=step,
                plan_hash=plan.hash,
                detail={
                    "counts": plan.counts(),
                    "already_done": first,
                    "elapsed_s": round(self.clock() - started, 3),
                },
            )
        if (
            (step in HANDED_OFF and (plan.checklist or step == STEPS[-1]))
            or (step == ROLLBACK and plan.checklist)
            or ms.is_sync_plan(plan)
        ):
            await self.transition(
                row["id"],
                row["state"],
                "hand_off",
                plan_hash=plan.hash,
                posts=[self.checklist_post(row, step, plan)],
            )
            return None
        await self.transition(
            row["id"],
            row["state"],
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

    async def _waiting(self, row: Row, step: str) -> float | None:
        info = closures_db.get_step(self.db, row["id"], step)
        now = self.clock()
        poll = self.settings.timing.poll_interval
        if info["next_check_at"] and now < info["next_check_at"]:
            return float(info["next_check_at"] - now)
        if step == "delete_directory":
            settings = self.settings_of(row)
            gone = await ms.tenant_gone(self.session, settings, self.ssl_context)
            checks = info["checks"] + 1 if gone else 0
            closures_db.update_step(
                self.db, row["id"], step, checks=checks, next_check_at=now + poll
            )
            remaining = (
                []
                if checks >= self.settings.timing.tenant_gone_checks
                else [
                    f"tenant-not-found answers: {checks}/{self.settings.timing.tenant_gone_checks}"
                ]
            )
        elif step == ROLLBACK:
            remaining = await rb.check_rollback(self.tenant_of(row), self._approved(row, step))
            closures_db.update_step(self.db, row["id"], step, next_check_at=now + poll)
        elif step == "delete_users":  # waiting for directory sync to go off
            remaining = await ms.check_sync_off(self.tenant_of(row))
            closures_db.update_step(self.db, row["id"], step, next_check_at=now + poll)
        else:
            check = (
                ms.check_cancel_subscriptions
                if step == "cancel_subscriptions"
                else ms.check_delete_disabled_subscriptions
            )
            remaining = await check(self.tenant_of(row))
            closures_db.update_step(self.db, row["id"], step, next_check_at=now + poll)
        if not remaining:
            await self.transition(
                row["id"],
                row["state"],
                "external_done",
                posts=[Post(f"Microsoft shows {self._name(step).lower()} done; verifying.", step)],
            )
            return None
        before = info["detail"].get("remaining")
        if remaining != before:
            closures_db.update_step(self.db, row["id"], step, detail={"remaining": remaining})
            if step != "delete_directory":
                await self._seen_done(row, step, before or [], remaining)
            elif before is not None or not remaining[0].endswith(
                f" 0/{self.settings.timing.tenant_gone_checks}"
            ):
                await self.say(row["id"], f"{self._name(step)}: {remaining[0]}.", step=step)
        return min(poll, await self._remind_admin(row, step, info, remaining) - now)

    async def _seen_done(self, row: Row, step: str, before: list[str], now_: list[str]) -> None:
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
        await self.say(row["id"], f"{self._name(step)}:\n" + "\n".join(lines), step=step)

    async def _remind_admin(self, row: Row, step: str, info: Row, remaining: list[str]) -> float:
        """Nudge the admin once per reminder_interval while a checklist is not done."""
        interval = self.settings.timing.reminder_interval
        due = float(info["reminded_at"] or info["started_at"] or self.clock()) + interval
        now = self.clock()
        if now < due:
            return due
        closures_db.update_step(self.db, row["id"], step, reminded_at=now)
        self.record(
            row,
            "reminder",
            step=step,
            detail={"waiting_on": remaining},
        )
        retained = ", ".join(self.settings_of(row).retain)
        await self.say(
            row["id"],
            f":bell: Reminder: {self._name(step).lower()} is still waiting on a Global"
            f" Administrator ({retained}) in the admin center:\n"
            + "\n".join(f"• {r}" for r in remaining),
            step=step,
        )
        return now + interval

    async def _verifying(self, row: Row, step: str) -> float | None:
        tenant = self.tenant_of(row)
        problems: list[str]
        if step == "delete_users" and row["extra"].get("sync_action"):
            if await ms.check_sync_off(tenant):
                closures_db.update_step(self.db, row["id"], step, next_check_at=None)
                await self.transition(row["id"], row["state"], "not_yet")
                return None

            def plan_users() -> list[Post]:
                extra = {k: v for k, v in row["extra"].items() if k != "sync_action"}
                closures_db.save_closure(self.db, row["id"], at=self.clock(), extra=extra)
                closures_db.update_step(
                    self.db,
                    row["id"],
                    step,
                    plan_id=None,
                    done=0,
                    total=0,
                    started_at=None,
                    next_check_at=None,
                    detail={},
                )
                return []

            await self.transition(
                row["id"],
                row["state"],
                "again",
                also=plan_users,
                posts=[Post("Directory synchronization is off; planning step 1 itself.", step)],
            )
            return None
        if step == "delete_users":
            problems = await ms.verify_delete_users(tenant)
        elif step == "disable_mfa":
            problems = await ms.verify_disable_mfa(tenant)
        elif step == "cancel_subscriptions":
            problems = await ms.check_cancel_subscriptions(tenant)
        elif step == "delete_disabled_subscriptions":
            problems = await ms.check_delete_disabled_subscriptions(tenant)
        elif step == ROLLBACK:
            plan = self._approved(row, step)
            problems = await rb.verify_rollback(tenant, plan)
            if problems and not await rb.check_rollback(tenant, plan):
                raise ms.StepError("rollback verification failed: " + "; ".join(problems))
        else:
            info = closures_db.get_step(self.db, row["id"], step)
            needed = self.settings.timing.tenant_gone_checks
            problems = [] if info["checks"] >= needed else [f"{info['checks']}/{needed} checks"]
        if problems:
            if step in HANDED_OFF or step == ROLLBACK:
                closures_db.update_step(self.db, row["id"], step, next_check_at=None)
                await self.transition(
                    row["id"], row["state"], "not_yet", detail={"problems": problems}
                )
                return None
            raise ms.StepError("verification failed: " + "; ".join(problems))

        def finish() -> None:
            closures_db.update_step(self.db, row["id"], step, finished_at=self.clock())

        posts = [
            Post(
                f":white_check_mark: {self._name(step)} ({STEP_TITLES[step]}) verified from"
                " Microsoft's side.",
                step,
            )
        ]
        if step == STEPS[-1]:
            posts.append(
                Post(
                    f":checkered_flag: Tenant {row['tenant']} ({row['tenant_id']}) is closed:"
                    " Microsoft no longer knows it."
                )
            )
        await self.transition(row["id"], row["state"], "verified", also=finish, posts=posts)
        return None
