"""Graph's tenant-wide settings in the simulator: organization, licensing, domains, security
defaults, conditional access and (beta) per-user MFA (which permission each call needs:
permissions.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from simulator.microsoft.graph_data import SimTenant, iso
from simulator.microsoft.graph_directory import user_or_404
from simulator.microsoft.graph_odata import (
    Caller,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    context_url,
    no_content,
    not_found,
    ok,
    patch_body,
    project,
    selection,
)
from simulator.microsoft.graph_seed import ca_policy

_CA_STATES = frozenset({"enabled", "disabled", "enabledForReportingButNotEnforced"})
_MFA_STATES = frozenset({"enforced", "enabled", "disabled"})
_SECURITY_DEFAULTS_ID = "00000000-0000-0000-0000-000000000005"


def _mfa_user(tenant: SimTenant, req: GraphRequest) -> dict[str, Any]:
    return user_or_404(tenant, req.segments[1])


def get_mfa(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    user = _mfa_user(tenant, req)
    ctx = f"{req.base}/beta/$metadata#users('{user['id']}')/authentication/requirements/$entity"
    state = tenant.per_user_mfa.get(user["id"], "disabled")
    return ok({"@odata.context": ctx, "perUserMfaState": state})


def patch_mfa(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    user = _mfa_user(tenant, req)
    state = patch_body(req, {"perUserMfaState"})["perUserMfaState"]
    if state not in _MFA_STATES:
        raise bad_request(f"Invalid value '{state}' for property 'perUserMfaState'.")
    tenant.per_user_mfa[user["id"]] = state
    return no_content()


def organization(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
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
        "createdDateTime": iso(tenant.epoch - dt.timedelta(days=1200)),
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
    return _collection_or_entity(
        req, [org], "organization", "organization", single=len(req.segments) == 2
    )


def _collection_or_entity(
    req: GraphRequest,
    items: list[dict[str, Any]],
    context: str,
    entity_type: str,
    *,
    single: bool,
) -> GraphResponse:
    select = selection(req.query, entity_type)
    ctx = context_url(req.base, req.version, context, select)
    if single:
        key = req.segments[-1]
        found = next((i for i in items if str(i["id"]).lower() == key.lower()), None)
        if found is None:
            raise not_found(key)
        return ok({"@odata.context": ctx + "/$entity", **project(found, select)})
    return ok({"@odata.context": ctx, "value": [project(i, select) for i in items]})


def subscriptions(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    items = list(tenant.subscriptions)
    return _collection_or_entity(
        req,
        items,
        "directory/subscriptions",
        "companySubscription",
        single=len(req.segments) == 3,
    )


def subscribed_skus(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    return _collection_or_entity(
        req, tenant.skus, "subscribedSkus", "subscribedSku", single=len(req.segments) == 2
    )


def domains(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    return _collection_or_entity(
        req, tenant.domains, "domains", "domain", single=len(req.segments) == 2
    )


def _defaults(tenant: SimTenant) -> dict[str, Any]:
    return {
        "id": _SECURITY_DEFAULTS_ID,
        "displayName": "Security Defaults",
        "description": "Security defaults is a set of basic identity security mechanisms "
        "recommended by Microsoft. When enabled, these recommendations will be automatically "
        "enforced in your organization.",
        "isEnabled": tenant.security_defaults_enabled,
    }


def get_security_defaults(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    select = selection(req.query, "identitySecurityDefaultsEnforcementPolicy")
    ctx = context_url(
        req.base, req.version, "policies/identitySecurityDefaultsEnforcementPolicy", select
    )
    return ok({"@odata.context": ctx + "/$entity", **project(_defaults(tenant), select)})


def patch_organization(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """Sync off through the v1.0 organization update: MicrosoftDocs/microsoft-365-docs
    microsoft-365/enterprise/turn-off-directory-synchronization.md runs Update-MgOrganization
    (the v1.0 Microsoft.Graph module, not Update-MgBetaOrganization) with
    `onPremisesSyncEnabled = $false` (scope Organization.ReadWrite.All), and warns that sync
    cannot be turned back on for 72 hours. The request itself (PATCH /organization/{id}, the
    tenant ID, 204 No Content) is microsoftgraph/microsoft-graph-docs-contrib
    api-reference/v1.0/api/organization-update.md, whose body table does not list
    onPremisesSyncEnabled. The bot sends only onPremisesSyncEnabled: false. Beta is
    refused here (strictest plausible): a preview version is no contract for a destructive
    write the bot makes, so a bot that still PATCHes beta is caught by the tests."""
    if req.version != "v1.0":
        raise GraphError(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    if req.segments[1] != tenant.tenant_id:
        raise not_found(req.segments[1])
    enabled = patch_body(req, {"onPremisesSyncEnabled"})["onPremisesSyncEnabled"]
    if enabled is not False:
        raise bad_request("onPremisesSyncEnabled can only be set to false here.")
    tenant.request_sync_off()
    return no_content()


def patch_security_defaults(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    enabled = patch_body(req, {"isEnabled"})["isEnabled"]
    if not isinstance(enabled, bool):
        raise bad_request("Invalid value for property 'isEnabled': a boolean is expected.")
    tenant.security_defaults_enabled = enabled
    return no_content()


# The built-in authentication strengths (microsoftgraph/microsoft-graph-docs-contrib
# api-reference/v1.0/resources/authenticationstrengthpolicy.md: policyType builtIn or custom,
# and requirementsSatisfied "mfa" when the strength grants the MFA claim, "none" when it does
# not: "may or may not fulfill the requirements to grant an MFA claim"; the example in
# api-reference/v1.0/api/authenticationstrengthpolicy-get.md is the built-in
# 00000000-0000-0000-0000-000000000004, requirementsSatisfied "mfa"). The IDs are Entra's
# fixed built-in ones.
AUTH_STRENGTHS: dict[str, dict[str, Any]] = {
    "00000000-0000-0000-0000-000000000002": {
        "displayName": "Multifactor authentication",
        "allowedCombinations": [
            "windowsHelloForBusiness",
            "fido2",
            "password,microsoftAuthenticatorPush",
        ],
    },
    "00000000-0000-0000-0000-000000000003": {
        "displayName": "Passwordless MFA",
        "allowedCombinations": [
            "windowsHelloForBusiness",
            "fido2",
            "microsoftAuthenticatorPhoneSignIn",
        ],
    },
    "00000000-0000-0000-0000-000000000004": {
        "displayName": "Phishing-resistant MFA",
        "allowedCombinations": ["windowsHelloForBusiness", "fido2", "x509CertificateMultiFactor"],
    },
}


def add_strength_policy(
    tenant: SimTenant,
    display: str,
    *,
    state: str = "enabled",
    strength: str = "00000000-0000-0000-0000-000000000004",
    requirements: str = "mfa",
    strength_name: str = "Custom strength",
) -> str:
    """A conditional access policy whose only grant control is an authentication strength (no
    `mfa` in builtInControls). The strength is the grant controls' `authenticationStrength`
    relationship, an authenticationStrengthPolicy (learn.microsoft.com/graph/api/resources/
    conditionalaccessgrantcontrols, v1.0, Relationships; the stored copy of
    api-reference/v1.0/resources/conditionalaccessgrantcontrols.md predates it), returned with
    the policy as Graph does. A custom strength (`strength` not built in) is named
    `strength_name` and satisfies `requirements`: "mfa" or "none" (a strength that grants no
    MFA claim). Returns the policy's ID."""
    if state not in _CA_STATES:
        raise ValueError(f"unknown conditional access state {state!r}")
    stamp = iso(tenant.now())
    builtin = AUTH_STRENGTHS.get(strength)
    policy_id = ca_policy(tenant, display, state, [], ["all"], stamp)
    tenant.ca_policies[policy_id]["grantControls"]["authenticationStrength"] = {
        "id": strength,
        "createdDateTime": stamp,
        "modifiedDateTime": stamp,
        "displayName": (builtin or {}).get("displayName", strength_name),
        "description": None,
        "policyType": "builtIn" if builtin else "custom",
        "requirementsSatisfied": requirements,
        "allowedCombinations": list((builtin or {}).get("allowedCombinations", [])),
    }
    return policy_id


def list_ca(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    items = list(tenant.ca_policies.values())
    return _collection_or_entity(
        req,
        items,
        "identity/conditionalAccess/policies",
        "conditionalAccessPolicy",
        single=False,
    )


def _ca_or_404(tenant: SimTenant, policy_id: str) -> dict[str, Any]:
    policy = tenant.ca_policies.get(policy_id)
    if policy is None:
        raise not_found(policy_id)
    return policy


def get_ca(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    _ca_or_404(tenant, req.segments[3])
    items = list(tenant.ca_policies.values())
    return _collection_or_entity(
        req,
        items,
        "identity/conditionalAccess/policies",
        "conditionalAccessPolicy",
        single=True,
    )


def patch_ca(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    policy = _ca_or_404(tenant, req.segments[3])
    body = patch_body(req, {"state", "displayName"})
    if "state" in body and body["state"] not in _CA_STATES:
        raise bad_request(f"Invalid value '{body['state']}' for property 'state'.")
    if "displayName" in body and not isinstance(body["displayName"], str):
        raise bad_request("Invalid value for property 'displayName'.")
    policy.update(body)
    policy["modifiedDateTime"] = iso(tenant.now())
    return no_content()
