"""Graph's directory objects in the simulator: users, role assignments, deleted items, app
registrations and service principals (which permission each call needs: permissions.py).
"""

from __future__ import annotations

from typing import Any

from simulator.microsoft.graph_data import (
    GLOBAL_ADMINISTRATOR,
    MICROSOFT_TENANT_ID,
    ROLE_IDS,
    SimTenant,
)
from simulator.microsoft.graph_odata import (
    Caller,
    GraphRequest,
    GraphResponse,
    apply_filter,
    bad_request,
    context_url,
    forbidden,
    no_content,
    not_found,
    ok,
    page,
    project,
    selection,
)
from simulator.microsoft.graph_schema import USER_DEFAULT_SELECT

# Directory roles that let an app delete users who hold admin roles.
_PRIVILEGED_DELETERS = frozenset(
    {GLOBAL_ADMINISTRATOR, ROLE_IDS["Privileged Authentication Administrator"]}
)


def user_or_404(tenant: SimTenant, key: str) -> dict[str, Any]:
    user = tenant.find_user(key)
    if user is None:
        raise not_found(key)
    return user


def list_users(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    if "$filter" in req.query or "$expand" in req.query:
        raise bad_request("Unsupported query.", "Request_UnsupportedQuery")
    return ok(
        page(
            list(tenant.users.values()),
            req,
            context="users",
            entity_type="user",
            default=USER_DEFAULT_SELECT,
        )
    )


def get_user(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    user = user_or_404(tenant, req.segments[1])
    select = selection(req.query, "user")
    ctx = context_url(req.base, req.version, "users", select) + "/$entity"
    return ok({"@odata.context": ctx, **project(user, select, USER_DEFAULT_SELECT)})


def delete_user(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    user = user_or_404(tenant, req.segments[1])
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
    return no_content()


def _principal(tenant: SimTenant, principal_id: str) -> dict[str, Any]:
    if principal_id in tenant.users:
        user = tenant.users[principal_id]
        return {"@odata.type": "#microsoft.graph.user", **user}
    sp = tenant.service_principals[principal_id]
    return {"@odata.type": "#microsoft.graph.servicePrincipal", **sp}


def role_assignments(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
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
            value["principal"] = _principal(tenant, item["principalId"])
        values.append(value)
    ctx = context_url(req.base, req.version, "roleManagement/directory/roleAssignments", select)
    return ok({"@odata.context": ctx, "value": values})


def deleted_items_uncast(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    raise bad_request(
        "Searches against this resource are not supported. Only specific instances can be queried.",
        "Request_UnsupportedQuery",
    )


def list_deleted(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    if "$filter" in req.query or "$expand" in req.query:
        raise bad_request("Unsupported query.", "Request_UnsupportedQuery")
    body = page(
        list(tenant.deleted_users.values()),
        req,
        context="directoryObjects/microsoft.graph.user",
        entity_type="user",
        default=(*USER_DEFAULT_SELECT, "deletedDateTime"),
    )
    return ok(body)


def _list_deleted(
    items: list[dict[str, Any]], req: GraphRequest, entity: str, fields: set[str]
) -> GraphResponse:
    """GET /directory/deletedItems/microsoft.graph.{entity} (microsoftgraph/
    microsoft-graph-docs-contrib api-reference/v1.0/api/directory-deleteditems-list.md)."""
    if "$expand" in req.query:
        raise bad_request("Unsupported query.", "Request_UnsupportedQuery")
    found = apply_filter(items, req.query, entity, fields)
    return ok(
        page(found, req, context=f"directoryObjects/microsoft.graph.{entity}", entity_type=entity)
    )


def list_deleted_apps(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """The recycle bin's applications."""
    items = list(tenant.deleted_applications.values())
    return _list_deleted(items, req, "application", {"appId", "displayName", "id"})


def list_deleted_sps(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """The recycle bin's service principals."""
    items = list(tenant.deleted_service_principals.values())
    fields = {"appId", "displayName", "id", "appOwnerOrganizationId"}
    return _list_deleted(items, req, "servicePrincipal", fields)


def _deleted_or_404(tenant: SimTenant, object_id: str) -> dict[str, Any]:
    user = tenant.deleted_users.get(object_id)
    if user is None:
        raise not_found(object_id)
    return user


def get_deleted(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    user = _deleted_or_404(tenant, req.segments[2])
    select = selection(req.query, "user")
    ctx = context_url(req.base, req.version, "directoryObjects", None) + "/$entity"
    return ok(
        {
            "@odata.context": ctx,
            "@odata.type": "#microsoft.graph.user",
            **project(user, select, (*USER_DEFAULT_SELECT, "deletedDateTime")),
        }
    )


def purge_deleted(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """DELETE /directory/deletedItems/{id}: a user, an application or a service principal
    (directory-deleteditems-delete.md; each kind's permission is checked here, the table allows
    either)."""
    object_id = req.segments[2]
    app_kinds = (
        (tenant.deleted_applications, tenant.purge_application),
        (tenant.deleted_service_principals, tenant.purge_service_principal),
    )
    for store, purge in app_kinds:
        if object_id in store:
            if not {"Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"} & caller.roles:
                raise forbidden()
            purge(object_id)
            return no_content()
    _deleted_or_404(tenant, object_id)
    if not {"User.DeleteRestore.All", "User.ReadWrite.All"} & caller.roles:
        raise forbidden()
    tenant.purge_user(object_id)
    return no_content()


def restore_deleted(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    if req.body not in (None, {}) and (
        not isinstance(req.body, dict) or set(req.body) - {"autoReconcileProxyConflict"}
    ):
        raise bad_request("Invalid request body for restore.")
    _deleted_or_404(tenant, req.segments[2])
    user = tenant.restore_user(req.segments[2])
    ctx = context_url(req.base, req.version, "directoryObjects", None) + "/$entity"
    return ok(
        {
            "@odata.context": ctx,
            "@odata.type": "#microsoft.graph.user",
            **project(user, None, USER_DEFAULT_SELECT),
        }
    )


def _app_kind(req: GraphRequest) -> tuple[str, str]:
    if req.segments[0].lower() == "applications":
        return "applications", "application"
    return "servicePrincipals", "servicePrincipal"


def _store(tenant: SimTenant, req: GraphRequest) -> dict[str, dict[str, Any]]:
    if req.segments[0].lower() == "applications":
        return tenant.applications
    return tenant.service_principals


def list_apps(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    context, entity_type = _app_kind(req)
    filterable = {"appId", "displayName", "id"}
    if entity_type == "servicePrincipal":
        filterable |= {"appOwnerOrganizationId", "servicePrincipalType"}
    items = apply_filter(list(_store(tenant, req).values()), req.query, entity_type, filterable)
    return ok(page(items, req, context=context, entity_type=entity_type))


def _app_or_404(tenant: SimTenant, req: GraphRequest) -> dict[str, Any]:
    found = _store(tenant, req).get(req.segments[1])
    if found is None:
        raise not_found(req.segments[1])
    return found


def get_app(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    found = _app_or_404(tenant, req)
    context, entity_type = _app_kind(req)
    select = selection(req.query, entity_type)
    ctx = context_url(req.base, req.version, context, select) + "/$entity"
    return ok({"@odata.context": ctx, **project(found, select)})


def delete_app(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    found = _app_or_404(tenant, req)
    if req.segments[0].lower() == "applications":
        tenant.delete_application(found["id"])
    elif (
        found["appOwnerOrganizationId"] == MICROSOFT_TENANT_ID
        or found["id"] in tenant.undeletable_sps
    ):
        raise forbidden()
    else:
        tenant.delete_service_principal(found["id"])
    return no_content()


_SP_WRITABLE = frozenset({"accountEnabled", "appRoleAssignmentRequired", "displayName", "tags"})


def patch_service_principal(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """PATCH /servicePrincipals/{id}: 204 (microsoftgraph/microsoft-graph-docs-contrib
    api-reference/v1.0/api/serviceprincipal-update.md); an enterprise application that cannot
    be deleted can still be disabled with accountEnabled false (MicrosoftDocs/entra-docs
    docs/identity/users/directory-delete-howto.md)."""
    found = _app_or_404(tenant, req)
    body = req.body
    if not isinstance(body, dict) or not body:
        raise bad_request("Empty Payload. JSON content expected.")
    unknown = set(body) - _SP_WRITABLE
    if unknown:
        raise bad_request(
            f"Property '{sorted(unknown)[0]}' does not exist on type"
            " 'microsoft.graph.servicePrincipal'."
        )
    if "accountEnabled" in body and not isinstance(body["accountEnabled"], bool):
        raise bad_request("Invalid value for property 'accountEnabled'.")
    found.update(body)
    return no_content()
