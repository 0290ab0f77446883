"""The five steps against Graph: plan (inventory + blockers), execute, check external work, verify.

Each function takes a `Tenant` (settings + Graph client) and returns plain data; the runner
decides what the outcome means for the closure's state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from bot.config import TenantSettings
from bot.microsoft.azure import ACTIVE_STATES as AZURE_ACTIVE
from bot.microsoft.azure import Arm, ArmError
from bot.microsoft.graph import BatchRequest, Graph, GraphError, Response
from bot.microsoft.partner import PartnerCenter, PartnerCenterError
from bot.microsoft.tokens import TokenError
from statemachine.plan import Item, Plan

GLOBAL_ADMIN_ROLE = "62e90394-69f5-4237-9190-012177145e10"
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
ACTIVE_STATUSES = frozenset({"Enabled", "Warning"})
TENANT_NOT_FOUND = 90002

Progress = Callable[[int, int], Awaitable[None]]


class StepError(Exception):
    """A step could not do what it was approved to do; the message says what failed."""


@dataclass
class Tenant:
    settings: TenantSettings
    graph: Graph
    arm: Arm | None = None
    partner: PartnerCenter | None = None

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id


async def organization(tenant: Tenant) -> dict[str, Any]:
    """The organization as Graph shows it: id, display name, primary domain, sync state."""
    body = await tenant.graph.get(
        "/organization?$select=id,displayName,verifiedDomains,onPremisesSyncEnabled"
    )
    orgs = body.get("value", [])
    if not orgs:
        raise StepError("Graph returned no organization for this tenant")
    org: dict[str, Any] = orgs[0]
    domains = org.get("verifiedDomains") or []
    primary = next((d.get("name") for d in domains if d.get("isDefault")), None)
    return {
        "id": org.get("id"),
        "display_name": org.get("displayName"),
        "primary_domain": primary,
        "sync_enabled": bool(org.get("onPremisesSyncEnabled")),
    }


def _facts(org: dict[str, Any]) -> dict[str, Any]:
    return {
        "display_name": org["display_name"],
        "tenant_id": org["id"],
        "primary_domain": org["primary_domain"],
    }


async def list_users(tenant: Tenant) -> list[dict[str, Any]]:
    return await tenant.graph.get_all(
        "/users?$select=id,userPrincipalName,displayName,userType,onPremisesSyncEnabled&$top=999"
    )


async def global_admins(tenant: Tenant) -> set[str]:
    """User principal names (lower case) holding an active Global Administrator assignment."""
    assignments = await tenant.graph.get_all(
        "/roleManagement/directory/roleAssignments"
        f"?$filter=roleDefinitionId eq '{GLOBAL_ADMIN_ROLE}'&$expand=principal"
    )
    upns = set()
    for assignment in assignments:
        principal = assignment.get("principal") or {}
        upn = principal.get("userPrincipalName")
        if upn:
            upns.add(str(upn).lower())
    return upns


def _retained(tenant: Tenant) -> set[str]:
    return {r.lower() for r in tenant.settings.retain}


async def subscriptions(tenant: Tenant) -> list[dict[str, Any]]:
    return await tenant.graph.get_all("/directory/subscriptions")


def still_to_do(approved: Plan, fresh: Plan) -> Plan:
    """The approved plan less what the step's fresh plan no longer lists: what Microsoft shows
    done already (deleted, cancelled, turned off) is not written again, and nothing the
    approvals did not cover is added."""
    left = {(item.kind, item.id) for item in fresh.items}
    return replace(approved, items=tuple(i for i in approved.items if (i.kind, i.id) in left))


# --- step 1: delete users ------------------------------------------------------------------


async def plan_delete_users(tenant: Tenant, org: dict[str, Any]) -> Plan:
    users = await list_users(tenant)
    retain = _retained(tenant)
    admins = await global_admins(tenant)
    present = {str(u.get("userPrincipalName", "")).lower() for u in users}
    blockers = []
    for upn in sorted(retain):
        if upn not in present:
            blockers.append(
                f"The retained account {upn} does not exist. Fix: correct `retain` in the"
                " config, or create the account and make it a Global Administrator."
            )
        elif upn not in admins:
            blockers.append(
                f"The retained account {upn} holds no active Global Administrator assignment."
                " Fix: Entra admin center > Roles & admins > Global Administrator > Add"
                " assignments (active, not eligible), then `retry`."
            )
    if org["sync_enabled"]:
        blockers.append(
            "Directory synchronization is on: deleted users would come back from on-premises."
            " Fix: turn off Microsoft Entra Connect sync (Update-MgBetaOrganization"
            " -OnPremisesSyncEnabled:$false); it can take up to 72 hours to finish. Then `retry`."
        )
    items = tuple(
        Item(
            "user",
            str(u["id"]),
            str(u.get("userPrincipalName", "")),
            {"userType": u.get("userType") or "Member"},
        )
        for u in users
        if str(u.get("userPrincipalName", "")).lower() not in retain
    )
    return Plan("delete_users", tenant.tenant_id, items, tuple(blockers), facts=_facts(org))


SYNC_ITEM = "disable_sync"


def sync_blocker_only(plan: Plan) -> bool:
    """Whether directory sync is the one thing blocking step 1 (the bot can turn it off)."""
    return len(plan.blockers) == 1 and plan.blockers[0].startswith("Directory synchronization")


def is_sync_plan(plan: Plan) -> bool:
    return any(i.kind == SYNC_ITEM for i in plan.items)


async def plan_disable_sync(tenant: Tenant, org: dict[str, Any]) -> Plan:
    """Turning directory sync off as its own approved action before step 1 proper."""
    items = (
        (Item(SYNC_ITEM, str(org["id"]), "Directory synchronization (Microsoft Entra Connect)"),)
        if org["sync_enabled"]
        else ()
    )
    checklist = (
        "Stop the Microsoft Entra Connect server's scheduler too (Set-ADSyncScheduler"
        " -SyncCycleEnabled $false), or it may try to sync again.",
    )
    return Plan("delete_users", tenant.tenant_id, items, (), checklist, _facts(org))


async def execute_disable_sync(tenant: Tenant, plan: Plan, progress: Progress, start: int) -> None:
    """Microsoft's documented organization update (beta): onPremisesSyncEnabled false."""
    for item in plan.of_kind(SYNC_ITEM):
        await tenant.graph.patch(
            f"/organization/{item.id}", {"onPremisesSyncEnabled": False}, beta=True
        )
    await progress(1, 1)


