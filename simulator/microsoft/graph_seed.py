"""The starting state of a simulated tenant: users and guests with admin roles and per-user MFA,
domains, subscriptions, conditional access policies, app registrations and service principals.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from simulator.microsoft.graph_data import (
    GLOBAL_ADMINISTRATOR,
    MICROSOFT_CORP_TENANT_ID,
    MICROSOFT_TENANT_ID,
    ROLE_IDS,
    SUBSCRIPTION_STATUSES,
    iso,
)

if TYPE_CHECKING:
    from simulator.microsoft.graph_data import SimTenant

_FIRST = "Adele Alex Bianca Chen Diego Emma Farid Grace Hiro Isla Jonas Kemi Lena Mateo Nora Omar"
_LAST = "Vance Wilber Ruiz Okafor Lindqvist Tanaka Novak Haddad Moreau Silva Kowalski Brennan"
_SKUS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "ENTERPRISEPACK": (
        "6fd2c87f-b296-42f0-b197-1e91e994b900",
        [
            ("efb87545-963c-4e0d-99df-69c6916d9eb0", "EXCHANGE_S_ENTERPRISE"),
            ("5dbe027f-2339-4123-9542-606e4d348a72", "SHAREPOINTENTERPRISE"),
            ("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1"),
        ],
    ),
    "SPB": (
        "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
        [("8a256a2b-b617-496d-b51b-e76466e88db0", "MFA_PREMIUM")],
    ),
    "EMSPREMIUM": (
        "b05e124f-c7cc-45a0-a6aa-8cf78c946968",
        [("eec0eb4f-6444-4f95-aba0-50c24d67f998", "AAD_PREMIUM_P2")],
    ),
}
_MICROSOFT_APPS = (
    ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
    ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online"),
    ("00000003-0000-0ff1-ce00-000000000000", "Office 365 SharePoint Online"),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal"),
    ("00000002-0000-0000-c000-000000000000", "Windows Azure Active Directory"),
)


def seed_domains(t: SimTenant, custom: int) -> None:
    names = [t.initial_domain] + [
        f"{t.name}.com" if i == 0 else f"{t.name}{i + 1}.com" for i in range(custom)
    ]
    for i, domain in enumerate(names):
        t.domains.append(
            {
                "id": domain,
                "authenticationType": "Managed",
                "availabilityStatus": None,
                "isAdminManaged": True,
                "isDefault": i == (1 if custom else 0),
                "isInitial": i == 0,
                "isRoot": True,
                "isVerified": True,
                "manufacturer": None,
                "model": None,
                "passwordNotificationWindowInDays": 14,
                "passwordValidityPeriodInDays": 2147483647,
                "state": None,
                "supportedServices": ["Email", "OfficeCommunicationsOnline"],
            }
        )


def _user(t: SimTenant, upn: str, display: str, *, guest: bool, synced: bool) -> dict[str, Any]:
    first, _, last = display.partition(" ")
    user_id = t.guid()
    return {
        "id": user_id,
        "userPrincipalName": upn,
        "displayName": display,
        "givenName": first,
        "surname": last or None,
        "mail": upn.split("#EXT#")[0].replace("_", "@") if guest else upn,
        "userType": "Guest" if guest else "Member",
        "accountEnabled": True,
        "onPremisesSyncEnabled": True if synced else None,
        "createdDateTime": iso(t.epoch - dt.timedelta(days=t.rng.randint(30, 900))),
        "businessPhones": [],
        "jobTitle": None if guest else t.rng.choice(["Engineer", "Analyst", "Manager"]),
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
        "usageLocation": "US",
        "assignedLicenses": [],
        "deletedDateTime": None,
    }


def seed_users(t: SimTenant, total: int, guests: int, retained_is_global_admin: bool) -> None:
    first, last = _FIRST.split(), _LAST.split()
    mail_domain = t.domains[1]["id"] if len(t.domains) > 1 else t.initial_domain
    admin = _user(t, t.retained_upn, "Retained Admin", guest=False, synced=False)
    t.users[admin["id"]] = admin
    t.roles[admin["id"]] = {
        GLOBAL_ADMINISTRATOR if retained_is_global_admin else ROLE_IDS["User Administrator"]
    }
    t.per_user_mfa[admin["id"]] = "enforced"
    others = max(total - 1, 0)
    guests = min(guests, others)
    admin_roles = [GLOBAL_ADMINISTRATOR, ROLE_IDS["User Administrator"]]
    for n in range(others):
        given, family = first[n % len(first)], last[(n // len(first)) % len(last)]
        display = f"{given} {family}"
        is_guest = n >= others - guests
        if is_guest:
            upn = f"{given.lower()}.{family.lower()}{n}_gmail.com#EXT#@{t.initial_domain}"
        else:
            upn = f"{given.lower()}.{family.lower()}{n}@{mail_domain}"
        synced = t.sync_enabled and not is_guest and n % 5 != 0
        user = _user(t, upn, display, guest=is_guest, synced=synced)
        t.users[user["id"]] = user
        if not is_guest and n < len(admin_roles):
            t.roles[user["id"]] = {admin_roles[n]}
        roll = t.rng.random()
        state = "enforced" if roll < 0.1 else "enabled" if roll < 0.2 else "disabled"
        t.per_user_mfa[user["id"]] = state
    t.users = dict(sorted(t.users.items()))


def seed_subscriptions(t: SimTenant, given: list[dict[str, Any]] | None) -> None:
    partner = t.guid()
    specs = (
        given
        if given is not None
        else [
            {"skuPartNumber": "ENTERPRISEPACK", "totalLicenses": max(len(t.users), 1)},
            {"skuPartNumber": "SPB", "totalLicenses": 10, "ownerTenantId": partner},
            {"skuPartNumber": "EMSPREMIUM", "totalLicenses": 25, "isTrial": True},
        ]
    )
    for spec in specs:
        part = str(spec.get("skuPartNumber", "ENTERPRISEPACK"))
        sku_id, plans = _SKUS.get(part, (t.guid(), []))
        trial = bool(spec.get("isTrial", False))
        owner = spec.get("ownerTenantId", t.tenant_id)
        sub: dict[str, Any] = {
            "id": t.guid(),
            "commerceSubscriptionId": t.guid(),
            "createdDateTime": iso(t.epoch - dt.timedelta(days=200)),
            "isTrial": trial,
            "nextLifecycleDateTime": iso(t.epoch + dt.timedelta(days=30 if trial else 165)),
            "ownerId": owner,
            "ownerTenantId": owner,
            "ownerType": "Company",
            "serviceStatus": [
                {
                    "servicePlanId": plan_id,
                    "servicePlanName": plan,
                    "provisioningStatus": "Success",
                    "appliesTo": "User",
                }
                for plan_id, plan in plans
            ],
            "skuId": sku_id,
            "skuPartNumber": part,
            "status": "Enabled",
            "totalLicenses": 25,
        }
        unknown = set(spec) - set(sub)
        if unknown:
            raise ValueError(f"unknown companySubscription properties: {sorted(unknown)}")
        sub.update(spec)
        if sub["status"] not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"unknown subscription status {sub['status']!r}")
        if sub["status"] == "Deleted":
            t.schedule_deprovision(sub["id"])
        t.subscriptions.append(sub)
    # The first subscription's licenses go to members, as an admin would assign them.
    if t.subscriptions:
        first_sub = t.subscriptions[0]
        members = [u for u in t.users.values() if u["userType"] == "Member"]
        for user in members[: first_sub["totalLicenses"]]:
            user["assignedLicenses"] = [{"disabledPlans": [], "skuId": first_sub["skuId"]}]


def ca_policy(
    t: SimTenant,
    display: str,
    state: str,
    controls: list[str],
    apps: list[str],
    stamp: str | None = None,
) -> str:
    """A conditional access policy as Graph returns it (seeded 60 days ago unless `stamp`);
    its ID."""
    stamp = stamp or iso(t.epoch - dt.timedelta(days=60))
    policy_id = t.guid()
    t.ca_policies[policy_id] = {
        "id": policy_id,
        "templateId": None,
        "displayName": display,
        "description": None,
        "createdDateTime": stamp,
        "modifiedDateTime": stamp,
        "state": state,
        "sessionControls": None,
        "conditions": {
            "userRiskLevels": [],
            "signInRiskLevels": [],
            "clientAppTypes": apps,
            "platforms": None,
            "locations": None,
            "devices": None,
            "clientApplications": None,
            "applications": {
                "includeApplications": ["All"],
                "excludeApplications": [],
                "includeUserActions": [],
            },
            "users": {
                "includeUsers": ["All"],
                "excludeUsers": [],
                "includeGroups": [],
                "excludeGroups": [],
                "includeRoles": [],
                "excludeRoles": [],
            },
        },
        "grantControls": {
            "operator": "OR",
            "builtInControls": controls,
            "customAuthenticationFactors": [],
            "termsOfUse": [],
            "authenticationStrength": None,
        },
    }
    return policy_id


def seed_policies(t: SimTenant) -> None:
    ca_policy(t, "Require MFA for administrators", "enabled", ["mfa"], ["all"])
    ca_policy(t, "Require MFA for all users", "enabledForReportingButNotEnforced", ["mfa"], ["all"])
    ca_policy(t, "Require MFA for guests (retired)", "disabled", ["mfa"], ["all"])
    ca_policy(
        t, "Block legacy authentication", "enabled", ["block"], ["exchangeActiveSync", "other"]
    )


def add_app(t: SimTenant, display: str, app_id: str | None = None) -> dict[str, Any]:
    object_id, app_id = t.guid(), app_id or t.guid()
    app: dict[str, Any] = {
        "id": object_id,
        "appId": app_id,
        "displayName": display,
        "createdDateTime": iso(t.epoch - dt.timedelta(days=100)),
        "deletedDateTime": None,
        "description": None,
        "identifierUris": [],
        "keyCredentials": [],
        "passwordCredentials": [],
        "publisherDomain": t.initial_domain,
        "requiredResourceAccess": [],
        "signInAudience": "AzureADMyOrg",
        "tags": [],
    }
    t.applications[object_id] = app
    _add_sp(t, app_id, display, t.tenant_id)
    return app


def _add_sp(t: SimTenant, app_id: str, display: str, owner: str) -> dict[str, Any]:
    object_id = t.guid()
    sp: dict[str, Any] = {
        "id": object_id,
        "appId": app_id,
        "displayName": display,
        "appDisplayName": display,
        "appOwnerOrganizationId": owner,
        "accountEnabled": True,
        "appRoleAssignmentRequired": False,
        "deletedDateTime": None,
        "servicePrincipalNames": [app_id],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMyOrg" if owner == t.tenant_id else "AzureADMultipleOrgs",
        "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
    }
    t.service_principals[object_id] = sp
    return sp


def seed_apps(t: SimTenant, directory_roles: frozenset[str]) -> None:
    if t.app_home_tenant_id is not None:
        # Multi-tenant: registered in the partner's tenant, consented here (admin consent
        # creates the service principal; microsoftgraph/microsoft-graph-docs-contrib
        # api-reference/v1.0/resources/serviceprincipal.md, appOwnerOrganizationId: "the tenant
        # ID where the application is registered").
        _add_sp(t, t.client_id, "close-account-bot", t.app_home_tenant_id)
    else:
        _seed_bot_application(t)
    sp = t.bot_service_principal
    assert sp is not None
    t.roles[sp["id"]] = {ROLE_IDS[role] for role in directory_roles}
    add_app(t, "HR Portal")
    add_app(t, "Expense Reports")
    _add_sp(t, t.guid(), "Contoso Analytics (third party)", t.guid())
    for app_id, display in _MICROSOFT_APPS:
        _add_sp(t, app_id, display, MICROSOFT_TENANT_ID)
    # An enterprise application that answers 403 to DELETE and blocks the tenant's deletion
    # until disabled (MicrosoftDocs/entra-docs docs/identity/users/directory-delete-howto.md,
    # "Remove enterprise apps that you can't delete").
    blocking = _add_sp(t, t.guid(), "Microsoft Power BI Premium", MICROSOFT_CORP_TENANT_ID)
    t.undeletable_sps.add(blocking["id"])


def _seed_bot_application(t: SimTenant) -> None:
    bot = add_app(t, "close-account-bot", t.client_id)
    bot["passwordCredentials"] = [
        {
            "displayName": "close-account-bot secret",
            "keyId": t.guid(),
            "hint": t.client_secret[:3],
            "customKeyIdentifier": None,
            "secretText": None,
            "startDateTime": iso(t.epoch - dt.timedelta(days=1)),
            "endDateTime": iso(t.epoch + dt.timedelta(days=365)),
        }
    ]


def seed_tenant(
    t: SimTenant,
    *,
    users: int,
    guests: int,
    custom_domains: int,
    retained_is_global_admin: bool,
    app_directory_roles: frozenset[str],
    subscriptions: list[dict[str, Any]] | None,
) -> None:
    """Fill a new tenant; the same name and seed give the same ids."""
    seed_domains(t, custom_domains)
    seed_users(t, users, guests, retained_is_global_admin)
    seed_subscriptions(t, subscriptions)
    seed_policies(t)
    seed_apps(t, app_directory_roles)
