"""What people ask of a closure: start, abort, retry, rollback, disable-sync (a step's
preparation) and the audit export; each answers with a `Reply` whose refusals carry a code."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import export, messages
from bot.approvers import Approvers
from bot.config import Settings, TenantSettings
from bot.identity import Directory
from bot.microsoft.steps import implementation
from bot.outbox import Post
from bot.slackapi import slack_error
from bot.status import Status, rollback_possible
from bot.transitions import Transitions
from statemachine import approvals as rules
from statemachine import steps
from statemachine.closure import initial_state, split_state
from statemachine.steps import ROLLBACK
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage.closures import ClosureRow
from storage.db import transaction

log = logging.getLogger("close_account_bot.actions")


class Refused(StrEnum):
    """Why a command was refused; the text says it to people."""

    NOT_ALLOWED = "not_allowed"
    UNKNOWN_TENANT = "unknown_tenant"
    TOO_FEW_APPROVERS = "too_few_approvers"
    ALREADY_OPEN = "already_open"
    NO_CLOSURE = "no_closure"
    WRONG_STATE = "wrong_state"
    POINT_OF_NO_RETURN = "point_of_no_return"
    RACED = "raced"  # the closure moved while the command was being carried out
    SLACK = "slack"  # Slack refused what the command needed (the text says what to fix)
    MICROSOFT = "microsoft"  # Microsoft could not be read (the plan preview)
    BUSY = "busy"  # a preview of the tenant is being read already


@dataclass(frozen=True)
class Reply:
    ok: bool
    text: str
    code: Refused | None = None  # set on a refusal


def refused(code: Refused, text: str) -> Reply:
    return Reply(False, text, code)


@dataclass(eq=False, kw_only=True)
class Actions:
    settings: Settings
    db: Database
    client: AsyncWebClient
    clock: Callable[[], float]
    directory: Directory
    approvers: Approvers
    transitions: Transitions
    status: Status
    spawn: Callable[[str], None]  # the runner drives the closure from here
    # `/close-account plan <tenant>` (bot.plan_command.PlanCommand.answer): (tenant, user).
    preview: Callable[[str, str], Awaitable[Reply]] | None = None

    def _enough_approvers(
        self, tenant: TenantSettings, user: str, step: str, active: tuple[str, ...]
    ) -> Reply | None:
        """A refusal when `step` could never be approved with `user` as its requester."""
        eligible = rules.eligible_approvers(active, (user,))
        if rules.enough_approvers(eligible, tenant.quorum_for(step)):
            return None
        unknown = len(tenant.approvers) - len(active)
        text = messages.too_few_approvers(step, tenant.quorum_for(step), len(eligible), unknown)
        return refused(Refused.TOO_FEW_APPROVERS, text)

    async def start_closure(self, tenant_name: str, user: str) -> Reply:
        if not self.approvers.is_admin(user):
            return refused(
                Refused.NOT_ALLOWED, messages.reply("only_admins", what="start a closure")
            )
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            names = [t.name for t in self.settings.tenants]
            return refused(Refused.UNKNOWN_TENANT, messages.unknown_tenant(tenant_name, names))
        active = await self.directory.active_ids(tenant.approvers)
        for step in steps.names():
            if (refusal := self._enough_approvers(tenant, user, step, active)) is not None:
                return refusal
        closure_id = uuid.uuid4().hex[:12]
        now = self.clock()
        try:
            with transaction(self.db):
                row = closures_db.create_closure(
                    self.db,
                    closure_id=closure_id,
                    tenant=tenant.name,
                    tenant_id=tenant.tenant_id,
                    requester=user,
                    state=initial_state(),
                    channel=self.settings.slack.progress_channel,
                    at=now,
                )
                audit.record(self.db, row, "start", at=now, actor=user, detail={})
        except closures_db.OpenClosureExists:
            open_row = closures_db.open_closure_for(self.db, tenant.name)
            state = open_row.state if open_row else "unknown"
            return refused(
                Refused.ALREADY_OPEN,
                messages.reply("already_open", tenant=tenant.name, state=state),
            )
        try:
            await self.status.refresh(closure_id)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            return await self._unstarted(closure_id, tenant.name, user, slack_error(exc))
        self.spawn(closure_id)
        return Reply(
            True,
            messages.reply(
                "started", tenant=tenant.name, channel=self.settings.slack.progress_channel
            ),
        )

    async def _unstarted(self, closure_id: str, tenant: str, user: str, error: str) -> Reply:
        """Slack refused the first status message: the closure is aborted before it did anything
        (no half-open closure holds the tenant), and the admin hears why and what to fix."""
        log.warning("closure %s: Slack refused the status message: %s", closure_id, error)
        text = messages.start_refused_by_slack(tenant, error)
        try:
            await self.transitions.transition(
                closure_id,
                None,
                "abort",
                actor="bot",
                reason=text,
                detail={"why": "status message refused", "slack_error": error},
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError):
            pass  # the abort is saved before Slack is told; Slack is what failed
        closures_db.set_status_shown(self.db, closure_id, "aborted")  # nothing left to show
        return refused(Refused.SLACK, text)

    def _open(self, tenant_name: str, user: str, what: str) -> ClosureRow | Reply:
        """The tenant's open closure for an admin to act on, or why not."""
        if not self.approvers.is_admin(user):
            return refused(Refused.NOT_ALLOWED, messages.reply("only_admins", what=what))
        tenant = self.settings.tenant(tenant_name)
        row = closures_db.open_closure_for(self.db, tenant.name) if tenant else None
        if row is None:
            text = messages.reply("no_open_closure", tenant=tenant_name)
            return refused(Refused.NO_CLOSURE, text)
        return row

    async def abort(self, tenant_name: str, user: str, reason: str) -> Reply:
        row = self._open(tenant_name, user, "abort a closure")
        if isinstance(row, Reply):
            return row
        why = reason or "no reason given"

        def close_requests() -> list[Post]:
            # Open requests end with the closure: a later reaction is no vote.
            for req in requests_db.requests_of(self.db, row.id):
                if req.status == "open":
                    requests_db.set_request_status(self.db, req.id, "void")
            return []

        if await self.transitions.transition(
            row.id,
            None,
            "abort",
            actor=user,
            reason=messages.abort_reason(why),
            detail={"reason": why},
            also=close_requests,
            posts=[Post(messages.aborted(user, why))],
        ):
            return Reply(True, messages.reply("abort_done", tenant=row.tenant))
        return refused(Refused.RACED, messages.reply("abort_missed", tenant=row.tenant))

    async def retry(self, tenant_name: str, user: str) -> Reply:
        row = self._open(tenant_name, user, "retry a closure")
        if isinstance(row, Reply):
            return row
        step, phase = split_state(row.state)
        if phase not in ("blocked", "rejected", "failed"):
            return refused(Refused.WRONG_STATE, messages.reply("nothing_to_retry", state=row.state))
        resuming = phase == "failed"
        if await self.transitions.transition(
            row.id,
            row.state,
            "retry",
            actor=user,
            posts=[Post(messages.retried(user, step, resuming), step)],
        ):
            self.spawn(row.id)
            return Reply(
                True,
                messages.reply(
                    "retrying", tenant=row.tenant, what="resuming" if resuming else "planning again"
                ),
            )
        return refused(Refused.RACED, messages.reply("retry_missed"))

    async def prepare(self, tenant_name: str, user: str) -> Reply:
        """Run the blocked step's preparation (turning directory sync off through Graph) as its
        own approved action, then the step itself."""
        row = self._open(tenant_name, user, "ask the bot to turn off sync")
        if isinstance(row, Reply):
            return row
        step, phase = split_state(row.state)
        impl = implementation(step) if step is not None and phase == "blocked" else None
        blocked_on = closures_db.latest_plan(self.db, row.id, step) if impl and step else None
        if (
            impl is None
            or impl.preparation is None
            or blocked_on is None
            or impl.clears not in blocked_on.plan.blocker_codes()
        ):
            return refused(Refused.WRONG_STATE, messages.reply("no_preparation"))

        def flag() -> list[Post]:
            closures_db.save_closure(
                self.db, row.id, at=self.clock(), sync_action=True, sync_requester=user
            )
            return []

        if await self.transitions.transition(
            row.id,
            row.state,
            "retry",
            actor=user,
            also=flag,
            detail={"action": "disable_sync"},
            posts=[Post(messages.preparation_asked(user), step)],
        ):
            self.spawn(row.id)
            return Reply(True, messages.reply("preparing"))
        return refused(Refused.RACED, messages.reply("changed_state"))

    async def rollback(self, tenant_name: str, user: str) -> Reply:
        """Start undoing what a closure changed, until the point of no return (then refuse)."""
        if not self.approvers.is_admin(user):
            return refused(
                Refused.NOT_ALLOWED, messages.reply("only_admins", what="roll back a closure")
            )
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            return refused(Refused.UNKNOWN_TENANT, messages.unknown_tenant(tenant_name))
        row = closures_db.latest_closure_for(self.db, tenant.name)
        if row is None:
            return refused(
                Refused.NO_CLOSURE, messages.reply("nothing_to_roll_back", tenant=tenant.name)
            )
        step, phase = split_state(row.state)
        if step == ROLLBACK:
            text = messages.reply("rolling_back_already", tenant=tenant.name, state=row.state)
            return refused(Refused.WRONG_STATE, text)
        if phase == "rolled_back":
            return refused(
                Refused.WRONG_STATE, messages.reply("rolled_back_already", tenant=tenant.name)
            )
        if not rollback_possible(self.db, row):
            text = messages.past_point_of_no_return(tenant.name)
            return refused(Refused.POINT_OF_NO_RETURN, text)
        active = await self.directory.active_ids(tenant.approvers)
        if (refusal := self._enough_approvers(tenant, user, ROLLBACK, active)) is not None:
            return refusal

        def remember() -> list[Post]:
            closures_db.save_closure(self.db, row.id, at=self.clock(), rollback_requester=user)
            return []

        try:
            started = await self.transitions.transition(
                row.id,
                row.state,
                "start_rollback",
                actor=user,
                also=remember,
                posts=[Post(messages.rollback_asked(user), ROLLBACK)],
            )
        except closures_db.OpenClosureExists:
            return refused(Refused.ALREADY_OPEN, messages.reply("another_open", tenant=tenant.name))
        if not started:
            return refused(Refused.RACED, messages.reply("rollback_missed", tenant=tenant.name))
        self.spawn(row.id)
        return Reply(True, messages.reply("rolling_back", tenant=tenant.name))

    async def post_audit(self, tenant_name: str, user: str) -> Reply:
        """Post the tenant's audit trail as CSV and JSON files in its latest closure's thread."""
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            return refused(Refused.UNKNOWN_TENANT, messages.unknown_tenant(tenant_name))
        allowed = {
            *self.directory.ids(self.settings.slack.admins),
            *self.directory.ids(tenant.approvers),
        }
        if user not in allowed:
            return refused(Refused.NOT_ALLOWED, messages.reply("audit_readers"))
        row = closures_db.latest_closure_for(self.db, tenant.name)
        if row is None or row.status_ts is None:
            return refused(Refused.NO_CLOSURE, messages.reply("no_thread", tenant=tenant.name))
        rows = audit.trail(self.db, tenant.name)
        try:
            # Written to files off the event loop and streamed from disk to Slack (bot.export).
            await export.post_files(
                self.client,
                rows,
                stamp=f"{tenant.name}-audit-{row.id}",
                channel=row.channel,
                thread_ts=row.status_ts,
                comment=messages.audit_posted(tenant.name, len(rows), user),
            )
        except (SlackApiError, export.UploadError, aiohttp.ClientError, TimeoutError) as exc:
            error = slack_error(exc) if not isinstance(exc, export.UploadError) else str(exc)
            log.warning("closure %s: audit export not posted: %s", row.id, error)
            return refused(Refused.SLACK, messages.audit_upload_failed(tenant.name, error))
        # Recorded once the files are in Slack: the trail never claims an export that failed.
        audit.record(
            self.db, row, "audit_export", at=self.clock(), actor=user, detail={"rows": len(rows)}
        )
        return Reply(True, messages.reply("audit_done", tenant=tenant.name, entries=len(rows)))