async def check_sync_off(tenant: Tenant) -> list[str]:
    org = await organization(tenant)
    return (
        ["directory synchronization is still on (Microsoft can take up to 72 hours)"]
        if org["sync_enabled"]
        else []
    )


async def _batched_deletes(
    tenant: Tenant, paths: Sequence[str], progress: Progress, start: int, what: str
) -> list[str]:
    """DELETE each path in $batch chunks from `start`; 404 counts as done. Returns refusals."""
    refusals: list[str] = []
    done = start
    chunk = 20
    for offset in range(start, len(paths), chunk):
        await progress(offset, len(paths))  # also the check that the closure still runs
        part = paths[offset : offset + chunk]
        requests = [BatchRequest(str(i), "DELETE", p) for i, p in enumerate(part)]
        results = await tenant.graph.batch(requests, ok_statuses=(404,))
        for req in requests:
            resp = results[req.id]
            if not (resp.ok or resp.status == 404):
                refusals.append(f"{what} {req.url}: {_error_text(resp)}")
        done = offset + len(part)
        await progress(done, len(paths))
    return refusals


def _error_text(resp: Response) -> str:
    error = resp.body.get("error") if isinstance(resp.body, dict) else None
    if isinstance(error, dict):
        return f"{resp.status} {error.get('code', '')}: {error.get('message', '')}"
    return str(resp.status)


async def execute_delete_users(tenant: Tenant, plan: Plan, progress: Progress, start: int) -> None:
    paths = [f"/users/{i.id}" for i in plan.of_kind("user")]
    refusals = await _batched_deletes(tenant, paths, progress, start, "delete")
    if refusals:
        raise StepError(f"{len(refusals)} deletes refused; first: {refusals[0]}")


async def verify_delete_users(tenant: Tenant) -> list[str]:
    retain = _retained(tenant)
    users = await list_users(tenant)
    left = [str(u.get("userPrincipalName")) for u in users]
    extra = [u for u in left if u.lower() not in retain]
    problems = [f"{len(extra)} users still exist, e.g. {', '.join(extra[:3])}"] if extra else []
    missing = retain - {u.lower() for u in left}
    if missing:
        problems.append(f"retained accounts missing: {', '.join(sorted(missing))}")
    return problems


