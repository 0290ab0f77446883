"""`/close-account plan <tenant>`: the preview of `close-account-bot plan` for an admin or one of
the tenant's approvers, answered only to them: the per-step summary as the command's ephemeral
answer, the whole inventory as a file in their direct message with the bot. Reads Microsoft only;
opens no closure, posts nothing in the progress channel, writes one audit line: what Resource
Manager and Partner Center show it is read through a read-only `Learned` (a preview's sighting of
a cancelled subscription is no closure's cancellation time). One preview per tenant at a time:
each reads every user, the usage reports and ARM through the Graph client and pacer a running
closure uses."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import messages, preview
from bot.actions import Refused, Reply, refused
from bot.approvers import Approvers
from bot.config import Settings, TenantSettings
from bot.identity import Directory
from bot.microsoft import tenant as ms
from bot.microsoft.azure import ArmError
from bot.microsoft.graph import GraphError
from bot.microsoft.tokens import TokenError
from bot.slackapi import slack_error
from storage import audit

log = logging.getLogger("close_account_bot.plan_command")

# What reading the tenant can fail with (as `close-account-bot plan` catches), besides a step's
# own StepPreview error.
UNREADABLE = (TokenError, GraphError, ArmError, ms.StepError, aiohttp.ClientError, TimeoutError)


@dataclass(eq=False, kw_only=True)
class PlanCommand:
    settings: Settings
    db: Database  # for the audit line only
    client: AsyncWebClient
    clock: Callable[[], float]
    directory: Directory
    approvers: Approvers
    tenants: dict[str, ms.Tenant]
    session: aiohttp.ClientSession
    ssl_context: Any
    _reading: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def answer(self, tenant_name: str, user: str) -> Reply:
        """The preview for `user`, or why not; the file goes to their DM."""
        tenant = self.settings.tenant(tenant_name)
        admin = self.approvers.is_admin(user)
        if tenant is None:
            # Only an admin hears which tenants are configured.
            names = [t.name for t in self.settings.tenants] if admin else []
            return refused(Refused.UNKNOWN_TENANT, messages.unknown_tenant(tenant_name, names))
        if not may_preview(self.approvers, self.directory, tenant, user):
            return refused(Refused.NOT_ALLOWED, messages.plan_readers())
        lock = self._reading.setdefault(tenant.name, asyncio.Lock())
        if lock.locked():  # checked and taken with no await between: no second reader slips in
            return refused(Refused.BUSY, messages.plan_busy(tenant.name))
        async with lock:
            return await self._answer(tenant, user)

    async def _answer(self, tenant: TenantSettings, user: str) -> Reply:
        try:
            found = await preview.preview(
                read_only(self.tenants[tenant.name]),
                self.session,
                self.ssl_context,
                self.settings.timing.tenant_gone_checks,
            )
        except UNREADABLE as exc:
            why = str(exc) or type(exc).__name__
            log.warning("plan preview of %s could not be read: %s", tenant.name, why)
            return refused(Refused.MICROSOFT, messages.plan_unreadable(tenant.name, why))
        full = preview.as_text(tenant.name, found)
        summary, cut = messages.plan_summary(full.splitlines())
        items = preview.item_count(found)
        error = await self._send_file(user, tenant.name, found, items, full if cut else None)
        # The trail keeps who looked at which tenant's inventory; no closure is its own.
        audit.append(
            self.db,
            tenant=tenant.name,
            closure_id=None,
            at=self.clock(),
            actor=user,
            action="plan_previewed",
            detail={"items": items, "file_sent": error is None, "slack_error": error},
        )
        said = messages.plan_file_sent(items) if error is None else messages.plan_file_failed(error)
        return Reply(True, f"{summary}\n{said}")

    async def _send_file(
        self,
        user: str,
        tenant: str,
        found: Sequence[preview.StepPreview],
        items: int,
        full_text: str | None,
    ) -> str | None:
        """Share the inventory CSV (and the whole text when the summary was cut) in the user's
        direct message with the bot; None once sent, else Slack's error."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock()))
        uploads = [_upload(f"{tenant}-plan-{stamp}.csv", preview.as_csv(found))]
        if full_text is not None:
            uploads.append(_upload(f"{tenant}-plan-{stamp}.txt", full_text + "\n"))
        try:
            opened = await self.client.conversations_open(users=user)
            await self.client.files_upload_v2(
                channel=str(opened["channel"]["id"]),
                file_uploads=uploads,
                initial_comment=messages.plan_file_comment(tenant, items),
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            error = slack_error(exc)
            log.warning("plan preview of %s: the file was not sent: %s", tenant, error)
            return error
        return None


def may_preview(
    approvers: Approvers, directory: Directory, tenant: TenantSettings, user: str
) -> bool:
    """Admins and the tenant's approvers (emails as their resolved Slack users) may preview it."""
    return approvers.is_admin(user) or user in directory.ids(tenant.approvers)


def read_only(tenant: ms.Tenant) -> ms.Tenant:
    """The tenant's clients for a preview: the same Graph, ARM and Partner Center, whose
    `Learned` reads the database but keeps what the preview learns in memory, for it alone."""
    shared = tenant.arm or tenant.partner
    if shared is None:
        return tenant
    reader = shared.learned.reader()
    return dataclasses.replace(
        tenant,
        arm=dataclasses.replace(tenant.arm, learned=reader) if tenant.arm else None,
        partner=dataclasses.replace(tenant.partner, learned=reader) if tenant.partner else None,
    )


def _upload(name: str, content: str) -> dict[str, Any]:
    return {"content": content, "filename": name, "title": name}
