"""Partner Center in the simulator: the subscriptions a partner sold a customer, read and
cancelled (new commerce) or suspended (legacy) as Partner Center's developer docs describe.

Sources (MicrosoftDocs/partner-center-pr, mirrored in kvamseek/partner-center, developer/):
- cancel-an-azure-marketplace-subscription.md ("Cancel a commercial marketplace or new commerce
  subscription"): `PATCH /v1/customers/{customer}/subscriptions/{id}`; "A full Subscription
  resource is required in the request body", its status set to `deleted`; new commerce
  subscriptions "can be canceled within 7 days ... of purchase or renewal. After this window
  has passed ... the API will throw an error".
- suspend-a-subscription.md: the same PATCH with the full resource and status `suspended`,
  with `If-Match: <etag>`; how legacy (non-new-commerce) subscriptions are stopped.
- api-change-log.md: `CancellationAllowedUntilDate` on the Subscription resource, "Only
  applicable to NCE" (new commerce).
- error-codes.md: the codes below (the body is `{"code", "description", "data", "source"}`).
- api-throttling-guidance.md ("API throttling guidance for partners calling Partner Center
  APIs"): both calls (get-a-subscription-by-id, manage-orders#manage-a-subscription) are in its
  table of throttled APIs; a throttled call is answered "HTTP/1.1 429 Too Many Requests" with a
  `Retry-After` header in seconds and the body `{"statusCode": 429, "message": "Rate limit is
  exceeded. Try again in 57 seconds."}`; the client waits Retry-After, retries, and if throttled
  again keeps backing off "until it succeeds". `PartnerCenterBook.throttle` models that.
  The docs say nothing of outages; `PartnerCenterBook.error` answers a bare 503 with no
  Retry-After (the strictest reading: the client has to choose its own backoff).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, body, headers

# error-codes.md
NOT_FOUND = 20003  # 404 "Subscription with ID {0} not found."
NO_RELATIONSHIP = 20002  # 403 "The partner ID {0} has no commerce relationship with ..."
DELETED_CANNOT_UPDATE = 2011  # 400 "Subscription with ID {0} and deleted status can't be ..."
ETAG_INVALID = 2055  # 400 "Etag is no longer valid"
INVALID_INPUT = 800002  # 400 "Invalid request input"
SUSPENDED_CANNOT_UPDATE = 800091  # 400 "Can't update a subscription with suspended status"
STATUS_CANNOT_UPDATE = 800096  # 400 "Can't update the status for this subscription"
WINDOW_PASSED = 900117  # 400 "You have passed your {0}-day cancellation window. ..."

# cancel-an-azure-marketplace-subscription.md: 7 days from purchase or renewal.
CANCELLATION_WINDOW = dt.timedelta(days=7)
STATUSES = ("active", "suspended", "deleted")
Kind = Literal["new_commerce", "legacy"]


def pc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PartnerTerms:
    """What Partner Center knows of one subscription beyond Graph's companySubscription."""

    kind: Kind
    term_start: dt.datetime  # the last purchase or renewal
    status: str = "active"
    version: int = 0  # bumped on every change; the etag

    @property
    def cancellable_until(self) -> dt.datetime | None:
        return self.term_start + CANCELLATION_WINDOW if self.kind == "new_commerce" else None


def error(status: int, code: int, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "description": description, "data": [], "source": "PartnerAPIs"}


@dataclass
class PartnerFault:
    """The next `count` Partner Center calls (of `method`, or any) answer `status`."""

    status: int
    count: int
    method: str | None
    retry_after: float | None

    def answer(self) -> Answer:
        if self.status == 429:
            # api-throttling-guidance.md, "Error code response"
            assert self.retry_after is not None
            seconds = f"{self.retry_after:g}"
            body = {
                "statusCode": 429,
                "message": f"Rate limit is exceeded. Try again in {seconds} seconds.",
            }
            return 429, body, {"Retry-After": seconds}
        return self.status, {"statusCode": self.status, "message": "Service Unavailable"}, {}


