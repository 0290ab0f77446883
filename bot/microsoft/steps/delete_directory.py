"""Step 5, delete the directory: purge soft-deleted users, delete applications and service
principals (the bot's own application last), then a Global Administrator deletes the tenant and
the bot counts Microsoft's 'tenant not found' answers. Irreversible: the point of no return."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.config import TenantSettings
from bot.microsoft.graph import GraphError
from bot.microsoft.steps.base import Outstanding, Progress, Step, StepContext, batched, deletes
from bot.microsoft.tenant import StepError, facts, list_users, subscriptions
from statemachine.plan import Blocker, Item, Plan

MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
TENANT_NOT_FOUND = 90002
USERS_REMAIN = "users_remain"
SUBSCRIPTIONS_REMAIN = "subscriptions_remain"


async def tenant_gone(
    session: aiohttp.ClientSession, tenant: TenantSettings, ssl_context: Any
) -> bool:
    """Whether the authority answers 'tenant not found' (AADSTS90002); needs no credentials."""
    url = f"{tenant.authority_host}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"
    try:
        async with session.get(url, ssl=ssl_context if ssl_context is not None else True) as resp:
            if resp.status != 400:
                return False
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    codes = body.get("error_codes") if isinstance(body, dict) else None
    return isinstance(codes, list) and TENANT_NOT_FOUND in codes


class DeleteDirectory(Step):
    name = "delete_directory"
    counts_confirmations = True

    async def plan(self, ctx: StepContext) -> Plan:
        tenant, org = ctx.tenant, ctx.org
        graph = tenant.graph
        retain = tenant.retained()
        blockers: list[Blocker] = []
        users = await list_users(tenant)
        others = [u for u in users if str(u.get("userPrincipalName", "")).lower() not in retain]
        if others:
            blockers.append(
                Blocker(
                    USERS_REMAIN,
                    f"{len(others)} users other than the retained Global Administrator still"
                    " exist (step 1 must finish first).",
                )
            )
        live = [s for s in await subscriptions(tenant) if s.get("status") != "Deleted"]
        if live:
            blockers.append(
                Blocker(
                    SUBSCRIPTIONS_REMAIN,
                    f"{len(live)} subscriptions are not Deleted yet (steps 2 and 3 must finish"
                    " first).",
                )
            )
        deleted = await graph.get_all("/directory/deletedItems/microsoft.graph.user?$top=999")
        apps = await graph.get_all("/applications")
        sps = await graph.get_all("/servicePrincipals")
        domains = await graph.get_all("/domains")
        own = tenant.settings.client_id
        items: list[Item] = [
            Item("deleted_user", str(u["id"]), str(u.get("userPrincipalName", ""))) for u in deleted
        ]
        app_ids = {a.get("appId") for a in apps}
        items += [
            Item(
                "application",
                str(a["id"]),
                str(a.get("displayName", "")),
                {"appId": a.get("appId"), "own": a.get("appId") == own},
            )
            for a in apps
        ]
        items += [
            Item("service_principal", str(sp["id"]), str(sp.get("displayName", "")))
            for sp in sps
            if sp.get("appOwnerOrganizationId") != MICROSOFT_TENANT
            and sp.get("appId") not in app_ids  # removed with their application
            and sp.get("appId") != own  # the bot's own access goes last, with its application
        ]
        custom = [str(d["id"]) for d in domains if not str(d["id"]).endswith(".onmicrosoft.com")]
        checklist = (
            "Microsoft Entra admin center > Identity > Overview > Manage tenants > select"
            f" {org['display_name']} ({tenant.tenant_id}) > Delete, then follow the checks it"
            " shows.",
        )
        return Plan(
            self.name,
            tenant.tenant_id,
            tuple(items),
            tuple(blockers),
            checklist,
            {**facts(dict(org)), "custom_domains": custom},
        )

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        """Purge, then delete apps and service principals; the bot's own application goes last."""
        paths = [f"/directory/deletedItems/{i.id}" for i in plan.of_kind("deleted_user")]
        paths += [
            f"/applications/{i.id}" for i in plan.of_kind("application") if not i.detail["own"]
        ]
        paths += [f"/servicePrincipals/{i.id}" for i in plan.of_kind("service_principal")]
        total = len(paths) + 1
        if start < len(paths):
            refusals = await batched(ctx.tenant, deletes(paths), progress, start, total=total)
            # Microsoft's own service principals answer 403 and do not block deletion.
            real = [
                r
                for r in refusals
                if not (r.path.startswith("/servicePrincipals/") and r.response.status == 403)
            ]
            if real:
                raise StepError(f"{len(real)} deletes refused; first: {real[0].text('delete')}")
        for app in plan.of_kind("application"):
            if not app.detail["own"]:
                continue
            try:
                await ctx.tenant.graph.request(
                    "DELETE", f"/applications/{app.id}", ok_statuses=(404,)
                )
            except GraphError as exc:
                raise StepError(f"deleting the bot's own application: {exc}") from exc
        await progress(total, total)

    def handed_off(self, plan: Plan) -> bool:
        return True  # only a Global Administrator can delete the tenant itself

    def access_may_be_gone(self, done: int, total: int) -> bool:
        """The bot's own application is the last write: once it is under way, the bot's token
        may no longer work, and a restart hands off instead of acting again."""
        return bool(total) and done >= total - 1

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        settings = ctx.tenant.settings
        gone = await tenant_gone(ctx.session, settings, ctx.ssl_context)
        return Outstanding(counter=(ctx.checks + 1 if gone else 0, ctx.checks_needed))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        if ctx.checks >= ctx.checks_needed:
            return []
        return [f"{ctx.checks}/{ctx.checks_needed} checks"]


STEP = DeleteDirectory()