# --- steps 2 and 3: subscriptions ----------------------------------------------------------


def _sub_item(sub: dict[str, Any], tenant_id: str) -> Item:
    owner = sub.get("ownerTenantId")
    channel = "partner" if owner and owner != tenant_id else "direct"
    if "AZURE" in str(sub.get("skuPartNumber", "")).upper():
        channel = "azure"
    return Item(
        "subscription",
        str(sub["id"]),
        str(sub.get("skuPartNumber") or sub.get("skuId")),
        {
            "status": sub.get("status"),
            "seats": sub.get("totalLicenses"),
            "trial": bool(sub.get("isTrial")),
            "channel": channel,
            "owner_tenant_id": owner if channel == "partner" else None,
        },
    )


def _sub_line(item: Item, verb: str) -> str:
    seats = item.detail.get("seats") or 0
    where = (
        f"bought through partner {item.detail.get('owner_tenant_id')}: ask the partner to"
        f" {verb.split()[0].lower()} it in Partner Center"
        if item.detail.get("channel") == "partner"
        else f"Microsoft 365 admin center > Billing > Your products > {item.name} > {verb}"
    )
    note = (
        f" (it has {seats} seats: first reduce to 25 or fewer)"
        if verb == "Cancel subscription" and isinstance(seats, int) and seats > 25
        else ""
    )
    return f"{item.name} ({item.id}): {where}{note}"


async def azure_subscriptions(tenant: Tenant) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant's Azure subscriptions through ARM, or why they could not be listed."""
    if tenant.arm is None:
        return [], None
    try:
        return await tenant.arm.subscriptions(), None
    except (ArmError, TokenError, aiohttp.ClientError) as exc:
        return [], (
            f"The bot cannot list Azure subscriptions ({exc}). Give its app the Owner role on"
            " each Azure subscription, or cancel them yourself: Azure portal > Subscriptions >"
            " select > Cancel subscription."
        )


async def plan_cancel_subscriptions(tenant: Tenant, org: dict[str, Any]) -> Plan:
    subs = await subscriptions(tenant)
    skus = await tenant.graph.get_all("/subscribedSkus")
    active = [s for s in subs if s.get("status") in ACTIVE_STATUSES]
    items = tuple(_by_partner_api(_sub_item(s, tenant.tenant_id), s, tenant) for s in active)
    checklist = tuple(
        _sub_line(i, "Cancel subscription") for i in items if not i.detail.get("partner_api")
    )
    if checklist:
        checklist += (
            "Custom domains must be removed before the last subscription can be cancelled:"
            " Microsoft 365 admin center > Settings > Domains.",
        )
    azure, problem = await azure_subscriptions(tenant)
    items += tuple(
        Item(
            "azure_subscription",
            str(a["subscriptionId"]),
            str(a.get("displayName", "")),
            {"state": a.get("state")},
        )
        for a in azure
        if a.get("state") in AZURE_ACTIVE
    )
    if problem:
        checklist += (problem,)
    elif not azure and checklist:
        checklist += (
            "Azure subscriptions the bot's app has no role on are invisible to it: if the tenant"
            " has any, cancel them in the Azure portal > Subscriptions > select > Cancel"
            " subscription.",
        )
    facts = {**_facts(org), "skus": len(skus), "azure_listed": problem is None}
    return Plan("cancel_subscriptions", tenant.tenant_id, items, (), checklist, facts)


def _by_partner_api(item: Item, sub: dict[str, Any], tenant: Tenant) -> Item:
    """Mark a subscription the configured partner sold: the bot cancels it in Partner Center."""
    owner = item.detail.get("owner_tenant_id")
    if tenant.partner is None or owner != tenant.partner.tenant_id:
        return item
    commerce = str(sub.get("commerceSubscriptionId") or sub["id"])
    return Item(item.kind, item.id, item.name, {**item.detail, "partner_api": commerce})


