"""Azure Resource Manager in the simulator: the tenant's Azure subscriptions, listed and cancelled.

Served under `{base}/arm` with its own token audience (`{base}/arm`), as ARM is its own resource
in Entra: a Graph token is refused here and an ARM token on Graph.

The subscription list is paged as ARM documents it (Azure/azure-rest-api-specs,
specification/resources/resource-manager/Microsoft.Resources/stable/2022-12-01/subscriptions.json:
`Subscriptions_List` is `x-ms-pageable` with `nextLinkName: nextLink`, and
`SubscriptionListResult.nextLink` is "The URL to get the next set of results"). ARM does not
document the page size; the simulator's is small (`AzureEstate.page_size`, 2) so tests page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

ARM_RESOURCES = ("https://management.azure.com", "https://management.core.windows.net")
LIST_API = "2020-01-01"
CANCEL_API = "2021-10-01"
ACTIVE_STATES = frozenset({"Enabled", "PastDue", "Warned"})


@dataclass
class AzureEstate:
    """A tenant's Azure subscriptions and whether the bot's app may cancel them (Owner)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    app_is_owner: bool = True
    page_size: int = 2

    def seed(self, tenant_id: str, count: int, seed: int) -> None:
        base = uuid.uuid5(uuid.NAMESPACE_URL, f"sim-azure:{tenant_id}:{seed}")
        for n in range(count):
            sid = str(uuid.uuid5(base, str(n)))
            self.subscriptions.append(
                {
                    "id": f"/subscriptions/{sid}",
                    "subscriptionId": sid,
                    "tenantId": tenant_id,
                    "displayName": ["Production", "Dev/Test", "Sandbox"][n % 3] + f" {n + 1}",
                    "state": "Enabled",
                    "authorizationSource": "RoleBased",
                    "subscriptionPolicies": {"quotaId": "PayAsYouGo_2014-09-01"},
                }
            )

    def find(self, sid: str) -> dict[str, Any] | None:
        return next((s for s in self.subscriptions if s["subscriptionId"] == sid), None)


def arm_error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


def handle(
    estate: AzureEstate,
    method: str,
    segments: list[str],
    query: dict[str, str],
    base: str = "https://management.azure.com",
) -> tuple[int, dict[str, Any]]:
    """Answer an ARM request (path segments after /arm) as Azure Resource Manager does; `base`
    is the ARM root the client used, for the absolute `nextLink`."""
    version = query.get("api-version")
    if not version:
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if method == "GET" and segments == ["subscriptions"]:
        visible = estate.subscriptions if estate.app_is_owner else []
        token = query.get("$skiptoken", "0")
        if not token.isdigit() or int(token) > len(visible):
            return arm_error(400, "InvalidSkipToken", f"The skip token '{token}' is invalid.")
        start = int(token)
        end = start + max(1, estate.page_size)
        body: dict[str, Any] = {
            "value": visible[start:end],
            "count": {"type": "Total", "value": len(visible)},
        }
        if end < len(visible):
            link_query = urlencode({"api-version": version, "$skiptoken": str(end)})
            body["nextLink"] = f"{base}/subscriptions?{link_query}"
        return 200, body
    if (
        method == "POST"
        and len(segments) == 5
        and segments[0] == "subscriptions"
        and segments[2:] == ["providers", "Microsoft.Subscription", "cancel"]
    ):
        if version != CANCEL_API:
            return arm_error(
                400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid."
            )
        sub = estate.find(segments[1])
        if sub is None:
            return arm_error(
                404, "SubscriptionNotFound", f"The subscription '{segments[1]}' could not be found."
            )
        if not estate.app_is_owner:
            return arm_error(
                403,
                "AuthorizationFailed",
                "The client does not have authorization to perform action"
                " 'Microsoft.Subscription/cancel/action'.",
            )
        if sub["state"] not in ACTIVE_STATES:
            return arm_error(
                400, "SubscriptionNotActive", f"The subscription is {sub['state']}, not active."
            )
        sub["state"] = "Disabled"
        return 200, {"subscriptionId": sub["subscriptionId"]}
    return arm_error(404, "NotFound", "The requested resource was not found.")
