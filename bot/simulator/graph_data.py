"""One simulated Microsoft 365 tenant: its directory objects as Graph shapes them, the admin-center
actions a person takes, and the rules Microsoft enforces on them (soft delete, deprovisioning,
the directory-deletion preconditions). No HTTP here.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import uuid
from collections.abc import Callable
from typing import Any

MICROSOFT_TENANT_ID = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
ROLE_IDS: dict[str, str] = {
    "Global Administrator": GLOBAL_ADMINISTRATOR,
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
}
# Application permissions every step needs (steps.md), granted by default.
DEFAULT_APP_ROLES = frozenset(
    {
        "User.ReadWrite.All",
        "User.DeleteRestore.All",
        "RoleManagement.Read.Directory",
        "Organization.Read.All",
        "Policy.Read.All",
        "Policy.ReadWrite.SecurityDefaults",
        "Policy.ReadWrite.ConditionalAccess",
        "Policy.ReadWrite.AuthenticationMethod",
        "Application.ReadWrite.All",
        "Domain.Read.All",
    }
)
ACTIVE_STATUSES = frozenset({"Enabled", "Warning"})
SUBSCRIPTION_STATUSES = ("Enabled", "Warning", "Suspended", "LockedOut", "Deleted")
DEPROVISION_AFTER = dt.timedelta(hours=72)
SOFT_DELETE_RETENTION = dt.timedelta(days=30)

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


class SimError(Exception):
    """An admin-center action Microsoft refuses; `reasons` lists every failed check."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons or [message]