async def execute_cancel_subscriptions(
    tenant: Tenant, plan: Plan, progress: Progress, start: int
) -> None:
    """Cancel through Partner Center what the configured partner sold and through ARM the Azure
    subscriptions; the rest follows as a checklist for the admin center."""
    partner_items = [i for i in plan.of_kind("subscription") if i.detail.get("partner_api")]
    azure = plan.of_kind("azure_subscription")
    total = len(partner_items) + len(azure)
    for index in range(start, len(partner_items)):
        await progress(index, total)  # also the check that the closure still runs
        item = partner_items[index]
        if tenant.partner is None:
            raise StepError("Partner Center credentials are no longer configured")
        try:
            await tenant.partner.cancel(tenant.tenant_id, str(item.detail["partner_api"]))
        except PartnerCenterError as exc:
            if exc.status != 400:  # 400: no longer active, so cancelled already
                raise StepError(
                    f"Partner Center refused to cancel {item.name} ({item.id}): {exc}"
                ) from exc
        await progress(index + 1, total)
    for index in range(max(0, start - len(partner_items)), len(azure)):
        await progress(len(partner_items) + index, total)
        item = azure[index]
        if tenant.arm is None:
            raise StepError("no Azure Resource Manager endpoint is configured")
        try:
            await tenant.arm.cancel(item.id)
        except ArmError as exc:
            if exc.code != "SubscriptionNotActive":  # cancelled already: done
                raise StepError(
                    f"cancelling Azure subscription {item.name} ({item.id}): {exc}. Give the"
                    " bot's app the Owner role on it, or cancel it in the Azure portal, then"
                    " retry."
                ) from exc
        await progress(len(partner_items) + index + 1, total)


async def check_cancel_subscriptions(tenant: Tenant) -> list[str]:
    """What is still active (empty when Microsoft shows the step done)."""
    subs = await subscriptions(tenant)
    azure, _ = await azure_subscriptions(tenant)
    return [
        f"{s.get('skuPartNumber')} ({s.get('id')}) is {s.get('status')}"
        for s in subs
        if s.get("status") in ACTIVE_STATUSES
    ] + [
        f"Azure subscription {a.get('displayName')} ({a.get('subscriptionId')}) is {a.get('state')}"
        for a in azure
        if a.get("state") in AZURE_ACTIVE
    ]


async def plan_delete_disabled_subscriptions(tenant: Tenant, org: dict[str, Any]) -> Plan:
    subs = await subscriptions(tenant)
    items = tuple(_sub_item(s, tenant.tenant_id) for s in subs if s.get("status") != "Deleted")
    blockers = tuple(
        f"{i.name} ({i.id}) is still {i.detail['status']}: cancel it first"
        for i in items
        if i.detail["status"] in ACTIVE_STATUSES
    )
    checklist = tuple(_sub_line(i, "Delete subscription") for i in items)
    return Plan(
        "delete_disabled_subscriptions", tenant.tenant_id, items, blockers, checklist, _facts(org)
    )


async def check_delete_disabled_subscriptions(tenant: Tenant) -> list[str]:
    subs = await subscriptions(tenant)
    return [
        f"{s.get('skuPartNumber')} ({s.get('id')}) is {s.get('status')}"
        for s in subs
        if s.get("status") != "Deleted"
    ]


# --- step 4: disable MFA -------------------------------------------------------------------

SECURITY_DEFAULTS = "/policies/identitySecurityDefaultsEnforcementPolicy"
CA_POLICIES = "/identity/conditionalAccess/policies"


async def _mfa_items(tenant: Tenant) -> list[Item]:
    items: list[Item] = []
    defaults = await tenant.graph.get(SECURITY_DEFAULTS)
    if defaults.get("isEnabled"):
        items.append(Item("security_defaults", "security_defaults", "Security defaults"))
    for policy in await tenant.graph.get_all(CA_POLICIES):
        controls = (policy.get("grantControls") or {}).get("builtInControls") or []
        if "mfa" in controls and policy.get("state") != "disabled":
            items.append(
                Item(
                    "ca_policy",
                    str(policy["id"]),
                    str(policy.get("displayName", "")),
                    {"state": policy.get("state")},
                )
            )
    for user in await list_users(tenant):
        body = await tenant.graph.get(f"/users/{user['id']}/authentication/requirements", beta=True)
        state = body.get("perUserMfaState")
        if state and state != "disabled":
            items.append(
                Item(
                    "per_user_mfa",
                    str(user["id"]),
                    str(user.get("userPrincipalName", "")),
                    {"perUserMfaState": state},
                )
            )
    return items


