"""The Graph calls each step makes and the Application permissions that allow each, as the
call's api-reference page says: what `check` compares the app's token with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """One Graph call the bot makes and the Application permissions that allow it, as its
    api-reference page's Permissions table says (least privileged first; "A + B": both).
    The simulator's table (simulator/microsoft/permissions.py) cites each page; a test keeps
    the two, and the README's permission table, equal."""

    step: str
    call: str
    method: str
    path: str  # relative to {graph_url}/{version}; {id} for an object's id
    accepted: tuple[str, ...]
    version: str = "v1.0"
    optional: bool = False  # only for an operator's command (disable-sync), not a step

    @property
    def least(self) -> str:
        return self.accepted[0]

    def allows(self, roles: set[str]) -> bool:
        return any(set(alt.split(" + ")) <= roles for alt in self.accepted)


_USER_READ = (
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
# Least privileged to delete, purge and restore users; it does not list users.
_DELETE_RESTORE = ("User.DeleteRestore.All", "User.ReadWrite.All")
_ORG_READ = (
    "Organization.Read.All",
    "Directory.Read.All",
    "Organization.ReadWrite.All",
    "Directory.ReadWrite.All",
)
_APP_READ = ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All")
_CA_WRITE = (
    "Policy.Read.All + Policy.ReadWrite.ConditionalAccess + Application.Read.All",
    "Policy.Read.All + Policy.ReadWrite.ConditionalAccess + Application.ReadWrite.All",
)
_STEP1, _STEP2, _STEP4, _STEP5 = (
    "1 delete users",
    "2, 3 subscriptions",
    "4 disable MFA",
    "5 delete directory",
)
# Every Graph call of steps.md, by step (check's own reads are among them).
REQUIRED_ROLES: tuple[Need, ...] = (
    Need(_STEP1, "list users", "GET", "users", _USER_READ),
    Need(
        _STEP1,
        "read role assignments",
        "GET",
        "roleManagement/directory/roleAssignments",
        (
            "RoleManagement.Read.Directory",
            "RoleManagement.Read.All",
            "Directory.Read.All",
            "RoleManagement.ReadWrite.Directory",
            "Directory.ReadWrite.All",
        ),
    ),
    Need(_STEP1, "read the organization", "GET", "organization", _ORG_READ),
    Need(_STEP1, "delete users", "DELETE", "users/{id}", _DELETE_RESTORE),
    Need(
        "disable-sync",
        "turn directory sync off",
        "PATCH",
        "organization/{id}",
        ("Organization.ReadWrite.All",),
        optional=True,
    ),
    Need(
        _STEP2,
        "list subscriptions",
        "GET",
        "directory/subscriptions",
        ("Organization.Read.All", "Directory.Read.All", "Organization.ReadWrite.All"),
    ),
    Need(_STEP2, "list subscribed SKUs", "GET", "subscribedSkus", _ORG_READ),
    Need(
        _STEP4,
        "read security defaults",
        "GET",
        "policies/identitySecurityDefaultsEnforcementPolicy",
        ("Policy.Read.All", "Policy.ReadWrite.SecurityDefaults"),
    ),
    Need(
        _STEP4,
        "turn security defaults off",
        "PATCH",
        "policies/identitySecurityDefaultsEnforcementPolicy",
        (
            "Policy.ReadWrite.SecurityDefaults",
            "Policy.Read.All + Policy.ReadWrite.ConditionalAccess",
        ),
    ),
    Need(
        _STEP4,
        "list conditional access policies",
        "GET",
        "identity/conditionalAccess/policies",
        ("Policy.Read.All",),
    ),
    Need(
        _STEP4,
        "disable conditional access policies",
        "PATCH",
        "identity/conditionalAccess/policies/{id}",
        _CA_WRITE,
    ),
    Need(
        _STEP4,
        "read per-user MFA",
        "GET",
        "users/{id}/authentication/requirements",
        ("Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"),
        version="beta",
    ),
    Need(
        _STEP4,
        "turn per-user MFA off",
        "PATCH",
        "users/{id}/authentication/requirements",
        ("Policy.ReadWrite.AuthenticationMethod",),
        version="beta",
    ),
    Need(
        _STEP5,
        "list deleted users",
        "GET",
        "directory/deletedItems/microsoft.graph.user",
        ("User.Read.All", "User.DeleteRestore.All", *_USER_READ[1:]),
    ),
    Need(
        _STEP5,
        "list deleted applications",
        "GET",
        "directory/deletedItems/microsoft.graph.application",
        _APP_READ,
    ),
    Need(
        _STEP5,
        "list deleted service principals",
        "GET",
        "directory/deletedItems/microsoft.graph.servicePrincipal",
        _APP_READ,
    ),
    Need(
        _STEP5,
        "purge deleted users, applications and service principals",
        "DELETE",
        "directory/deletedItems/{id}",
        tuple(f"{user} + Application.ReadWrite.All" for user in _DELETE_RESTORE),
    ),
    Need(_STEP5, "list applications", "GET", "applications", _APP_READ),
    Need(_STEP5, "list service principals", "GET", "servicePrincipals", _APP_READ),
    Need(
        _STEP5, "delete applications", "DELETE", "applications/{id}", ("Application.ReadWrite.All",)
    ),
    Need(
        _STEP5,
        "delete service principals",
        "DELETE",
        "servicePrincipals/{id}",
        ("Application.ReadWrite.All",),
    ),
    Need(
        _STEP5,
        "disable service principals that cannot be deleted",
        "PATCH",
        "servicePrincipals/{id}",
        ("Application.ReadWrite.All", "Directory.ReadWrite.All"),
    ),
    Need(
        _STEP5,
        "list domains",
        "GET",
        "domains",
        (
            "Domain.Read.All",
            "Domain.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ),
    ),
    Need(
        "rollback",
        "restore deleted users",
        "POST",
        "directory/deletedItems/{id}/restore",
        _DELETE_RESTORE,
    ),
)
# Optional calls: they only add information (step 1's data-loss figures, shown in its approval
# request); without the permission the request says the size is unknown and why, and `check`
# says "not granted" without failing. Microsoft's pages (v1.0/api/reportroot-*.md, Permissions:
# Application | Reports.Read.All, none higher); the simulator's table cites them too.
OPTIONAL_ROLES: tuple[Need, ...] = tuple(
    Need(
        "1 data-loss figures (optional)",
        f"read the {what} usage report",
        "GET",
        f"reports/{function}",
        ("Reports.Read.All",),
        optional=True,
    )
    for what, function in (
        ("mailbox", "getMailboxUsageDetail"),
        ("OneDrive", "getOneDriveUsageAccountDetail"),
        ("SharePoint", "getSharePointSiteUsageDetail"),
    )
)
