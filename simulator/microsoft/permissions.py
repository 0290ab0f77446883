"""Which application permissions allow each Graph call the simulator serves: the "Application"
row of each call's Permissions table in microsoftgraph/microsoft-graph-docs-contrib, consulted
for every Graph request (in a $batch too) before its handler runs; 403 Authorization_RequestDenied
otherwise, with the body Graph's docs show.

An entry's `accepted` lists alternatives, least privileged first; an alternative is one
permission or several joined by " + " (all needed). Directory roles a page also requires (the
Privileged Authentication Administrator role to delete an administrator) stay in the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.microsoft.graph_odata import Caller, GraphRequest, forbidden

_V1, _BETA = frozenset({"v1.0", "beta"}), frozenset({"beta"})
_DOCS = "microsoftgraph/microsoft-graph-docs-contrib api-reference/"


@dataclass(frozen=True)
class Permission:
    method: str
    path: str  # graph_api's template: literal segments and {id}
    accepted: tuple[str, ...]  # least privileged first; "A + B" means both
    doc: str
    versions: frozenset[str] = _V1
    # Documented, but reaching only objects the app owns (Application.ReadWrite.OwnedBy): the
    # bot acts on applications it does not own, so these grant nothing here.
    owned_only: tuple[str, ...] = ()

    @property
    def least(self) -> str:
        return self.accepted[0]

    def allows(self, roles: frozenset[str]) -> bool:
        return any(set(alt.split(" + ")) <= roles for alt in self.accepted)


_USER_READ = (
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
# User.DeleteRestore.All: "Least privileged permission to delete a user, restore a deleted user
# from the recycle bin, or permanently delete a deleted user from the recycle bin. Also allows
# retrieving deleted users via the /directory/deleteditems/microsoft.graph.user endpoint."
# (microsoftgraph/microsoft-graph-docs-contrib concepts/whats-new-overview.md, December 2024,
# Users). It does not list users: user-list.md's Application row does not name it.
_USER_DELETE_RESTORE = ("User.DeleteRestore.All", "User.ReadWrite.All")
_DELETED_USERS_READ = ("User.Read.All", "User.DeleteRestore.All", *_USER_READ[1:])
_ORG_READ = (
    "Organization.Read.All",
    "Directory.Read.All",
    "Organization.ReadWrite.All",
    "Directory.ReadWrite.All",
)
_APP_READ = ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All")
_DOMAIN_READ = (
    "Domain.Read.All",
    "Domain.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)

TABLE: tuple[Permission, ...] = (
    # v1.0/api/user-list.md: Application | User.Read.All, User.ReadWrite.All, Directory.Read.All,
    # Directory.ReadWrite.All
    Permission("GET", "users", _USER_READ, _DOCS + "v1.0/api/user-list.md", _V1),
    # v1.0/api/user-get.md (same Application row as listing)
    Permission("GET", "users/{id}", _USER_READ, _DOCS + "v1.0/api/user-get.md", _V1),
    # v1.0/includes/permissions/user-delete-permissions.md: Application | User.ReadWrite.All;
    # whats-new-overview.md (Dec 2024): User.DeleteRestore.All is the least privileged.
    # Not Directory.ReadWrite.All. The admin-role rule is in graph_directory.delete_user.
    Permission("DELETE", "users/{id}", _USER_DELETE_RESTORE, _DOCS + "v1.0/api/user-delete.md"),
    # v1.0/api/rbacapplication-list-roleassignments.md, "For the directory (Microsoft Entra ID)
    # provider": RoleManagement.Read.Directory, RoleManagement.Read.All, Directory.Read.All,
    # RoleManagement.ReadWrite.Directory, Directory.ReadWrite.All
    Permission(
        "GET",
        "roleManagement/directory/roleAssignments",
        (
            "RoleManagement.Read.Directory",
            "RoleManagement.Read.All",
            "Directory.Read.All",
            "RoleManagement.ReadWrite.Directory",
            "Directory.ReadWrite.All",
        ),
        _DOCS + "v1.0/api/rbacapplication-list-roleassignments.md",
    ),
    # v1.0/includes/permissions/organization-get-permissions.md: Application |
    # Organization.Read.All | Directory.Read.All, Organization.ReadWrite.All,
    # Directory.ReadWrite.All
    Permission("GET", "organization", _ORG_READ, _DOCS + "v1.0/api/organization-get.md"),
    Permission("GET", "organization/{id}", _ORG_READ, _DOCS + "v1.0/api/organization-get.md"),
    # v1.0/api/organization-update.md: Application | Organization.ReadWrite.All
    Permission(
        "PATCH",
        "organization/{id}",
        ("Organization.ReadWrite.All",),
        _DOCS + "v1.0/api/organization-update.md",
        _V1,
    ),
    # v1.0/includes/permissions/directory-list-subscriptions-permissions.md: Application |
    # Organization.Read.All | Directory.Read.All, Organization.ReadWrite.All
    *(
        Permission(
            "GET",
            path,
            ("Organization.Read.All", "Directory.Read.All", "Organization.ReadWrite.All"),
            _DOCS + "v1.0/api/directory-list-subscriptions.md",
        )
        for path in ("directory/subscriptions", "directory/subscriptions/{id}")
    ),
    # v1.0/includes/permissions/subscribedsku-list-permissions.md: Application |
    # Organization.Read.All | Directory.Read.All, Directory.ReadWrite.All,
    # Organization.ReadWrite.All
    *(
        Permission("GET", path, _ORG_READ, _DOCS + "v1.0/api/subscribedsku-list.md")
        for path in ("subscribedSkus", "subscribedSkus/{id}")
    ),
    # v1.0/api/identitysecuritydefaultsenforcementpolicy-get.md (its include is not stored);
    # the update page lists Policy.Read.All and Policy.ReadWrite.SecurityDefaults for the policy.
    Permission(
        "GET",
        "policies/identitySecurityDefaultsEnforcementPolicy",
        ("Policy.Read.All", "Policy.ReadWrite.SecurityDefaults"),
        _DOCS + "v1.0/api/identitysecuritydefaultsenforcementpolicy-get.md",
    ),
    # v1.0/api/identitysecuritydefaultsenforcementpolicy-update.md: Application | Policy.Read.All,
    # Policy.ReadWrite.SecurityDefaults, Policy.ReadWrite.ConditionalAccess; its generated include
    # (v1.0/includes/permissions/...-update-permissions.md): Policy.Read.All | Policy.Read.All and
    # Policy.ReadWrite.ConditionalAccess. Strictest plausible reading: a read permission alone
    # never writes, so Policy.ReadWrite.SecurityDefaults, or the include's combination.
    Permission(
        "PATCH",
        "policies/identitySecurityDefaultsEnforcementPolicy",
        (
            "Policy.ReadWrite.SecurityDefaults",
            "Policy.Read.All + Policy.ReadWrite.ConditionalAccess",
        ),
        _DOCS + "v1.0/api/identitysecuritydefaultsenforcementpolicy-update.md",
    ),
    # v1.0/api/conditionalaccessroot-list-policies.md: Application | Policy.Read.All
    Permission(
        "GET",
        "identity/conditionalAccess/policies",
        ("Policy.Read.All",),
        _DOCS + "v1.0/api/conditionalaccessroot-list-policies.md",
    ),
    Permission(
        "GET",
        "identity/conditionalAccess/policies/{id}",
        ("Policy.Read.All",),
        _DOCS + "v1.0/api/conditionalaccesspolicy-get.md",
    ),
    # v1.0/api/conditionalaccesspolicy-update.md: Application | Policy.Read.All,
    # Policy.ReadWrite.ConditionalAccess and Application.Read.All (all three: the page's
    # "known issue related to permissions"); Application.ReadWrite.All reads applications too.
    Permission(
        "PATCH",
        "identity/conditionalAccess/policies/{id}",
        (
            "Policy.Read.All + Policy.ReadWrite.ConditionalAccess + Application.Read.All",
            "Policy.Read.All + Policy.ReadWrite.ConditionalAccess + Application.ReadWrite.All",
        ),
        _DOCS + "v1.0/api/conditionalaccesspolicy-update.md",
    ),
    # beta/includes/permissions/authentication-get-3-permissions.md (per-user MFA, acting on
    # others): Application | Policy.Read.All | Policy.ReadWrite.AuthenticationMethod
    Permission(
        "GET",
        "users/{id}/authentication/requirements",
        ("Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"),
        _DOCS + "beta/api/authentication-get.md",
        _BETA,
    ),
    # beta/includes/permissions/authentication-update-3-permissions.md: Application |
    # Policy.ReadWrite.AuthenticationMethod | Not available.
    Permission(
        "PATCH",
        "users/{id}/authentication/requirements",
        ("Policy.ReadWrite.AuthenticationMethod",),
        _DOCS + "beta/api/authentication-update.md",
        _BETA,
    ),
    # v1.0/api/directory-deleteditems-list.md: user | Application | User.Read.All (least), and
    # User.DeleteRestore.All per whats-new-overview.md. The uncast list is refused anyway.
    *(
        Permission(
            "GET", path, _DELETED_USERS_READ, _DOCS + "v1.0/api/directory-deleteditems-list.md"
        )
        for path in (
            "directory/deletedItems",
            "directory/deletedItems/microsoft.graph.user",
            "directory/deletedItems/{id}",
        )
    ),
    # v1.0/api/directory-deleteditems-list.md: application | Application | Application.Read.All
    # (least; the higher Application permissions read applications too).
    Permission(
        "GET",
        "directory/deletedItems/microsoft.graph.application",
        _APP_READ,
        _DOCS + "v1.0/api/directory-deleteditems-list.md",
        owned_only=("Application.ReadWrite.OwnedBy",),
    ),
    # v1.0/api/directory-deleteditems-list.md: servicePrincipal | Application |
    # Application.Read.All (least; the higher Application permissions read them too).
    Permission(
        "GET",
        "directory/deletedItems/microsoft.graph.servicePrincipal",
        _APP_READ,
        _DOCS + "v1.0/api/directory-deleteditems-list.md",
        owned_only=("Application.ReadWrite.OwnedBy",),
    ),
    # v1.0/api/directory-deleteditems-delete.md: application and servicePrincipal | Application
    # | Application.ReadWrite.OwnedBy (least; Application.ReadWrite.All reaches every app);
    # users (the stored page says "Not supported"; whats-new-overview.md, Dec 2024:
    # User.DeleteRestore.All least privileged).
    # One path purges every kind: the table asks for both, as the bot purges all three;
    # graph_directory.purge_deleted checks each kind's own permission too.
    Permission(
        "DELETE",
        "directory/deletedItems/{id}",
        tuple(f"{user} + Application.ReadWrite.All" for user in _USER_DELETE_RESTORE),
        _DOCS + "v1.0/api/directory-deleteditems-delete.md",
    ),
    # v1.0/api/directory-deleteditems-restore.md, "For users": Application | User.ReadWrite.All;
    # whats-new-overview.md: User.DeleteRestore.All least privileged.
    Permission(
        "POST",
        "directory/deletedItems/{id}/restore",
        _USER_DELETE_RESTORE,
        _DOCS + "v1.0/api/directory-deleteditems-restore.md",
    ),
    # v1.0/includes/permissions/application-list-permissions.md: Application |
    # Application.Read.All | Application.ReadWrite.OwnedBy, Application.ReadWrite.All,
    # Directory.Read.All
    *(
        Permission(
            "GET",
            path,
            _APP_READ,
            _DOCS + f"v1.0/api/application-{kind}.md",
            owned_only=("Application.ReadWrite.OwnedBy",),
        )
        for path, kind in (("applications", "list"), ("applications/{id}", "get"))
    ),
    # v1.0/includes/permissions/application-delete-permissions.md: Application |
    # Application.ReadWrite.OwnedBy | AgentIdentityBlueprint.DeleteRestore.All (agent blueprints
    # only), Application.ReadWrite.All
    Permission(
        "DELETE",
        "applications/{id}",
        ("Application.ReadWrite.All",),
        _DOCS + "v1.0/api/application-delete.md",
        owned_only=("Application.ReadWrite.OwnedBy",),
    ),
    # v1.0/includes/permissions/serviceprincipal-list-permissions.md: Application |
    # Application.Read.All | Application.ReadWrite.OwnedBy, Application.ReadWrite.All,
    # Directory.Read.All
    *(
        Permission(
            "GET",
            path,
            _APP_READ,
            _DOCS + f"v1.0/api/serviceprincipal-{kind}.md",
            owned_only=("Application.ReadWrite.OwnedBy",),
        )
        for path, kind in (("servicePrincipals", "list"), ("servicePrincipals/{id}", "get"))
    ),
    # v1.0/includes/permissions/serviceprincipal-delete-permissions.md: Application |
    # Application.ReadWrite.OwnedBy | Application.ReadWrite.All
    Permission(
        "DELETE",
        "servicePrincipals/{id}",
        ("Application.ReadWrite.All",),
        _DOCS + "v1.0/api/serviceprincipal-delete.md",
        owned_only=("Application.ReadWrite.OwnedBy",),
    ),
    # v1.0/includes/permissions/serviceprincipal-update-permissions.md: Application |
    # Application.ReadWrite.OwnedBy | Application.ReadWrite.All, Directory.ReadWrite.All
    Permission(
        "PATCH",
        "servicePrincipals/{id}",
        ("Application.ReadWrite.All", "Directory.ReadWrite.All"),
        _DOCS + "v1.0/api/serviceprincipal-update.md",
        owned_only=("Application.ReadWrite.OwnedBy",),
    ),
    # v1.0/api/domain-list.md (its include is not stored; the permissions reference's
    # Domain.Read.All and the directory-wide permissions)
    *(
        Permission("GET", path, _DOMAIN_READ, _DOCS + "v1.0/api/domain-list.md")
        for path in ("domains", "domains/{id}")
    ),
    # Usage reports (simulator/microsoft/reports.py):
    # v1.0/api/reportroot-getsharepointsiteusagedetail.md: Application | Reports.Read.All; the
    # mailbox and OneDrive pages' includes are not stored and name the same permission.
    *(
        Permission(
            "GET",
            f"reports/{function}",
            ("Reports.Read.All",),
            _DOCS + f"v1.0/api/reportroot-{function.lower()}.md",
        )
        for function in (
            "getMailboxUsageDetail",
            "getOneDriveUsageAccountDetail",
            "getSharePointSiteUsageDetail",
        )
    ),
    # v1.0/api/adminreportsettings-get.md: ReportSettings.Read.All (least privileged),
    # ReportSettings.ReadWrite.All; adminreportsettings-update.md: ReportSettings.ReadWrite.All
    Permission(
        "GET",
        "admin/reportSettings",
        ("ReportSettings.Read.All", "ReportSettings.ReadWrite.All"),
        _DOCS + "v1.0/api/adminreportsettings-get.md",
    ),
    Permission(
        "PATCH",
        "admin/reportSettings",
        ("ReportSettings.ReadWrite.All",),
        _DOCS + "v1.0/api/adminreportsettings-update.md",
    ),
)


def _match(template: str, segments: list[str]) -> int | None:
    """How many {id} the template needs to match, or None when it does not match."""
    parts = template.split("/")
    if len(parts) != len(segments):
        return None
    if any(p != "{id}" and p.lower() != s.lower() for p, s in zip(parts, segments, strict=True)):
        return None
    return parts.count("{id}")


def lookup(method: str, version: str, segments: list[str]) -> Permission | None:
    """The table's entry for a call; a literal segment wins over {id}, as in graph_api."""
    found = [
        (ids, p)
        for p in TABLE
        if p.method == method
        and version in p.versions
        and (ids := _match(p.path, segments)) is not None
    ]
    return min(found, key=lambda f: f[0])[1] if found else None


def require(caller: Caller, req: GraphRequest) -> None:
    """403 Authorization_RequestDenied unless the token's roles allow the call. A routed call
    missing from the table is a simulator bug: refused too, so that tests find it."""
    # A function call's parameters are not part of its path: getMailboxUsageDetail(period='D7')
    segments = [s.split("(", 1)[0] for s in req.segments]
    entry = lookup(req.method, req.version, segments)
    if entry is None or not entry.allows(caller.roles):
        raise forbidden()