async def plan_disable_mfa(tenant: Tenant, org: dict[str, Any]) -> Plan:
    items = await _mfa_items(tenant)
    checklist = (
        "If the tenant still uses a legacy MFA provider, delete it: Entra admin center >"
        " Protection > Multifactor authentication > Providers (no API exists for this).",
    )
    return Plan("disable_mfa", tenant.tenant_id, tuple(items), (), checklist, _facts(org))


async def execute_disable_mfa(tenant: Tenant, plan: Plan, progress: Progress, start: int) -> None:
    actions: list[tuple[str, str, dict[str, Any], bool]] = []
    for item in plan.items:
        if item.kind == "security_defaults":
            actions.append(("PATCH", SECURITY_DEFAULTS, {"isEnabled": False}, False))
        elif item.kind == "ca_policy":
            actions.append(("PATCH", f"{CA_POLICIES}/{item.id}", {"state": "disabled"}, False))
        elif item.kind == "per_user_mfa":
            path = f"/users/{item.id}/authentication/requirements"
            actions.append(("PATCH", path, {"perUserMfaState": "disabled"}, True))
    for index in range(start, len(actions)):
        await progress(index, len(actions))  # also the check that the closure still runs
        method, path, body, beta = actions[index]
        try:
            await tenant.graph.request(method, path, body=body, beta=beta)
        except GraphError as exc:
            if exc.status != 404:
                raise StepError(f"{method} {path}: {exc.status} {exc.code}: {exc.message}") from exc
        await progress(index + 1, len(actions))


async def verify_disable_mfa(tenant: Tenant) -> list[str]:
    return [f"{i.name} is still on" for i in await _mfa_items(tenant)]


# --- step 5: delete the directory ----------------------------------------------------------


async def plan_delete_directory(tenant: Tenant, org: dict[str, Any]) -> Plan:
    graph = tenant.graph
    retain = _retained(tenant)
    blockers: list[str] = []
    users = await list_users(tenant)
    others = [u for u in users if str(u.get("userPrincipalName", "")).lower() not in retain]
    if others:
        blockers.append(
            f"{len(others)} users other than the retained Global Administrator still exist"
            " (step 1 must finish first)."
        )
    subs = await subscriptions(tenant)
    live = [s for s in subs if s.get("status") != "Deleted"]
    if live:
        blockers.append(
            f"{len(live)} subscriptions are not Deleted yet (steps 2 and 3 must finish first)."
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
    facts = {**_facts(org), "custom_domains": custom}
    checklist = (
        "Microsoft Entra admin center > Identity > Overview > Manage tenants > select"
        f" {org['display_name']} ({tenant.tenant_id}) > Delete, then follow the checks it shows.",
    )
    return Plan(
        "delete_directory", tenant.tenant_id, tuple(items), tuple(blockers), checklist, facts
    )


async def execute_delete_directory(
    tenant: Tenant, plan: Plan, progress: Progress, start: int
) -> None:
    """Purge, then delete apps and service principals; the bot's own application goes last."""
    paths = [f"/directory/deletedItems/{i.id}" for i in plan.of_kind("deleted_user")]
    paths += [f"/applications/{i.id}" for i in plan.of_kind("application") if not i.detail["own"]]
    paths += [f"/servicePrincipals/{i.id}" for i in plan.of_kind("service_principal")]
    total = len(paths) + 1
    if start < len(paths):

        async def part(done: int, _: int) -> None:
            await progress(done, total)

        refusals = await _batched_deletes(tenant, paths, part, start, "delete")
        # Microsoft's own service principals answer 403 and do not block deletion.
        real = [r for r in refusals if "/servicePrincipals/" not in r or " 403 " not in f" {r}"]
        if real:
            raise StepError(f"{len(real)} deletes refused; first: {real[0]}")
    own = [i for i in plan.of_kind("application") if i.detail["own"]]
    for app in own:
        try:
            await tenant.graph.request("DELETE", f"/applications/{app.id}", ok_statuses=(404,))
        except GraphError as exc:
            raise StepError(f"deleting the bot's own application: {exc}") from exc
    await progress(total, total)


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