class PartnerCenterBook:
    """A customer tenant's subscriptions as Partner Center sees them, keyed by the Graph
    subscription's commerceSubscriptionId. Default: new commerce, monthly, renewed two days
    ago, so inside its cancellation window; tests change `terms(...)`."""

    def __init__(self) -> None:
        self._terms: dict[str, PartnerTerms] = {}
        self._faults: list[PartnerFault] = []

    def throttle(
        self, count: int = 1, *, retry_after: float = 57.0, method: str | None = None
    ) -> None:
        """The next `count` calls (GET or PATCH, or only `method`) are throttled: 429 with
        Retry-After `retry_after` seconds, as api-throttling-guidance.md shows (57 there)."""
        self._faults.append(PartnerFault(429, count, method, retry_after))

    def error(self, status: int = 503, count: int = 1, *, method: str | None = None) -> None:
        """The next `count` calls (or only `method`'s) fail with `status`, no Retry-After."""
        self._faults.append(PartnerFault(status, count, method, None))

    def recover(self) -> None:
        """Partner Center answers normally again: pending throttling and errors are dropped."""
        self._faults.clear()

    def take_fault(self, method: str) -> Answer | None:
        """The injected answer for this call, if one is pending (the server asks first)."""
        for fault in self._faults:
            if fault.method is None or fault.method.upper() == method.upper():
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault.answer()
        return None

    def terms(self, tenant: Any, sub: dict[str, Any]) -> PartnerTerms:
        key = str(sub["commerceSubscriptionId"])
        if key not in self._terms:
            self._terms[key] = PartnerTerms("new_commerce", tenant.now() - dt.timedelta(days=2))
        return self._terms[key]

    def set_terms(
        self, tenant: Any, sub_id: str, *, kind: Kind, term_start: dt.datetime | None = None
    ) -> PartnerTerms:
        """Make a subscription (Graph id or commerce id) legacy or new commerce, its term
        starting at `term_start` (default: now, so a new-commerce one is cancellable)."""
        sub = find(tenant, sub_id)
        if sub is None:
            raise ValueError(f"no subscription {sub_id}")
        terms = self.terms(tenant, sub)
        terms.kind = kind
        terms.term_start = term_start or tenant.now()
        terms.version += 1
        return terms


def find(tenant: Any, sub_id: str) -> dict[str, Any] | None:
    return next(
        (s for s in tenant.subscriptions if sub_id in (s.get("commerceSubscriptionId"), s["id"])),
        None,
    )


def etag_of(sid: str, terms: PartnerTerms) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sid}:{terms.version}"))


def resource(tenant: Any, sub: dict[str, Any], *, links: bool = True) -> dict[str, Any]:
    """The Subscription resource as GET returns it (subscription-resources.md's fields)."""
    terms = tenant.partner_center.terms(tenant, sub)
    sid = str(sub["commerceSubscriptionId"])
    new = terms.kind == "new_commerce"
    body: dict[str, Any] = {
        "id": sid,
        # new commerce offers are product:sku:availability; legacy ones a GUID
        "offerId": f"CFQ7TTC0LH18:0001:{sid[:8].upper()}" if new else sid.upper(),
        "offerName": str(sub.get("skuPartNumber")),
        "friendlyName": str(sub.get("skuPartNumber")),
        "quantity": sub.get("totalLicenses", 0),
        "unitType": "Licenses",
        "creationDate": sub.get("createdDateTime"),
        "effectiveStartDate": pc_iso(terms.term_start),
        "commitmentEndDate": pc_iso(terms.term_start + dt.timedelta(days=30)),
        "status": terms.status,
        "autoRenewEnabled": terms.status == "active",
        "isTrial": bool(sub.get("isTrial")),
        "billingType": "license",
        "billingCycle": "monthly",
        "termDuration": "P1M",
        "contractType": "subscription",
        "attributes": {"etag": etag_of(sid, terms), "objectType": "Subscription"},
    }
    until = terms.cancellable_until
    if until is not None:
        body["cancellationAllowedUntilDate"] = pc_iso(until)
    if links:
        body["links"] = {
            "self": {
                "uri": f"/customers/{tenant.tenant_id}/subscriptions/{sid}",
                "method": "GET",
                "headers": [],
            }
        }
    return body


