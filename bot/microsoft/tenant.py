"""A tenant's Microsoft clients, and the reads that several steps (and `check`) share.

Each function takes a `Tenant` (settings + Graph client, and ARM and Partner Center when
configured) and returns plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.config import TenantSettings
from bot.microsoft.azure import Arm, ArmError
from bot.microsoft.graph import Graph
from bot.microsoft.partner import PartnerCenter
from bot.microsoft.tokens import TokenError
from statemachine.plan import Item

GLOBAL_ADMIN_ROLE = "62e90394-69f5-4237-9190-012177145e10"
ACTIVE_STATUSES = frozenset({"Enabled", "Warning"})


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


def facts(org: dict[str, Any]) -> dict[str, Any]:
    """What every plan says of the tenant it was made for."""
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


async def subscriptions(tenant: Tenant) -> list[dict[str, Any]]:
    return await tenant.graph.get_all("/directory/subscriptions")


def subscription_item(sub: dict[str, Any], tenant_id: str) -> Item:
    """A subscription as a plan item: how it was bought decides who can cancel it."""
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


def subscription_line(item: Item, verb: str) -> str:
    """The checklist line for a subscription: where a person does `verb` to it."""
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


@dataclass(frozen=True)
class AppSetup:
    """Where the bot's own app lives: registered in this tenant (single-tenant: its application
    object, which takes its service principal with it), or in another (multi-tenant, as a
    managed-service provider runs it: only its service principal is here)."""

    application: dict[str, Any] | None  # the app registration, when it is in this tenant
    service_principal: dict[str, Any] | None  # its enterprise application here
    home_tenant_id: str | None  # the tenant the app is registered in (None: unknown)

    @property
    def multi_tenant(self) -> bool:
        return self.application is None and self.service_principal is not None

    @property
    def consented(self) -> bool:
        """The app has a service principal here (admin consent creates it); without one it is
        neither setup, and no call the bot makes in this tenant can work."""
        return self.service_principal is not None


async def app_setup(tenant: Tenant) -> AppSetup:
    """The bot's own application object and service principal in this tenant."""
    own = tenant.settings.client_id
    apps = await tenant.graph.get_all(f"/applications?$filter=appId eq '{own}'")
    sps = await tenant.graph.get_all(f"/servicePrincipals?$filter=appId eq '{own}'")
    app = apps[0] if apps else None
    sp = sps[0] if sps else None
    home = tenant.tenant_id if app is not None else (sp or {}).get("appOwnerOrganizationId")
    return AppSetup(app, sp, str(home) if home else None)
