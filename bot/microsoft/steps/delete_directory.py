"""Step 5, delete the directory: Microsoft's preconditions checked while planning, then the
writes that can be refused (delete applications and service principals, disable those that
cannot be deleted), then the purges (the point of no return), then the bot's own access last;
a Global Administrator deletes the tenant and the bot counts Microsoft's 'tenant not found'
answers. Preconditions: MicrosoftDocs/entra-docs docs/identity/users/directory-delete-howto.md."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot import messages
from bot.config import TenantSettings
from bot.microsoft.azure import ArmError
from bot.microsoft.graph import GraphError
from bot.microsoft.permissions import REQUIRED_ROLES
from bot.microsoft.reports import data_figures
from bot.microsoft.steps.base import Outstanding, Progress, Step, StepContext, batched, deletes
from bot.microsoft.steps.delete_users import is_retained
from bot.microsoft.tenant import (
    StepError,
    Tenant,
    app_setup,
    facts,
    global_admins,
    list_users,
    subscriptions,
)
from bot.microsoft.tokens import TokenError, jwt_claims
from statemachine.plan import Blocker, Item, Plan

MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
TENANT_NOT_FOUND = 90002
USERS_REMAIN = "users_remain"
SUBSCRIPTIONS_REMAIN = "subscriptions_remain"
SEVERAL_RETAINED = "several_retained"
RETAINED_NOT_ADMIN = "retained_not_admin"
AZURE_REMAIN = "azure_subscriptions_remain"
PERMISSIONS_MISSING = "permissions_missing"
OWN_ACCESS_MISSING = "own_access_missing"
STEP5 = "5 delete directory"
DELETED_APPS = "/directory/deletedItems/microsoft.graph.application"
DELETED_SPS = "/directory/deletedItems/microsoft.graph.servicePrincipal"


def upn(user: dict[str, Any]) -> str:
    return str(user.get("userPrincipalName", ""))


def _application(app: dict[str, Any], sp_of_app: dict[Any, str]) -> Item:
    """An app registration to delete, and the service principal that goes with it (named in
    the request: deleting an application deletes its service principal too)."""
    detail = {"appId": app.get("appId")}
    if app.get("appId") in sp_of_app:
        detail["servicePrincipalId"] = sp_of_app[app.get("appId")]
    return Item("application", str(app["id"]), str(app.get("displayName", "")), detail)


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


async def _retained_blockers(tenant: Tenant, users: list[dict[str, Any]]) -> list[Blocker]:
    """Exactly one retained user may be left, and it must be an active Global Administrator."""
    kept = [str(u["userPrincipalName"]) for u in users if is_retained(tenant.settings.retain, u)]
    if len(kept) > 1:
        return [Blocker(SEVERAL_RETAINED, messages.several_retained(sorted(kept)))]
    admins = await global_admins(tenant)
    if not kept or kept[0].lower() not in admins:
        return [
            Blocker(
                RETAINED_NOT_ADMIN, messages.retained_not_global_admin(kept[0] if kept else None)
            )
        ]
    return []


async def _azure_blockers(tenant: Tenant) -> tuple[list[Blocker], str | None]:
    """Azure subscriptions, active or cancelled, block the deletion (bot.microsoft.azure).
    Resource Manager lists only those the app holds a role on: when it lists none (or refuses
    to list), the checklist asks a Global Administrator to confirm none is left
    (MicrosoftDocs/entra-docs docs/identity/users/directory-delete-howto.md, "Delete an Azure
    subscription")."""
    blocking = getattr(tenant.arm, "blocking_subscriptions", None) if tenant.arm else None
    if blocking is None:
        return [], messages.azure_confirm_none_line(False)
    try:
        subs = await blocking()
    except (ArmError, TokenError, aiohttp.ClientError) as exc:
        blocker = Blocker(
            AZURE_REMAIN,
            messages.azure_unknown(
                f"The bot cannot list Azure subscriptions ({exc}). Give its app the Owner"
                " role on each Azure subscription, or delete them in the Azure portal."
            ),
        )
        return [blocker], messages.azure_confirm_none_line(True)
    if not subs:
        return [], messages.azure_confirm_none_line(False)
    names = [str(s.get("displayName") or s.get("subscriptionId")) for s in subs]
    return [Blocker(AZURE_REMAIN, messages.azure_subscriptions_remain(names))], None


async def _permission_blockers(tenant: Tenant) -> list[Blocker]:
    """Every call of this step must be allowed before the first purge: read from the token."""
    roles = set(jwt_claims(await tenant.graph.tokens.token()).get("roles") or [])
    missing = [n for n in REQUIRED_ROLES if n.step == STEP5 and not n.allows(roles)]
    if not missing:
        return []
    details = [f"{n.call}: needs {' or '.join(n.accepted)}" for n in missing]
    add = sorted({role for n in missing for role in n.least.split(" + ")} - roles)
    return [Blocker(PERMISSIONS_MISSING, messages.step5_permissions_missing(details, add))]


class DeleteDirectory(Step):
    name = "delete_directory"
    counts_confirmations = True

    async def plan(self, ctx: StepContext) -> Plan:
        tenant, org = ctx.tenant, ctx.org
        graph = tenant.graph
        blockers: list[Blocker] = await _permission_blockers(tenant)
        users = await list_users(tenant)
        others = [u for u in users if not is_retained(tenant.settings.retain, u)]
        if others:
            blockers.append(
                Blocker(
                    USERS_REMAIN,
                    f"{len(others)} users other than the retained Global Administrator still"
                    " exist (step 1 must finish first).",
                )
            )
        blockers += await _retained_blockers(tenant, users)
        live = [s for s in await subscriptions(tenant) if s.get("status") != "Deleted"]
        if live:
            blockers.append(
                Blocker(
                    SUBSCRIPTIONS_REMAIN,
                    f"{len(live)} subscriptions are not Deleted yet (steps 2 and 3 must finish"
                    " first).",
                )
            )
        azure, azure_line = await _azure_blockers(tenant)
        blockers += azure
        setup = await app_setup(tenant)
        own_id = tenant.settings.client_id
        if setup.service_principal is None:
            blockers.append(Blocker(OWN_ACCESS_MISSING, messages.own_access_missing(own_id)))
        deleted = await graph.get_all("/directory/deletedItems/microsoft.graph.user?$top=999")
        deleted_apps = await graph.get_all(f"{DELETED_APPS}?$top=999")
        deleted_sps = await graph.get_all(f"{DELETED_SPS}?$top=999")
        apps = await graph.get_all("/applications")
        sps = await graph.get_all("/servicePrincipals")
        domains = await graph.get_all("/domains")
        # In the order the step acts: what Microsoft may refuse (applications, then service
        # principals), then the purges, then the bot's own access (below).
        app_ids = {a.get("appId") for a in apps}
        sp_of_app = {sp.get("appId"): str(sp["id"]) for sp in sps}
        items: list[Item] = [_application(a, sp_of_app) for a in apps if a.get("appId") != own_id]
        items += [
            Item("service_principal", str(sp["id"]), str(sp.get("displayName", "")))
            for sp in sps
            if sp.get("appOwnerOrganizationId") != MICROSOFT_TENANT
            and sp.get("appId") not in app_ids  # removed with their application
            and sp.get("appId") != own_id  # the bot's own access goes last
        ]
        items += [
            Item("deleted_application", str(a["id"]), str(a.get("displayName", "")))
            for a in deleted_apps
        ]
        # Deleted enterprise applications are in the recycle bin too and block the deletion
        # until purged (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
        # directory-deleteditems-delete.md).
        items += [
            Item("deleted_service_principal", str(sp["id"]), str(sp.get("displayName", "")))
            for sp in deleted_sps
            if sp.get("appId") != own_id
        ]
        # A deleted user's name as people know it: Microsoft puts the object ID in front.
        items += [
            Item("deleted_user", str(u["id"]), messages.unprefixed_upn(upn(u), str(u["id"])))
            for u in deleted
        ]
        # The bot's own access, last: its application object (single-tenant), which takes its
        # service principal with it; or, for a multi-tenant app, its service principal here.
        if setup.application is not None:
            own = setup.application
            name = str(own.get("displayName") or "close-account-bot")
            items.append(Item("own_application", str(own["id"]), name))
        elif setup.service_principal is not None:
            sp = setup.service_principal
            items.append(Item("own_service_principal", str(sp["id"]), str(sp.get("displayName"))))
        custom = [str(d["id"]) for d in domains if not str(d["id"]).endswith(".onmicrosoft.com")]
        checklist = [messages.unpaid_invoices_line(), messages.self_service_products_line()]
        if azure_line is not None:
            checklist.append(azure_line)
        if setup.application is not None:
            checklist.append(
                messages.purge_own_application_line(
                    str(setup.application.get("displayName")), str(setup.application["id"])
                )
            )
        elif setup.service_principal is not None:  # multi-tenant: its deleted SP stays behind
            own_sp = setup.service_principal
            checklist.append(
                messages.purge_own_service_principal_line(
                    str(own_sp.get("displayName") or "close-account-bot"), str(own_sp["id"])
                )
            )
        checklist.append(messages.delete_tenant_line(str(org["display_name"]), tenant.tenant_id))
        return Plan(
            self.name,
            tenant.tenant_id,
            tuple(items),
            tuple(blockers),
            tuple(checklist),
            {
                **facts(dict(org)),
                "custom_domains": custom,
                "app_setup": "multi-tenant" if setup.multi_tenant else "single-tenant",
                "app_home_tenant_id": setup.home_tenant_id,
                # What dies with the tenant (never in the hash: facts are not hashed).
                "data": await data_figures(tenant),
            },
        )

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        """First what Microsoft may refuse (deletes, then disabling what cannot be deleted),
        then the purges, from which nothing can be undone, then the bot's own access last."""
        tenant = ctx.tenant
        removals = [f"/applications/{i.id}" for i in plan.of_kind("application")]
        removals += [f"/servicePrincipals/{i.id}" for i in plan.of_kind("service_principal")]
        # Service principals deleted here go to the recycle bin too: purged with the others
        # (one that could not be deleted, disabled instead, answers 404: counted as done).
        purged = ("deleted_user", "deleted_service_principal", "deleted_application")
        purges = [
            f"/directory/deletedItems/{i.id}"
            for i in plan.of_kind(*purged, "application", "service_principal")
        ]
        total = len(removals) + 1 + len(purges) + 1
        if start < len(removals):
            refusals = await batched(tenant, deletes(removals), progress, start, total=total)
            # A service principal that cannot be deleted answers 403: it is disabled below.
            real = [
                r
                for r in refusals
                if not (r.path.startswith("/servicePrincipals/") and r.response.status == 403)
            ]
            if real:
                raise StepError(messages.writes_refused(len(real), real[0].text("delete")))
        if start <= len(removals):
            await self._disable_leftovers(ctx, plan)
            await progress(len(removals) + 1, total)
        base = len(removals) + 1

        async def shifted(done: int, _count: int) -> None:
            await progress(base + done, total)

        if start < base + len(purges):
            refusals = await batched(
                tenant, deletes(purges), shifted, max(start - base, 0), total=len(purges)
            )
            if refusals:
                raise StepError(messages.writes_refused(len(refusals), refusals[0].text("purge")))
        for own in plan.of_kind("own_application", "own_service_principal"):
            path = (
                f"/applications/{own.id}"
                if own.kind == "own_application"
                else f"/servicePrincipals/{own.id}"
            )
            await progress(total - 1, total)
            try:
                await tenant.graph.request("DELETE", path, ok_statuses=(404,))
            except GraphError as exc:
                raise StepError(f"deleting the bot's own access: {exc}") from exc
        await progress(total, total)

    async def _disable_leftovers(self, ctx: StepContext, plan: Plan) -> None:
        """Service principals of the plan still here (they cannot be deleted) are disabled:
        `accountEnabled: false`, as Microsoft's page on deleting a tenant says."""
        planned = {i.id for i in plan.of_kind("service_principal")}
        if not planned:
            return
        here = await ctx.tenant.graph.get_all("/servicePrincipals?$select=id,accountEnabled")
        enabled = [
            f"/servicePrincipals/{sp['id']}"
            for sp in here
            if str(sp.get("id")) in planned and sp.get("accountEnabled") is not False
        ]

        async def quiet(done: int, count: int) -> None:
            return None

        requests = [("PATCH", path, {"accountEnabled": False}) for path in enabled]
        refusals = await batched(ctx.tenant, requests, quiet, 0)
        if refusals:
            raise StepError(messages.disable_refused(len(refusals), refusals[0].text("disable")))

    def handed_off(self, plan: Plan) -> bool:
        return True  # only a Global Administrator can delete the tenant itself

    def access_may_be_gone(self, done: int, total: int) -> bool:
        """The bot's own access is the last write: once it is under way, the bot's token
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
