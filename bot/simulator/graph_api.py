"""The Graph resources the simulated tenant serves: routing a GraphRequest to its handler,
permission checks against the token's roles, and each resource's Graph-shaped answers.
Synchronous and I/O-free; throttling, faults and HTTP live in microsoft.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.simulator.graph_data import (
    GLOBAL_ADMINISTRATOR,
    MICROSOFT_TENANT_ID,
    ROLE_IDS,
    SimTenant,
    iso,
)
from bot.simulator.graph_odata import (
    GraphError,
    GraphRequest,
    GraphResponse,
    apply_filter,
    bad_request,
    context_url,
    forbidden,
    not_found,
    page,
    project,
    selection,
)
from bot.simulator.graph_schema import USER_DEFAULT_SELECT

_READ_DIRECTORY = ("Directory.Read.All", "Directory.ReadWrite.All")
_USER_READ = ("User.Read.All", "User.ReadWrite.All", "User.DeleteRestore.All", *_READ_DIRECTORY)
_USER_DELETE = ("User.ReadWrite.All", "User.DeleteRestore.All", "Directory.ReadWrite.All")
_ORG_READ = ("Organization.Read.All", "Organization.ReadWrite.All", *_READ_DIRECTORY)
_LICENSE_READ = ("LicenseAssignment.Read.All", "LicenseAssignment.ReadWrite.All", *_ORG_READ)
_ROLES_READ = (
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
    *_READ_DIRECTORY,
)
_POLICY_READ = ("Policy.Read.All", "Policy.ReadWrite.ConditionalAccess")
_SECURITY_DEFAULTS_READ = ("Policy.Read.All", "Policy.ReadWrite.SecurityDefaults")
_MFA_READ = ("Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod")
_APP_READ = ("Application.Read.All", "Application.ReadWrite.All", *_READ_DIRECTORY)
_APP_WRITE = ("Application.ReadWrite.All",)
_DOMAIN_READ = ("Domain.Read.All", "Domain.ReadWrite.All", *_READ_DIRECTORY)
# Directory roles that let an app delete users who hold admin roles.
_PRIVILEGED_DELETERS = frozenset(
    {GLOBAL_ADMINISTRATOR, ROLE_IDS["Privileged Authentication Administrator"]}
)
_CA_STATES = frozenset({"enabled", "disabled", "enabledForReportingButNotEnforced"})
_MFA_STATES = frozenset({"enforced", "enabled", "disabled"})
_SECURITY_DEFAULTS_ID = "00000000-0000-0000-0000-000000000005"


@dataclass(frozen=True)
class Caller:
    """Who a valid access token says is calling."""

    app_id: str
    service_principal_id: str
    roles: frozenset[str]


Handler = Callable[[SimTenant, Caller, GraphRequest], GraphResponse]


def _segment_error(segment: str) -> GraphError:
    return bad_request(f"Resource not found for the segment '{segment}'.")


def _method_not_allowed() -> GraphError:
    return GraphError(
        405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
    )


def _require(caller: Caller, allowed: tuple[str, ...]) -> None:
    if not caller.roles.intersection(allowed):
        raise forbidden()


def _ok(body: dict[str, Any]) -> GraphResponse:
    return GraphResponse(200, body)


def _no_content() -> GraphResponse:
    return GraphResponse(204)


def _patch_body(req: GraphRequest, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(req.body, dict) or not req.body:
        raise bad_request(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and "
            "payload is of valid JSON format."
        )
    for key in req.body:
        if key not in allowed:
            raise bad_request(f"Invalid property '{key}' in the request body.")
    return req.body


def is_ca_path(req: GraphRequest) -> bool:
    return [s.lower() for s in req.segments[:2]] == ["identity", "conditionalaccess"]


def resource_units(req: GraphRequest) -> int:
    """Directory cost: listing users costs 2 units, 1 with $select; everything else 1."""
    if req.method == "GET" and req.segments == ["users"] and "$select" not in req.query:
        return 2
    return 1


class GraphApi:
    """Dispatch table of the Graph paths the simulator implements."""

    def __init__(self, base_url: Callable[[], str]) -> None:
        self._base = base_url
        self._routes = self._build_routes()

    def handle(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        return self.route(req)(tenant, caller, req)

    def route(self, req: GraphRequest) -> Handler:
        """The handler for a request, or the GraphError Graph gives an unknown path or method.

        Literal segments match case-insensitively and win over `{id}`, as in Graph.
        """
        seg = req.segments
        if not seg:
            raise bad_request("Invalid request.")
        matches: list[tuple[int, dict[str, Handler]]] = []
        longest = 0
        for template, versions, methods in self._routes:
            if req.version not in versions:
                continue
            k = 0
            while k < min(len(template), len(seg)) and template[k] in ("{id}", seg[k].lower()):
                k += 1
            longest = max(longest, k)
            if k == len(template) == len(seg):
                matches.append((template.count("{id}"), methods))
        if not matches:
            raise _segment_error(seg[min(longest, len(seg) - 1)])
        methods = min(matches, key=lambda m: m[0])[1]
        if req.method not in methods:
            raise _method_not_allowed()
        return methods[req.method]

    def _build_routes(self) -> list[tuple[tuple[str, ...], frozenset[str], dict[str, Handler]]]:
        both, beta = frozenset({"v1.0", "beta"}), frozenset({"beta"})
        table: list[tuple[str, frozenset[str], dict[str, Handler]]] = [
            ("users", both, {"GET": self._list_users}),
            ("users/{id}", both, {"GET": self._get_user, "DELETE": self._delete_user}),
            ("users/{id}/authentication", both, {}),
            (
                "users/{id}/authentication/requirements",
                beta,
                {"GET": self._get_mfa, "PATCH": self._patch_mfa},
            ),
            ("roleManagement/directory/roleAssignments", both, {"GET": self._role_assignments}),
            ("organization", both, {"GET": self._organization}),
            ("organization/{id}", both, {"GET": self._organization}),
            ("directory/subscriptions", both, {"GET": self._subscriptions}),
            ("directory/subscriptions/{id}", both, {"GET": self._subscriptions}),
            ("subscribedSkus", both, {"GET": self._subscribed_skus}),
            ("subscribedSkus/{id}", both, {"GET": self._subscribed_skus}),
            (
                "policies/identitySecurityDefaultsEnforcementPolicy",
                both,
                {"GET": self._get_defaults, "PATCH": self._patch_defaults},
            ),
            ("identity/conditionalAccess/policies", both, {"GET": self._list_ca}),
            (
                "identity/conditionalAccess/policies/{id}",
                both,
                {"GET": self._get_ca, "PATCH": self._patch_ca},
            ),
            ("directory/deletedItems", both, {"GET": self._deleted_items_uncast}),
            ("directory/deletedItems/microsoft.graph.user", both, {"GET": self._list_deleted}),
            (
                "directory/deletedItems/{id}",
                both,
                {"GET": self._get_deleted, "DELETE": self._purge},
            ),
            ("directory/deletedItems/{id}/restore", both, {"POST": self._restore}),
            ("applications", both, {"GET": self._list_apps}),
            ("applications/{id}", both, {"GET": self._get_app, "DELETE": self._delete_app}),
            ("servicePrincipals", both, {"GET": self._list_apps}),
            ("servicePrincipals/{id}", both, {"GET": self._get_app, "DELETE": self._delete_app}),
            ("domains", both, {"GET": self._domains}),
            ("domains/{id}", both, {"GET": self._domains}),
        ]
        return [
            (tuple(p if p == "{id}" else p.lower() for p in path.split("/")), versions, methods)
            for path, versions, methods in table
        ]

    # -- users ---------------------------------------------------------------------------------

    def _user_or_404(self, tenant: SimTenant, key: str) -> dict[str, Any]:
        user = tenant.find_user(key)
        if user is None:
            raise not_found(key)
        return user

    def _list_users(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_READ)
        if "$filter" in req.query or "$expand" in req.query:
            raise bad_request("Unsupported query.", "Request_UnsupportedQuery")
        return _ok(
            page(
                list(tenant.users.values()),
                req,
                base=self._base(),
                context="users",
                entity_type="user",
                default=USER_DEFAULT_SELECT,
            )
        )

    def _get_user(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_READ)
        user = self._user_or_404(tenant, req.segments[1])
        select = selection(req.query, "user")
        ctx = context_url(self._base(), req.version, "users", select) + "/$entity"
        return _ok({"@odata.context": ctx, **project(user, select, USER_DEFAULT_SELECT)})

    def _delete_user(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_DELETE)
        user = self._user_or_404(tenant, req.segments[1])
        if tenant.roles.get(user["id"]) and not (
            tenant.roles.get(caller.service_principal_id, set()) & _PRIVILEGED_DELETERS
        ):
            raise forbidden()
        if user["onPremisesSyncEnabled"] and tenant.sync_enabled:
            raise bad_request(
                "Unable to update the specified properties for on-premises mastered Directory "
                "Sync objects or objects currently undergoing migration.",
                "Request_BadRequest",
            )
        tenant.soft_delete_user(user["id"])
        return _no_content()

    def _mfa_user(self, tenant: SimTenant, req: GraphRequest) -> dict[str, Any]:
        return self._user_or_404(tenant, req.segments[1])

    def _get_mfa(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _MFA_READ)
        user = self._mfa_user(tenant, req)
        ctx = (
            f"{self._base()}/beta/$metadata#users('{user['id']}')/authentication/requirements"
            "/$entity"
        )
        state = tenant.per_user_mfa.get(user["id"], "disabled")
        return _ok({"@odata.context": ctx, "perUserMfaState": state})

    def _patch_mfa(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, ("Policy.ReadWrite.AuthenticationMethod",))
        user = self._mfa_user(tenant, req)
        state = _patch_body(req, {"perUserMfaState"})["perUserMfaState"]
        if state not in _MFA_STATES:
            raise bad_request(f"Invalid value '{state}' for property 'perUserMfaState'.")
        tenant.per_user_mfa[user["id"]] = state
        return _no_content()

    # -- roles, organization, licensing --------------------------------------------------------

    def _principal(self, tenant: SimTenant, principal_id: str) -> dict[str, Any]:
        if principal_id in tenant.users:
            user = tenant.users[principal_id]
            return {"@odata.type": "#microsoft.graph.user", **user}
        sp = tenant.service_principals[principal_id]
        return {"@odata.type": "#microsoft.graph.servicePrincipal", **sp}

    def _role_assignments(
        self, tenant: SimTenant, caller: Caller, req: GraphRequest
    ) -> GraphResponse:
        _require(caller, _ROLES_READ)
        expand = req.query.get("$expand")
        if expand not in (None, "principal"):
            raise bad_request(
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{expand}' on type 'microsoft.graph.unifiedRoleAssignment'."
            )
        items = apply_filter(
            tenant.role_assignments(),
            req.query,
            "unifiedRoleAssignment",
            {"roleDefinitionId", "principalId", "directoryScopeId"},
        )
        select = selection(req.query, "unifiedRoleAssignment")
        values = []
        for item in items:
            value = project(item, select)
            if expand:
                value["principal"] = self._principal(tenant, item["principalId"])
            values.append(value)
        ctx = context_url(
            self._base(), req.version, "roleManagement/directory/roleAssignments", select
        )
        return _ok({"@odata.context": ctx, "value": values})

    def _organization(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _ORG_READ)
        if len(req.segments) == 2 and req.segments[1] != tenant.tenant_id:
            raise not_found(req.segments[1])
        sync = True if tenant.sync_enabled else (False if tenant.ever_synced else None)
        org = {
            "id": tenant.tenant_id,
            "deletedDateTime": None,
            "businessPhones": [],
            "city": "Redmond",
            "country": None,
            "countryLetterCode": "US",
            "createdDateTime": iso(tenant.now().replace(year=tenant.now().year - 3)),
            "displayName": tenant.display_name,
            "onPremisesLastSyncDateTime": iso(tenant.now()) if tenant.sync_enabled else None,
            "onPremisesSyncEnabled": sync,
            "postalCode": "98052",
            "preferredLanguage": "en",
            "state": "WA",
            "street": "1 Microsoft Way",
            "technicalNotificationMails": [tenant.retained_upn],
            "tenantType": "AAD",
            "assignedPlans": [],
            "provisionedPlans": [],
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": d["isDefault"],
                    "isInitial": d["isInitial"],
                    "name": d["id"],
                    "type": "Managed",
                }
                for d in tenant.domains
            ],
        }
        return self._collection_or_entity(
            req, [org], "organization", "organization", single=len(req.segments) == 2
        )

    def _collection_or_entity(
        self,
        req: GraphRequest,
        items: list[dict[str, Any]],
        context: str,
        entity_type: str,
        *,
        single: bool,
    ) -> GraphResponse:
        select = selection(req.query, entity_type)
        ctx = context_url(self._base(), req.version, context, select)
        if single:
            key = req.segments[-1]
            found = next((i for i in items if str(i["id"]).lower() == key.lower()), None)
            if found is None:
                raise not_found(key)
            return _ok({"@odata.context": ctx + "/$entity", **project(found, select)})
        return _ok({"@odata.context": ctx, "value": [project(i, select) for i in items]})

    def _subscriptions(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _LICENSE_READ)
        items = list(tenant.subscriptions.values())
        return self._collection_or_entity(
            req,
            items,
            "directory/subscriptions",
            "companySubscription",
            single=len(req.segments) == 3,
        )

    def _subscribed_skus(
        self, tenant: SimTenant, caller: Caller, req: GraphRequest
    ) -> GraphResponse:
        _require(caller, _LICENSE_READ)
        return self._collection_or_entity(
            req, tenant.skus, "subscribedSkus", "subscribedSku", single=len(req.segments) == 2
        )

    def _domains(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _DOMAIN_READ)
        return self._collection_or_entity(
            req, tenant.domains, "domains", "domain", single=len(req.segments) == 2
        )

    # -- policies ------------------------------------------------------------------------------

    def _defaults(self, tenant: SimTenant) -> dict[str, Any]:
        return {
            "id": _SECURITY_DEFAULTS_ID,
            "displayName": "Security Defaults",
            "description": "Security defaults is a set of basic identity security mechanisms "
            "recommended by Microsoft. When enabled, these recommendations will be automatically "
            "enforced in your organization.",
            "isEnabled": tenant.security_defaults_enabled,
        }

    def _get_defaults(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _SECURITY_DEFAULTS_READ)
        select = selection(req.query, "identitySecurityDefaultsEnforcementPolicy")
        ctx = context_url(
            self._base(), req.version, "policies/identitySecurityDefaultsEnforcementPolicy", select
        )
        return _ok({"@odata.context": ctx + "/$entity", **project(self._defaults(tenant), select)})

    def _patch_defaults(
        self, tenant: SimTenant, caller: Caller, req: GraphRequest
    ) -> GraphResponse:
        _require(caller, ("Policy.ReadWrite.SecurityDefaults",))
        enabled = _patch_body(req, {"isEnabled"})["isEnabled"]
        if not isinstance(enabled, bool):
            raise bad_request("Invalid value for property 'isEnabled': a boolean is expected.")
        tenant.security_defaults_enabled = enabled
        return _no_content()

    def _list_ca(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _POLICY_READ)
        items = list(tenant.ca_policies.values())
        return self._collection_or_entity(
            req,
            items,
            "identity/conditionalAccess/policies",
            "conditionalAccessPolicy",
            single=False,
        )

    def _ca_or_404(self, tenant: SimTenant, policy_id: str) -> dict[str, Any]:
        policy = tenant.ca_policies.get(policy_id)
        if policy is None:
            raise not_found(policy_id)
        return policy

    def _get_ca(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _POLICY_READ)
        self._ca_or_404(tenant, req.segments[3])
        items = list(tenant.ca_policies.values())
        return self._collection_or_entity(
            req,
            items,
            "identity/conditionalAccess/policies",
            "conditionalAccessPolicy",
            single=True,
        )

    def _patch_ca(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, ("Policy.ReadWrite.ConditionalAccess",))
        policy = self._ca_or_404(tenant, req.segments[3])
        body = _patch_body(req, {"state", "displayName"})
        if "state" in body and body["state"] not in _CA_STATES:
            raise bad_request(f"Invalid value '{body['state']}' for property 'state'.")
        if "displayName" in body and not isinstance(body["displayName"], str):
            raise bad_request("Invalid value for property 'displayName'.")
        policy.update(body)
        policy["modifiedDateTime"] = iso(tenant.now())
        return _no_content()

    # -- deleted items -------------------------------------------------------------------------

    def _deleted_items_uncast(
        self, tenant: SimTenant, caller: Caller, req: GraphRequest
    ) -> GraphResponse:
        raise bad_request(
            "Searches against this resource are not supported. Only specific instances can be "
            "queried.",
            "Request_UnsupportedQuery",
        )

    def _list_deleted(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_READ)
        if "$filter" in req.query or "$expand" in req.query:
            raise bad_request("Unsupported query.", "Request_UnsupportedQuery")
        body = page(
            list(tenant.deleted_users.values()),
            req,
            base=self._base(),
            context="directoryObjects/microsoft.graph.user",
            entity_type="user",
            default=(*USER_DEFAULT_SELECT, "deletedDateTime"),
        )
        return _ok(body)

    def _deleted_or_404(self, tenant: SimTenant, object_id: str) -> dict[str, Any]:
        user = tenant.deleted_users.get(object_id)
        if user is None:
            raise not_found(object_id)
        return user

    def _get_deleted(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_READ)
        user = self._deleted_or_404(tenant, req.segments[2])
        select = selection(req.query, "user")
        ctx = context_url(self._base(), req.version, "directoryObjects", None) + "/$entity"
        return _ok(
            {
                "@odata.context": ctx,
                "@odata.type": "#microsoft.graph.user",
                **project(user, select, (*USER_DEFAULT_SELECT, "deletedDateTime")),
            }
        )

    def _purge(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_DELETE)
        self._deleted_or_404(tenant, req.segments[2])
        tenant.purge_user(req.segments[2])
        return _no_content()

    def _restore(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _USER_DELETE)
        if req.body not in (None, {}) and (
            not isinstance(req.body, dict) or set(req.body) - {"autoReconcileProxyConflict"}
        ):
            raise bad_request("Invalid request body for restore.")
        self._deleted_or_404(tenant, req.segments[2])
        user = tenant.restore_user(req.segments[2])
        ctx = context_url(self._base(), req.version, "directoryObjects", None) + "/$entity"
        return _ok(
            {
                "@odata.context": ctx,
                "@odata.type": "#microsoft.graph.user",
                **project(user, None, USER_DEFAULT_SELECT),
            }
        )

    # -- applications and service principals ---------------------------------------------------

    @staticmethod
    def _app_kind(req: GraphRequest) -> tuple[str, str]:
        if req.segments[0] == "applications":
            return "applications", "application"
        return "servicePrincipals", "servicePrincipal"

    def _store(self, tenant: SimTenant, req: GraphRequest) -> dict[str, dict[str, Any]]:
        if req.segments[0] == "applications":
            return tenant.applications
        return tenant.service_principals

    def _list_apps(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _APP_READ)
        context, entity_type = self._app_kind(req)
        filterable = {"appId", "displayName", "id"}
        if entity_type == "servicePrincipal":
            filterable |= {"appOwnerOrganizationId", "servicePrincipalType"}
        items = apply_filter(
            list(self._store(tenant, req).values()), req.query, entity_type, filterable
        )
        return _ok(page(items, req, base=self._base(), context=context, entity_type=entity_type))

    def _app_or_404(self, tenant: SimTenant, req: GraphRequest) -> dict[str, Any]:
        found = self._store(tenant, req).get(req.segments[1])
        if found is None:
            raise not_found(req.segments[1])
        return found

    def _get_app(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _APP_READ)
        found = self._app_or_404(tenant, req)
        context, entity_type = self._app_kind(req)
        select = selection(req.query, entity_type)
        ctx = context_url(self._base(), req.version, context, select) + "/$entity"
        return _ok({"@odata.context": ctx, **project(found, select)})

    def _delete_app(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        _require(caller, _APP_WRITE)
        found = self._app_or_404(tenant, req)
        if req.segments[0] == "applications":
            tenant.delete_application(found["id"])
        elif found["appOwnerOrganizationId"] == MICROSOFT_TENANT_ID:
            raise forbidden()
        else:
            tenant.delete_service_principal(found["id"])
        return _no_content()
