"""What people do: start, abort and retry closures, and vote with reactions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bot import auditlog
from bot.microsoft.steps import implementation
from bot.phases import Phases
from bot.thread import Post
from statemachine import approvals as rules
from statemachine import steps
from statemachine.closure import initial_state, split_state
from statemachine.steps import ROLLBACK
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage import slack as slack_db
from storage.closures import ClosureRow


@dataclass
class Reply:
    ok: bool
    text: str


def _why(refusal: rules.Refusal, status: str) -> str:
    return {
        rules.Refusal.REQUESTER: "the requester of a closure never counts as an approver",
        rules.Refusal.NOT_APPROVER: "not a configured approver for this tenant",
        rules.Refusal.DEACTIVATED: "the Slack account is deactivated",
        rules.Refusal.FINISHED: f"the request is {status}; the step has moved on",
        rules.Refusal.EXPIRED: "the request has expired; a fresh one follows",
        rules.Refusal.VETO_STANDS: "your veto stands until you remove your :x:",
    }[refusal]


class People(Phases):
    def is_admin(self, user: str) -> bool:
        return user in self.directory.ids(self.settings.slack.admins)

    async def start_closure(self, tenant_name: str, user: str) -> Reply:
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may start a closure.")
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            names = ", ".join(t.name for t in self.settings.tenants)
            return Reply(False, f"Unknown tenant `{tenant_name}`. Configured tenants: {names}.")
        active = await self.directory.active_ids(tenant.approvers)
        eligible = rules.eligible_approvers(active, (user,))
        for step in steps.names():
            if not rules.enough_approvers(eligible, tenant.quorum_for(step)):
                missing = len(tenant.approvers) - len(active)
                return Reply(
                    False,
                    f"Refused: {self._name(step).lower()} needs {tenant.quorum_for(step)}"
                    " approvals but"
                    f" only {len(eligible)} eligible approvers remain: the requester never counts"
                    + (
                        f", and {missing} configured approver(s) are deactivated or unknown in"
                        " Slack"
                        if missing
                        else ""
                    )
                    + ".",
                )
        closure_id = uuid.uuid4().hex[:12]
        now = self.clock()
        try:
            with self.db.atomic():
                closures_db.create_closure(
                    self.db,
                    closure_id=closure_id,
                    tenant=tenant.name,
                    tenant_id=tenant.tenant_id,
                    requester=user,
                    state=initial_state(),
                    channel=self.settings.slack.progress_channel,
                    at=now,
                )
                audit.append(
                    self.db,
                    tenant=tenant.name,
                    closure_id=closure_id,
                    at=now,
                    actor=user,
                    action="start",
                    detail={},
                )
        except closures_db.OpenClosureExists:
            open_row = closures_db.open_closure_for(self.db, tenant.name)
            state = open_row.state if open_row else "unknown"
            return Reply(False, f"A closure of {tenant.name} is already open ({state}).")
        await self.refresh_status(closure_id)
        self.spawn(closure_id)
        return Reply(
            True,
            f"Closure of {tenant.name} started; follow it in"
            f" <#{self.settings.slack.progress_channel}>.",
        )

    async def abort(self, tenant_name: str, user: str, reason: str) -> Reply:
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may abort a closure.")
        row = self._open(tenant_name)
        if row is None:
            return Reply(False, f"No open closure for `{tenant_name}`.")
        why = reason or "no reason given"
        if await self.transition(
            row.id,
            None,
            "abort",
            actor=user,
            reason=f"aborted: {why}",
            detail={"reason": why},
            posts=[Post(f":octagonal_sign: Aborted by <@{user}>: {why}")],
        ):
            return Reply(True, f"Closure of {row.tenant} aborted.")
        return Reply(False, f"The closure of {row.tenant} could not be aborted now.")

    async def retry(self, tenant_name: str, user: str) -> Reply:
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may retry a closure.")
        row = self._open(tenant_name)
        if row is None:
            return Reply(False, f"No open closure for `{tenant_name}`.")
        step, phase = split_state(row.state)
        if phase not in ("blocked", "rejected", "failed"):
            return Reply(False, f"Nothing to retry: the closure is {row.state}.")
        what = "resuming" if phase == "failed" else "planning again"
        if await self.transition(
            row.id,
            row.state,
            "retry",
            actor=user,
            posts=[Post(f":repeat: <@{user}> retried {self._name(step).lower()}; {what}.", step)],
        ):
            self.spawn(row.id)
            return Reply(True, f"Retrying {row.tenant}: {what}.")
        return Reply(False, "Retry did not apply; try `status`.")

    async def disable_sync(self, tenant_name: str, user: str) -> Reply:
        """Turn directory sync off through Graph, as its own approved action, then step 1."""
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may ask the bot to turn off sync.")
        row = self._open(tenant_name)
        if row is None:
            return Reply(False, f"No open closure for `{tenant_name}`.")
        step, phase = split_state(row.state)
        impl = implementation(step) if step is not None and phase == "blocked" else None
        blocked_on = closures_db.latest_plan(self.db, row.id, step) if impl and step else None
        if (
            impl is None
            or impl.preparation is None
            or blocked_on is None
            or impl.clears not in blocked_on.plan.blocker_codes()
        ):
            return Reply(False, "Only a closure blocked on directory sync in step 1 needs this.")

        def flag() -> list[Post]:
            closures_db.save_closure(self.db, row.id, at=self.clock(), sync_action=True)
            return []

        if await self.transition(
            row.id,
            row.state,
            "retry",
            actor=user,
            also=flag,
            detail={"action": "disable_sync"},
            posts=[
                Post(
                    f":electric_plug: <@{user}> asked the bot to turn directory sync off; an"
                    " approval request follows.",
                    step,
                )
            ],
        ):
            self.spawn(row.id)
            return Reply(True, "Planning to turn directory sync off; approvals follow.")
        return Reply(False, "The closure changed state; try `status`.")

    async def rollback(self, tenant_name: str, user: str) -> Reply:
        """Start undoing what a closure changed, until step 5 starts acting (then refuse)."""
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may roll back a closure.")
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            return Reply(False, f"Unknown tenant `{tenant_name}`.")
        row = closures_db.latest_closure_for(self.db, tenant.name)
        if row is None:
            return Reply(False, f"{tenant.name} has no closure to roll back.")
        step, phase = split_state(row.state)
        if step == ROLLBACK:
            return Reply(False, f"{tenant.name} is already rolling back ({row.state}).")
        if phase == "rolled_back":
            return Reply(False, f"The last closure of {tenant.name} is already rolled back.")
        if not self.rollback_possible(row):
            return Reply(
                False,
                f"Refused: step 5 of {tenant.name} has started purging and deleting (the point"
                " of no return); nothing can be rolled back now.",
            )
        eligible = rules.eligible_approvers(
            await self.directory.active_ids(tenant.approvers), (user,)
        )
        if not rules.enough_approvers(eligible, tenant.quorum_for(ROLLBACK)):
            return Reply(
                False,
                f"Refused: the rollback needs {tenant.quorum_for(ROLLBACK)} approvals but only"
                f" {len(eligible)} eligible approvers remain (the requester never counts).",
            )

        def remember() -> list[Post]:
            closures_db.save_closure(self.db, row.id, at=self.clock(), rollback_requester=user)
            return []

        try:
            started = await self.transition(
                row.id,
                row.state,
                "start_rollback",
                actor=user,
                also=remember,
                posts=[
                    Post(
                        f":leftwards_arrow_with_hook: <@{user}> asked to roll back this closure;"
                        " planning what to restore.",
                        ROLLBACK,
                    )
                ],
            )
        except closures_db.OpenClosureExists:
            return Reply(
                False, f"Another closure of {tenant.name} is open; finish or abort it first."
            )
        if not started:
            return Reply(False, f"The closure of {tenant.name} changed state; try again.")
        self.spawn(row.id)
        return Reply(True, f"Rolling back {tenant.name}: the plan and approval request follow.")

    async def post_audit(self, tenant_name: str, user: str) -> Reply:
        """Post the tenant's audit trail as CSV and JSON files in its latest closure's thread."""
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            return Reply(False, f"Unknown tenant `{tenant_name}`.")
        allowed = {
            *self.directory.ids(self.settings.slack.admins),
            *self.directory.ids(tenant.approvers),
        }
        if user not in allowed:
            return Reply(
                False, "Only the admins and this tenant's approvers may read its audit trail."
            )
        row = closures_db.latest_closure_for(self.db, tenant.name)
        if row is None or row.status_ts is None:
            return Reply(False, f"{tenant.name} has no closure yet, so no thread to post in.")
        rows = audit.trail(self.db, tenant.name)
        audit.append(
            self.db,
            tenant=tenant.name,
            closure_id=row.id,
            at=self.clock(),
            actor=user,
            action="audit_export",
            detail={"rows": len(rows)},
        )
        stamp = f"{tenant.name}-audit-{row.id}"
        await self.client.files_upload_v2(
            channel=row.channel,
            thread_ts=row.status_ts,
            initial_comment=(
                f"Audit trail of {tenant.name}, {len(rows)} entries, requested by <@{user}>."
            ),
            file_uploads=[
                {
                    "content": auditlog.as_csv(rows),
                    "filename": f"{stamp}.csv",
                    "title": f"{stamp}.csv",
                },
                {
                    "content": auditlog.as_json(rows),
                    "filename": f"{stamp}.json",
                    "title": f"{stamp}.json",
                },
            ],
        )
        return Reply(
            True, f"Posted the audit trail of {tenant.name} ({len(rows)} entries) in its thread."
        )

    def _open(self, tenant_name: str) -> ClosureRow | None:
        tenant = self.settings.tenant(tenant_name)
        return closures_db.open_closure_for(self.db, tenant.name) if tenant else None

    async def reaction(
        self, *, user: str, reaction: str, channel: str, ts: str, added: bool, event_id: str
    ) -> None:
        """A reaction on a message: a vote, veto or withdrawal when it is on an open request."""
        kind = rules.reaction_kind(reaction)
        if kind is None:
            return
        req = requests_db.request_at(self.db, channel, ts)
        if req is None:
            # The request may be posted already but its ts not yet recorded: wait for the
            # posts under way to be recorded, then look again.
            for lock in list(self._flush_locks.values()):
                async with lock:
                    pass
            req = requests_db.request_at(self.db, channel, ts)
        if req is None:
            return
        row = closures_db.get_closure(self.db, req.closure_id)
        if row is None:
            return
        now = self.clock()
        action = ("veto" if kind == "veto" else "vote") if added else "withdrawal"
        refusal = rules.voter_refusal(
            user, approvers=self.approver_ids(row), requesters=self.requesters_of(row)
        )
        if refusal is None and added and not await self.directory.active(user, fresh=True):
            refusal = rules.Refusal.DEACTIVATED
        counted = False
        async with self.lock(row.tenant):
            current = requests_db.get_request(self.db, req.id)
            assert current is not None
            previous = next(
                (v.kind for v in requests_db.votes_for(self.db, req.id) if v.approver == user),
                None,
            )
            refusal = refusal or rules.vote_refusal(
                status=current.status,
                expired=rules.expired(current.expires_at, now),
                added=added,
                kind=kind,
                previous=previous,
            )
            refused = None if refusal is None else _why(refusal, current.status)
            with self.db.atomic():
                if not slack_db.claim_event(self.db, event_id, now):
                    return  # a redelivery of an event already processed
                if refused is None:
                    if added:
                        requests_db.cast_vote(
                            self.db,
                            request_id=req.id,
                            approver=user,
                            kind=kind,
                            event_id=event_id,
                            at=now,
                        )
                    else:
                        requests_db.withdraw_vote(
                            self.db, request_id=req.id, approver=user, kind=kind
                        )
                    counted = True
                self.record(
                    row,
                    action if counted else f"{action}_ignored",
                    actor=user,
                    step=req.step,
                    plan_hash=req.plan_hash,
                    event_id=event_id,
                    detail={"reaction": reaction, **({"why": refused} if refused else {})},
                )
                answer = not counted and added and current.status == "open"
                if answer:  # the refusal commits with the vote it answers
                    text = f"<@{user}>'s reaction does not count: {refused}."
                    self.enqueue(row.id, Post(text, req.step))
        # Slack has its answer once the vote is stored; what Slack is told of it goes after.
        if counted:
            self.wake(row.id)
            self.request_status(row.id)
        elif answer:
            self.background(self.flush(row.id))