def _owned(
    tenant: Any, partner_tenant_id: str, sub_id: str
) -> tuple[dict[str, Any] | None, tuple[int, dict[str, Any]] | None]:
    sub = find(tenant, sub_id)
    if sub is None:
        return None, error(404, NOT_FOUND, f"Subscription with ID {sub_id} not found.")
    if sub.get("ownerTenantId") != partner_tenant_id:
        return None, error(
            403,
            NO_RELATIONSHIP,
            f"The partner ID {partner_tenant_id} has no commerce relationship with the"
            f" customer ID {tenant.tenant_id}.",
        )
    return sub, None


def partner_get(tenant: Any, partner_tenant_id: str, sub_id: str) -> tuple[int, dict[str, Any]]:
    """`GET /v1/customers/{customer}/subscriptions/{id}` (get-a-subscription-by-id.md)."""
    sub, refused = _owned(tenant, partner_tenant_id, sub_id)
    if refused is not None:
        return refused
    assert sub is not None
    return 200, resource(tenant, sub)


def partner_patch(
    tenant: Any, partner_tenant_id: str, sub_id: str, body: Any, if_match: str | None
) -> tuple[int, dict[str, Any]]:
    """`PATCH /v1/customers/{customer}/subscriptions/{id}` with the whole resource, its status
    changed: new commerce to `deleted` inside the window, legacy to `suspended`."""
    sub, refused = _owned(tenant, partner_tenant_id, sub_id)
    if refused is not None:
        return refused
    assert sub is not None
    terms = tenant.partner_center.terms(tenant, sub)
    current = resource(tenant, sub, links=False)
    if not isinstance(body, dict):
        return error(400, INVALID_INPUT, "Invalid request input: a Subscription resource.")
    etag = current["attributes"]["etag"]
    attributes = body.get("attributes")
    sent = attributes.get("etag") if isinstance(attributes, dict) else None
    if (if_match is not None and if_match.strip('"') != etag) or (sent and sent != etag):
        return error(400, ETAG_INVALID, "Etag is no longer valid")
    # Strictest reading of "A full Subscription resource is required in the request body":
    # every field GET returns (links aside) present and unchanged, except status.
    wrong = sorted(
        k for k, v in current.items() if k not in ("status", "attributes") and body.get(k) != v
    )
    if wrong:
        return error(
            400,
            INVALID_INPUT,
            "Invalid request input: the body must be the full Subscription resource;"
            f" missing or changed: {', '.join(wrong)}.",
        )
    wanted = str(body.get("status", "")).lower()
    if wanted not in STATUSES:
        return error(400, INVALID_INPUT, f"Invalid request input: status '{body.get('status')}'.")
    if terms.status == "deleted":
        return error(
            400,
            DELETED_CANNOT_UPDATE,
            f"Subscription with ID {sub_id} and deleted status can't be updated.",
        )
    if wanted == terms.status == "suspended":
        return error(
            400, SUSPENDED_CANNOT_UPDATE, "Can't update a subscription with suspended status"
        )
    if wanted == "active" or (terms.kind == "new_commerce") != (wanted == "deleted"):
        # Legacy subscriptions are suspended (800063: "Use PATCH ... to suspend subscriptions");
        # new commerce ones are cancelled, status deleted. Anything else: refused.
        return error(400, STATUS_CANNOT_UPDATE, "Can't update the status for this subscription")
    until = terms.cancellable_until
    if until is not None and tenant.now() > until:
        return error(
            400,
            WINDOW_PASSED,
            f"You have passed your {CANCELLATION_WINDOW.days}-day cancellation window."
            " We are unable to cancel your purchase",
        )
    terms.status = wanted
    terms.version += 1
    sub["status"] = "Suspended"  # Graph shows it disabled: no longer Enabled or Warning
    return 200, resource(tenant, sub)
