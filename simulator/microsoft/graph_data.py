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

from simulator.microsoft.azure import AzureEstate
from simulator.microsoft.partner_center import PartnerCenterBook

MICROSOFT_TENANT_ID = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
# Microsoft's corporate tenant, which owns many first-party apps; some of their enterprise
# applications cannot be deleted and block the tenant's deletion until disabled
# (MicrosoftDocs/entra-docs docs/identity/users/directory-delete-howto.md, "Remove enterprise
# apps that you can't delete": `accountEnabled: false`).
MICROSOFT_CORP_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
ROLE_IDS: dict[str, str] = {
    "Global Administrator": GLOBAL_ADMINISTRATOR,
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
}
# The README's least-privileged Application permissions (simulator/microsoft/permissions.py has
# what each call accepts), granted by default: the test suite proves this set is enough.
DEFAULT_APP_ROLES = frozenset(
    {
        "User.Read.All",
        "User.DeleteRestore.All",
        "RoleManagement.Read.Directory",
        "Organization.Read.All",
        "Organization.ReadWrite.All",
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
    """A tenant's directory; mutations keep Microsoft's invariants. Wire format is elsewhere."""

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
        app_home_tenant_id: str | None = None,
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
        self.ever_synced = sync_enabled
        self.security_defaults_enabled = True
        # Microsoft 365 admin center > Reports: conceal user, group and site names in usage
        # reports (adminReportSettings.displayConcealedNames; simulator/microsoft/reports.py).
        self.display_concealed_names = True
        # Throttling overrides, (limit, window in real seconds); None = Microsoft's, time-scaled.
        self.write_budget: tuple[int, float] | None = None
        self.read_budget: tuple[int, float] | None = None
        self.ca_interval: float | None = None  # seconds between conditional-access requests
        self.client_certificates: dict[str, bytes] = {}  # base64url thumbprint -> cert PEM
        self._clock = clock
        self._time_scale = time_scale
        self._mono0 = clock()
        self.epoch = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._offset = 0.0
        self.rng = random.Random(f"{name}:{seed}")
        self.users: dict[str, dict[str, Any]] = {}
        self.deleted_users: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, set[str]] = {}  # principal id -> role definition ids
        self.per_user_mfa: dict[str, str] = {}
        self.subscriptions: list[dict[str, Any]] = []  # companySubscription, in Graph order
        self._deprovision_at: dict[str, dt.datetime] = {}
        # Turning sync off through Graph takes effect after this much simulated time (Microsoft
        # says up to 72 h); tests shorten it. None: no request to turn it off is pending.
        self.sync_off_delay = dt.timedelta(hours=1)
        self.azure = AzureEstate()
        self.partner_center = PartnerCenterBook()
        self._sync_off_at: dt.datetime | None = None
        self.ca_policies: dict[str, dict[str, Any]] = {}
        self.applications: dict[str, dict[str, Any]] = {}
        self.service_principals: dict[str, dict[str, Any]] = {}
        self.domains: list[dict[str, Any]] = []
        # Deleted app registrations stay in the recycle bin until purged (or 30 days):
        # microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/application-delete.md,
        # listed by directory-deleteditems-list.md (microsoft.graph.application cast).
        self.deleted_applications: dict[str, dict[str, Any]] = {}
        # Deleted service principals stay in the recycle bin too, until purged (or 30 days):
        # microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/directory-deleteditems-
        # list.md (microsoft.graph.servicePrincipal cast) and directory-deleteditems-delete.md
        # (servicePrincipal can be purged). An app registration's service principal is deleted
        # and restored with it (MicrosoftDocs/entra-docs docs/identity/enterprise-apps/
        # restore-application.md), so it is listed here and purged with its application.
        self.deleted_service_principals: dict[str, dict[str, Any]] = {}
        # Service principals that answer 403 to DELETE but accept accountEnabled false.
        self.undeletable_sps: set[str] = set()
        # None: the bot's app is registered here (single-tenant). A tenant id: a multi-tenant app
        # registered in that (partner's) tenant; only its service principal lives here.
        self.app_home_tenant_id = app_home_tenant_id
        from simulator.microsoft.graph_seed import seed_tenant  # it builds on this module

        seed_tenant(
            self,
            users=users,
            guests=guests,
            custom_domains=custom_domains,
            retained_is_global_admin=retained_is_global_admin,
            app_directory_roles=app_directory_roles,
            subscriptions=subscriptions,
        )

    # -- clock ---------------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        elapsed = (self._clock() - self._mono0) * self._time_scale + self._offset
        return self.epoch + dt.timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> None:
        """Move this tenant's simulated clock on; deprovisioning and purges catch up."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._offset += seconds
        self.tick()

    def request_sync_off(self) -> None:
        """The documented organization update: sync goes off once Microsoft has processed it."""
        if self.sync_enabled and self._sync_off_at is None:
            self._sync_off_at = self.now() + self.sync_off_delay

    def tick(self) -> None:
        """Apply what time does on its own: deprovision deleted subscriptions, purge old users,
        finish turning sync off."""
        now = self.now()
        if self._sync_off_at is not None and now >= self._sync_off_at:
            self._sync_off_at = None
            self.set_sync(False)
        for sub in list(self.subscriptions):
            gone = self._deprovision_at.get(sub["id"])
            if sub["status"] == "Deleted" and gone is not None and now >= gone:
                self.subscriptions.remove(sub)
                del self._deprovision_at[sub["id"]]
        # deleted_users is in deletion order, so the expired ones are a prefix.
        expired = []
        for user_id, user in self.deleted_users.items():
            if now < dt.datetime.fromisoformat(user["deletedDateTime"]) + SOFT_DELETE_RETENTION:
                break
            expired.append(user_id)
        for user_id in expired:
            self.purge_user(user_id)
        for app_id, app in list(self.deleted_applications.items()):
            if now >= dt.datetime.fromisoformat(app["deletedDateTime"]) + SOFT_DELETE_RETENTION:
                del self.deleted_applications[app_id]
        for sp_id, sp in list(self.deleted_service_principals.items()):
            if now >= dt.datetime.fromisoformat(sp["deletedDateTime"]) + SOFT_DELETE_RETENTION:
                del self.deleted_service_principals[sp_id]

    def guid(self) -> str:
        """A GUID from the tenant's seeded generator, so a seed gives the same tenant."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def schedule_deprovision(self, sub_id: str) -> None:
        self._deprovision_at[sub_id] = self.now() + DEPROVISION_AFTER

    @property
    def initial_domain(self) -> str:
        return f"{self.name}.onmicrosoft.com"

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

    def find_subscription(self, sub_id: str) -> dict[str, Any] | None:
        return next((s for s in self.subscriptions if s["id"] == sub_id), None)

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
        for sub in self.subscriptions:
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
        """Delete an app registration: it goes to the recycle bin (deleted items) with the same
        id; Microsoft removes its service principal with it."""
        app = self.applications.pop(object_id)
        app["deletedDateTime"] = iso(self.now())
        self.deleted_applications[object_id] = app
        for sp_id, sp in list(self.service_principals.items()):
            if sp["appId"] == app["appId"]:
                self.delete_service_principal(sp_id)

    def purge_application(self, object_id: str) -> None:
        """Permanently delete an app registration from the recycle bin, with the service
        principal deleted along with it."""
        app = self.deleted_applications.pop(object_id)
        for sp_id, sp in list(self.deleted_service_principals.items()):
            if sp["appId"] == app["appId"]:
                del self.deleted_service_principals[sp_id]

    def delete_service_principal(self, object_id: str) -> None:
        """Delete an enterprise application: it goes to the recycle bin with the same id."""
        sp = self.service_principals.pop(object_id)
        self.roles.pop(object_id, None)
        sp["deletedDateTime"] = iso(self.now())
        self.deleted_service_principals[object_id] = sp

    def purge_service_principal(self, object_id: str) -> None:
        """Permanently delete a service principal from the recycle bin."""
        del self.deleted_service_principals[object_id]

    # -- admin-center actions ------------------------------------------------------------------

    def _subscription(self, sub_id: str) -> dict[str, Any]:
        self.tick()
        sub = self.find_subscription(sub_id)
        if sub is None:
            raise SimError(f"No subscription {sub_id} in tenant {self.name}.")
        return sub

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
        self.schedule_deprovision(sub_id)

    def reactivate_subscription(self, sub_id: str) -> None:
        """Billing > Your products > Reactivate: a disabled (not deleted) subscription is active
        again, as Microsoft allows while the subscription is still in its disabled period."""
        sub = self._subscription(sub_id)
        if sub["status"] in ACTIVE_STATUSES:
            raise SimError(f"Subscription {sub['skuPartNumber']} is already {sub['status']}.")
        if sub["status"] == "Deleted":
            raise SimError(
                f"Subscription {sub['skuPartNumber']} is deleted and can no longer be reactivated."
            )
        sub["status"] = "Enabled"

    def set_sync(self, enabled: bool) -> None:
        """Turn directory synchronization on or off; synced users become cloud users when off."""
        self.sync_enabled = enabled
        self.ever_synced = self.ever_synced or enabled
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
        live = [s for s in self.subscriptions if s["status"] != "Deleted"]
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
        deletable = [sp for sp in sps if sp["id"] not in self.undeletable_sps]
        if deletable:
            names = ", ".join(sp["displayName"] for sp in deletable)
            reasons.append(f"{len(deletable)} enterprise applications remain: {names}.")
        if self.deleted_applications:
            names = ", ".join(a["displayName"] for a in self.deleted_applications.values())
            reasons.append(
                f"{len(self.deleted_applications)} deleted app registrations must be permanently"
                f" deleted first: {names}."
            )
        if self.deleted_service_principals:
            # Not said in so many words by directory-delete-howto.md ("No applications are in
            # the organization"); the strictest reading, as for deleted app registrations: an
            # enterprise application in the recycle bin still blocks until purged.
            names = ", ".join(sp["displayName"] for sp in self.deleted_service_principals.values())
            reasons.append(
                f"{len(self.deleted_service_principals)} deleted enterprise applications must be"
                f" permanently deleted first: {names}."
            )
        enabled = [
            sp
            for sp_id, sp in self.service_principals.items()
            if sp_id in self.undeletable_sps and sp["accountEnabled"]
        ]
        if enabled:
            names = ", ".join(sp["displayName"] for sp in enabled)
            reasons.append(
                f"{len(enabled)} enterprise applications that cannot be deleted are still"
                f" enabled (set accountEnabled to false): {names}."
            )
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
        for sub in self.subscriptions:
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
            "subscriptions": [
                {k: sub[k] for k in ("id", "skuPartNumber", "status", "ownerTenantId", "isTrial")}
                for sub in self.subscriptions
            ],
            "subscription_counts": statuses,
            "applications": len(self.applications),
            "deleted_applications": len(self.deleted_applications),
            "deleted_service_principals": len(self.deleted_service_principals),
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
