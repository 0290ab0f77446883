"""Routing for the simulated Graph: which handler serves a (version, method, path), the errors
Graph gives unknown segments and methods, and what a call costs in resource units.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.microsoft import graph_directory as directory
from simulator.microsoft import graph_settings as settings
from simulator.microsoft.graph_data import SimTenant
from simulator.microsoft.graph_odata import (
    Caller,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
)

Handler = Callable[[SimTenant, Caller, GraphRequest], GraphResponse]
_BOTH, _BETA = frozenset({"v1.0", "beta"}), frozenset({"beta"})
_TABLE: list[tuple[str, frozenset[str], dict[str, Handler]]] = [
    ("users", _BOTH, {"GET": directory.list_users}),
    ("users/{id}", _BOTH, {"GET": directory.get_user, "DELETE": directory.delete_user}),
    ("users/{id}/authentication", _BOTH, {}),
    (
        "users/{id}/authentication/requirements",
        _BETA,
        {"GET": settings.get_mfa, "PATCH": settings.patch_mfa},
    ),
    ("roleManagement/directory/roleAssignments", _BOTH, {"GET": directory.role_assignments}),
    ("organization", _BOTH, {"GET": settings.organization}),
    (
        "organization/{id}",
        _BOTH,
        {"GET": settings.organization, "PATCH": settings.patch_organization},
    ),
    ("directory/subscriptions", _BOTH, {"GET": settings.subscriptions}),
    ("directory/subscriptions/{id}", _BOTH, {"GET": settings.subscriptions}),
    ("subscribedSkus", _BOTH, {"GET": settings.subscribed_skus}),
    ("subscribedSkus/{id}", _BOTH, {"GET": settings.subscribed_skus}),
    (
        "policies/identitySecurityDefaultsEnforcementPolicy",
        _BOTH,
        {"GET": settings.get_security_defaults, "PATCH": settings.patch_security_defaults},
    ),
    ("identity/conditionalAccess/policies", _BOTH, {"GET": settings.list_ca}),
    (
        "identity/conditionalAccess/policies/{id}",
        _BOTH,
        {"GET": settings.get_ca, "PATCH": settings.patch_ca},
    ),
    ("directory/deletedItems", _BOTH, {"GET": directory.deleted_items_uncast}),
    ("directory/deletedItems/microsoft.graph.user", _BOTH, {"GET": directory.list_deleted}),
    (
        "directory/deletedItems/microsoft.graph.application",
        _BOTH,
        {"GET": directory.list_deleted_apps},
    ),
    (
        "directory/deletedItems/microsoft.graph.servicePrincipal",
        _BOTH,
        {"GET": directory.list_deleted_sps},
    ),
    (
        "directory/deletedItems/{id}",
        _BOTH,
        {"GET": directory.get_deleted, "DELETE": directory.purge_deleted},
    ),
    ("directory/deletedItems/{id}/restore", _BOTH, {"POST": directory.restore_deleted}),
    ("applications", _BOTH, {"GET": directory.list_apps}),
    ("applications/{id}", _BOTH, {"GET": directory.get_app, "DELETE": directory.delete_app}),
    ("servicePrincipals", _BOTH, {"GET": directory.list_apps}),
    (
        "servicePrincipals/{id}",
        _BOTH,
        {
            "GET": directory.get_app,
            "DELETE": directory.delete_app,
            "PATCH": directory.patch_service_principal,
        },
    ),
    ("domains", _BOTH, {"GET": settings.domains}),
    ("domains/{id}", _BOTH, {"GET": settings.domains}),
]
# Literal segments are compared lower-cased: Graph's segment names are case-insensitive.
_ROUTES = [
    (tuple(p if p == "{id}" else p.lower() for p in path.split("/")), versions, methods)
    for path, versions, methods in _TABLE
]


def route(req: GraphRequest) -> Handler:
    """The handler for a request, or the GraphError Graph gives an unknown path or method.

    A literal segment wins over `{id}` (the user cast over a deleted item's id).
    """
    seg = req.segments
    if not seg:
        raise bad_request("Invalid request.")
    matches: list[tuple[int, dict[str, Handler]]] = []
    longest = 0
    for template, versions, methods in _ROUTES:
        if req.version not in versions:
            continue
        k = 0
        while k < min(len(template), len(seg)) and template[k] in ("{id}", seg[k].lower()):
            k += 1
        longest = max(longest, k)
        if k == len(template) == len(seg):
            matches.append((template.count("{id}"), methods))
    if not matches:
        segment = seg[min(longest, len(seg) - 1)]
        raise bad_request(f"Resource not found for the segment '{segment}'.")
    methods = min(matches, key=lambda m: m[0])[1]
    if req.method not in methods:
        raise GraphError(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    return methods[req.method]


def is_conditional_access(req: GraphRequest) -> bool:
    return [s.lower() for s in req.segments[:2]] == ["identity", "conditionalaccess"]


def resource_units(req: GraphRequest) -> int:
    """Directory cost: listing users costs 2 units, 1 with $select; everything else 1."""
    if req.method == "GET" and req.segments == ["users"] and "$select" not in req.query:
        return 2
    return 1