def iso(moment: dt.datetime) -> str:
    """Graph's timestamp format: UTC with a Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimTenant:
    """A tenant's directory. Mutations keep Microsoft's invariants; Graph wire format is elsewhere."""

    def __init__(
        self,
        *,
        name: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        retained_upn: str,
        display_name: str,
        users: int,
        guests: int,
        seed: int,
        custom_domains: int,
        sync_enabled: bool,
        retained_is_global_admin: bool,
        app_roles: frozenset[str],
        app_directory_roles: frozenset[str],
        subscriptions: list[dict[str, Any]] | None,
        clock: Callable[[], float],
        time_scale: float,
    ) -> None:
        self.name = name
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.retained_upn = retained_upn
        self.display_name = display_name
        self.app_roles = app_roles
        self.deleted = False
        self.sync_enabled = sync_enabled
        self.security_defaults_enabled = True
        # Throttling overrides, (limit, window in real seconds); None = Microsoft's, time-scaled.
        self.write_budget: tuple[int, float] | None = None
        self.read_budget: tuple[int, float] | None = None
        self.ca_interval: float | None = None  # seconds between conditional-access requests
        self.client_certificates: dict[str, bytes] = {}  # base64url thumbprint -> cert PEM
        self._clock = clock
        self._time_scale = time_scale
        self._mono0 = clock()
        self._epoch = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._offset = 0.0
        self._rng = random.Random(f"{name}:{seed}")
        self.users: dict[str, dict[str, Any]] = {}
        self.deleted_users: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, set[str]] = {}  # principal id -> role definition ids
        self.per_user_mfa: dict[str, str] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self._deprovision_at: dict[str, dt.datetime] = {}
        self.ca_policies: dict[str, dict[str, Any]] = {}
        self.applications: dict[str, dict[str, Any]] = {}
        self.service_principals: dict[str, dict[str, Any]] = {}
        self.domains: list[dict[str, Any]] = []
        self._seed_domains(custom_domains)
        self._seed_users(users, guests, retained_is_global_admin)
        self._seed_subscriptions(subscriptions)
        self._seed_policies()
        self._seed_apps(app_directory_roles)

    # -- clock ---------------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        elapsed = (self._clock() - self._mono0) * self._time_scale + self._offset
        return self._epoch + dt.timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> None:
        """Move this tenant's simulated clock on; deprovisioning and purges catch up."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._offset += seconds
        self.tick()

    def tick(self) -> None:
        """Apply what time does on its own: deprovision deleted subscriptions, purge old users."""
        now = self.now()
        for sub_id, sub in list(self.subscriptions.items()):
            gone = self._deprovision_at.get(sub_id)
            if sub["status"] == "Deleted" and gone is not None and now >= gone:
                del self.subscriptions[sub_id]
                del self._deprovision_at[sub_id]
        for user_id, user in list(self.deleted_users.items()):
            if now >= dt.datetime.fromisoformat(user["deletedDateTime"]) + SOFT_DELETE_RETENTION:
                self.purge_user(user_id)

    def _guid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # -- seeding -------------------------------------------------------------------------------

    @property
    def initial_domain(self) -> str:
        return f"{self.name}.onmicrosoft.com"

    def _seed_domains(self, custom: int) -> None:
        names = [self.initial_domain] + [
            f"{self.name}.com" if i == 0 else f"{self.name}{i + 1}.com" for i in range(custom)
        ]
        for i, domain in enumerate(names):
            self.domains.append(
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

    def _user(self, upn: str, display: str, *, guest: bool, synced: bool) -> dict[str, Any]:
        first, _, last = display.partition(" ")
        user_id = self._guid()
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
            "createdDateTime": iso(self._epoch - dt.timedelta(days=self._rng.randint(30, 900))),
            "businessPhones": [],
            "jobTitle": None if guest else self._rng.choice(["Engineer", "Analyst", "Manager"]),
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "usageLocation": "US",
            "assignedLicenses": [],
            "deletedDateTime": None,
        }

    def _seed_users(self, total: int, guests: int, retained_is_global_admin: bool) -> None:
        first, last = _FIRST.split(), _LAST.split()
        mail_domain = self.domains[1]["id"] if len(self.domains) > 1 else self.initial_domain
        admin = self._user(self.retained_upn, "Retained Admin", guest=False, synced=False)
        self.users[admin["id"]] = admin
        self.roles[admin["id"]] = {
            GLOBAL_ADMINISTRATOR if retained_is_global_admin else ROLE_IDS["User Administrator"]
        }
        self.per_user_mfa[admin["id"]] = "enforced"
        others = max(total - 1, 0)
        guests = min(guests, others)
        admin_roles = [GLOBAL_ADMINISTRATOR, ROLE_IDS["User Administrator"]]
        for n in range(others):
            given, family = first[n % len(first)], last[(n // len(first)) % len(last)]
            display = f"{given} {family}"
            is_guest = n >= others - guests
            if is_guest:
                upn = f"{given.lower()}.{family.lower()}{n}_gmail.com#EXT#@{self.initial_domain}"
            else:
                upn = f"{given.lower()}.{family.lower()}{n}@{mail_domain}"
            synced = self.sync_enabled and not is_guest and n % 5 != 0
            user = self._user(upn, display, guest=is_guest, synced=synced)
            self.users[user["id"]] = user
            if not is_guest and n < len(admin_roles):
                self.roles[user["id"]] = {admin_roles[n]}
            roll = self._rng.random()
            state = "enforced" if roll < 0.1 else "enabled" if roll < 0.2 else "disabled"
            self.per_user_mfa[user["id"]] = state
        self.users = dict(sorted(self.users.items()))

    def _seed_subscriptions(self, given: list[dict[str, Any]] | None) -> None:
        partner = self._guid()
        specs = (
            given
            if given is not None
            else [
                {"skuPartNumber": "ENTERPRISEPACK", "totalLicenses": max(len(self.users), 1)},
                {"skuPartNumber": "SPB", "totalLicenses": 10, "ownerTenantId": partner},
                {"skuPartNumber": "EMSPREMIUM", "totalLicenses": 25, "isTrial": True},
            ]
        )
        for spec in specs:
            part = spec.get("skuPartNumber", "ENTERPRISEPACK")
            sku_id, plans = _SKUS.get(part, (self._guid(), []))
            trial = bool(spec.get("isTrial", False))
            owner = spec.get("ownerTenantId", self.tenant_id)
            sub: dict[str, Any] = {
                "id": self._guid(),
                "commerceSubscriptionId": self._guid(),
                "createdDateTime": iso(self._epoch - dt.timedelta(days=200)),
                "isTrial": trial,
                "nextLifecycleDateTime": iso(self._epoch + dt.timedelta(days=30 if trial else 165)),
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
                self._deprovision_at[sub["id"]] = self.now() + DEPROVISION_AFTER
            self.subscriptions[sub["id"]] = sub
        # The first subscription's licenses go to members, as an admin would assign them.
        if self.subscriptions:
            first_sub = next(iter(self.subscriptions.values()))
            members = [u for u in self.users.values() if u["userType"] == "Member"]
            for user in members[: first_sub["totalLicenses"]]:
                user["assignedLicenses"] = [{"disabledPlans": [], "skuId": first_sub["skuId"]}]

    def _ca_policy(self, display: str, state: str, controls: list[str], apps: list[str]) -> None:
        stamp = iso(self._epoch - dt.timedelta(days=60))
        policy_id = self._guid()
        self.ca_policies[policy_id] = {
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

    def _seed_policies(self) -> None:
        self._ca_policy("Require MFA for administrators", "enabled", ["mfa"], ["all"])
        self._ca_policy(
            "Require MFA for all users", "enabledForReportingButNotEnforced", ["mfa"], ["all"]
        )
        self._ca_policy("Require MFA for guests (retired)", "disabled", ["mfa"], ["all"])
        self._ca_policy(
            "Block legacy authentication", "enabled", ["block"], ["exchangeActiveSync", "other"]
        )

    def _add_app(self, display: str, app_id: str | None = None) -> dict[str, Any]:
        app = {
            "id": self._guid(),
            "appId": app_id or self._guid(),
            "displayName": display,
            "createdDateTime": iso(self._epoch - dt.timedelta(days=100)),
            "deletedDateTime": None,
            "description": None,
            "identifierUris": [],
            "keyCredentials": [],
            "passwordCredentials": [],
            "publisherDomain": self.initial_domain,
            "requiredResourceAccess": [],
            "signInAudience": "AzureADMyOrg",
            "tags": [],
        }
        self.applications[app["id"]] = app
        self._add_sp(app["appId"], display, self.tenant_id)
        return app

    def _add_sp(self, app_id: str, display: str, owner: str) -> dict[str, Any]:
        sp = {
            "id": self._guid(),
            "appId": app_id,
            "displayName": display,
            "appDisplayName": display,
            "appOwnerOrganizationId": owner,
            "accountEnabled": True,
            "appRoleAssignmentRequired": False,
            "deletedDateTime": None,
            "servicePrincipalNames": [app_id],
            "servicePrincipalType": "Application",
            "signInAudience": "AzureADMyOrg" if owner == self.tenant_id else "AzureADMultipleOrgs",
            "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
        }
        self.service_principals[sp["id"]] = sp
        return sp

    def _seed_apps(self, directory_roles: frozenset[str]) -> None:
        bot = self._add_app("close-account-bot", self.client_id)
        bot["passwordCredentials"] = [
            {
                "displayName": "close-account-bot secret",
                "keyId": self._guid(),
                "hint": self.client_secret[:3],
                "customKeyIdentifier": None,
                "secretText": None,
                "startDateTime": iso(self._epoch - dt.timedelta(days=1)),
                "endDateTime": iso(self._epoch + dt.timedelta(days=365)),
            }
        ]
        sp = self.bot_service_principal
        assert sp is not None
        self.roles[sp["id"]] = {ROLE_IDS[role] for role in directory_roles}
        self._add_app("HR Portal")
        self._add_app("Expense Reports")
        self._add_sp(self._guid(), "Contoso Analytics (third party)", self._guid())
        for app_id, display in _MICROSOFT_APPS:
            self._add_sp(app_id, display, MICROSOFT_TENANT_ID)

    # -- lookups -------------------------------------------------------------------------------

    @property
    def retained_user(self) -> dict[str, Any] | None:
        return self.find_user(self.retained_upn)

    def find_user(self, key: str) -> dict[str, Any] | None:
        """An active user by id or userPrincipalName (case-insensitive), as Graph resolves them."""
        if key in self.users:
            return self.users[key]
        lowered = key.lower()
        for user in self.users.values():
            if user["userPrincipalName"].lower() == lowered:
                return user
        return None

    @property
    def bot_application(self) -> dict[str, Any] | None:
        return next((a for a in self.applications.values() if a["appId"] == self.client_id), None)

    @property
    def bot_service_principal(self) -> dict[str, Any] | None:
        sps = self.service_principals.values()
        return next((sp for sp in sps if sp["appId"] == self.client_id), None)

    @property
    def skus(self) -> list[dict[str, Any]]:
        """subscribedSkus, derived from the subscriptions Microsoft still provisions."""
        order = {status: i for i, status in enumerate(SUBSCRIPTION_STATUSES)}
        by_sku: dict[str, list[dict[str, Any]]] = {}
        for sub in self.subscriptions.values():
            by_sku.setdefault(sub["skuId"], []).append(sub)
        result = []
        for sku_id, subs in by_sku.items():
            units = {s: 0 for s in SUBSCRIPTION_STATUSES}
            for sub in subs:
                units[sub["status"]] += sub["totalLicenses"]
            consumed = sum(
                any(lic["skuId"] == sku_id for lic in user["assignedLicenses"])
                for user in self.users.values()
            )
            result.append(
                {
                    "id": f"{self.tenant_id}_{sku_id}",
                    "accountId": self.tenant_id,
                    "accountName": self.name,
                    "appliesTo": "User",
                    "capabilityStatus": min((s["status"] for s in subs), key=order.__getitem__),
                    "consumedUnits": consumed,
                    "prepaidUnits": {
                        "enabled": units["Enabled"],
                        "warning": units["Warning"],
                        "suspended": units["Suspended"],
                        "lockedOut": units["LockedOut"],
                    },
                    "servicePlans": subs[0]["serviceStatus"],
                    "skuId": sku_id,
                    "skuPartNumber": subs[0]["skuPartNumber"],
                    "subscriptionIds": [s["id"] for s in subs],
                }
            )
        return result

    def role_assignments(self) -> list[dict[str, Any]]:
        """Active unifiedRoleAssignments at directory scope (soft-deleted principals hold none)."""
        result = []
        for principal_id, role_ids in sorted(self.roles.items()):
            if principal_id not in self.users and principal_id not in self.service_principals:
                continue
            for role_id in sorted(role_ids):
                raw = uuid.UUID(role_id).bytes + uuid.UUID(principal_id).bytes
                result.append(
                    {
                        "id": base64.urlsafe_b64encode(raw).decode().rstrip("=") + "-1",
                        "principalId": principal_id,
                        "roleDefinitionId": role_id,
                        "directoryScopeId": "/",
                        "appScopeId": None,
                        "condition": None,
                        "principalOrganizationId": self.tenant_id,
                    }
                )
        return result

    # -- directory mutations (Graph's side) ----------------------------------------------------

    def soft_delete_user(self, user_id: str) -> None:
        user = self.users.pop(user_id)
        user["deletedDateTime"] = iso(self.now())
        # Microsoft prefixes a deleted user's UPN with its object id (no dashes) to free the name.
        user["userPrincipalName"] = user_id.replace("-", "") + user["userPrincipalName"]
        self.deleted_users[user_id] = user

    def purge_user(self, user_id: str) -> None:
        del self.deleted_users[user_id]
        self.roles.pop(user_id, None)
        self.per_user_mfa.pop(user_id, None)

    def restore_user(self, user_id: str) -> dict[str, Any]:
        user = self.deleted_users.pop(user_id)
        user["deletedDateTime"] = None
        user["userPrincipalName"] = user["userPrincipalName"][len(user_id.replace("-", "")) :]
        self.users[user_id] = user
        self.users = dict(sorted(self.users.items()))
        return user

    def delete_application(self, object_id: str) -> None:
        """Delete an app registration; Microsoft removes its service principal with it."""
        app = self.applications.pop(object_id)
        for sp_id, sp in list(self.service_principals.items()):
            if sp["appId"] == app["appId"]:
                self.delete_service_principal(sp_id)

    def delete_service_principal(self, object_id: str) -> None:
        del self.service_principals[object_id]
        self.roles.pop(object_id, None)

    # -- admin-center actions ------------------------------------------------------------------

    def _subscription(self, sub_id: str) -> dict[str, Any]:
        self.tick()
        try:
            return self.subscriptions[sub_id]
        except KeyError:
            raise SimError(f"No subscription {sub_id} in tenant {self.name}.") from None

    def cancel_subscription(self, sub_id: str) -> None:
        """Billing > Your products > Cancel: an active subscription becomes disabled."""
        sub = self._subscription(sub_id)
        if sub["status"] not in ACTIVE_STATUSES:
            raise SimError(f"Subscription {sub['skuPartNumber']} is {sub['status']}, not active.")
        sub["status"] = "Suspended"

    def delete_subscription(self, sub_id: str) -> None:
        """Billing > Your products > Delete: only a disabled subscription; gone ~72 h later."""
        sub = self._subscription(sub_id)
        if sub["status"] in ACTIVE_STATUSES:
            raise SimError(
                f"Subscription {sub['skuPartNumber']} is {sub['status']}: cancel it first."
            )
        if sub["status"] == "Deleted":
            raise SimError(f"Subscription {sub['skuPartNumber']} is already deleted.")
        sub["status"] = "Deleted"
        self._deprovision_at[sub_id] = self.now() + DEPROVISION_AFTER

    def set_sync(self, enabled: bool) -> None:
        """Turn directory synchronization on or off; synced users become cloud users when off."""
        self.sync_enabled = enabled
        if not enabled:
            for user in [*self.users.values(), *self.deleted_users.values()]:
                if user["onPremisesSyncEnabled"]:
                    user["onPremisesSyncEnabled"] = False

    def deletion_blockers(self) -> list[str]:
        """What Entra's Delete tenant check would list, empty when the tenant can go."""
        self.tick()
        reasons = []
        retained = self.retained_user
        if retained is None:
            reasons.append(f"The retained account {self.retained_upn} does not exist.")
        elif GLOBAL_ADMINISTRATOR not in self.roles.get(retained["id"], set()):
            reasons.append(f"{self.retained_upn} holds no active Global Administrator role.")
        others = [u for u in self.users.values() if u is not retained]
        if others:
            reasons.append(f"{len(others)} users other than {self.retained_upn} still exist.")
        if self.deleted_users:
            reasons.append(
                f"{len(self.deleted_users)} deleted users must be permanently deleted first."
            )
        live = [s for s in self.subscriptions.values() if s["status"] != "Deleted"]
        if live:
            names = ", ".join(f"{s['skuPartNumber']} ({s['status']})" for s in live)
            reasons.append(f"{len(live)} subscriptions are not deleted: {names}.")
        if self.applications:
            names = ", ".join(a["displayName"] for a in self.applications.values())
            reasons.append(f"{len(self.applications)} app registrations remain: {names}.")
        sps = [
            sp
            for sp in self.service_principals.values()
            if sp["appOwnerOrganizationId"] != MICROSOFT_TENANT_ID
        ]
        if sps:
            names = ", ".join(sp["displayName"] for sp in sps)
            reasons.append(f"{len(sps)} enterprise applications remain: {names}.")
        return reasons

    def delete_tenant(self) -> None:
        """Entra admin center > Manage tenants > Delete."""
        if self.deleted:
            raise SimError(f"Tenant {self.name} is already deleted.")
        reasons = self.deletion_blockers()
        if reasons:
            raise SimError(f"Tenant {self.name} cannot be deleted.", reasons)
        self.deleted = True

    def summary(self) -> dict[str, Any]:
        """Counts a scripted admin or a test checks."""
        self.tick()
        statuses = {s: 0 for s in SUBSCRIPTION_STATUSES}
        for sub in self.subscriptions.values():
            statuses[sub["status"]] += 1
        microsoft_sps = sum(
            sp["appOwnerOrganizationId"] == MICROSOFT_TENANT_ID
            for sp in self.service_principals.values()
        )
        return {
            "tenant_id": self.tenant_id,
            "name": self.name,
            "display_name": self.display_name,
            "deleted": self.deleted,
            "now": iso(self.now()),
            "users": len(self.users),
            "guests": sum(u["userType"] == "Guest" for u in self.users.values()),
            "deleted_users": len(self.deleted_users),
            "subscriptions": {"total": len(self.subscriptions), **statuses},
            "applications": len(self.applications),
            "service_principals": len(self.service_principals),
            "microsoft_service_principals": microsoft_sps,
            "security_defaults_enabled": self.security_defaults_enabled,
            "ca_policies_not_disabled": sum(
                p["state"] != "disabled" for p in self.ca_policies.values()
            ),
            "per_user_mfa_on": sum(
                self.per_user_mfa.get(u, "disabled") != "disabled" for u in self.users
            ),
            "sync_enabled": self.sync_enabled,
            "domains": [d["id"] for d in self.domains],
            "deletion_blockers": [] if self.deleted else self.deletion_blockers(),
        }
