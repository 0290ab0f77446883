"""The simulated Microsoft cloud, driven over real HTTPS the way the bot drives Microsoft."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msal
import pytest
import requests

from simulator.microsoft.graph_data import GLOBAL_ADMINISTRATOR, MICROSOFT_TENANT_ID
from simulator.microsoft.server import MicrosoftSimulator, SimError, SimTenant
from simulator.tls import create_client_certificate

GA_FILTER = f"$filter=roleDefinitionId eq '{GLOBAL_ADMINISTRATOR}'&$expand=principal"


class FakeClock:
    """A monotonic clock tests move by hand, so throttling windows pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[MicrosoftSimulator]:
    simulator = MicrosoftSimulator(clock=clock)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http(sim: MicrosoftSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=sim.ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


class Graph:
    """A thin test client: Graph calls with a token from the simulated token endpoint."""

    def __init__(self, sim: MicrosoftSimulator, http: aiohttp.ClientSession, token: str):
        self.sim, self.http, self.token = sim, http, token

    async def call(
        self, method: str, path: str, body: Any = None, *, version: str = "v1.0"
    ) -> tuple[int, dict[str, Any], Any]:
        url = path if path.startswith("https://") else f"{self.sim.base_url}/{version}{path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, url, json=body, headers=headers) as resp:
            data = await resp.json() if resp.status != 204 else None
            return resp.status, dict(resp.headers), data

    async def batch(
        self, requests_: list[dict[str, Any]], *, version: str = "v1.0"
    ) -> tuple[int, Any]:
        status, _, data = await self.call(
            "POST", "/$batch", {"requests": requests_}, version=version
        )
        return status, data


async def token_for(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession, tenant: SimTenant, secret: str = ""
) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant.client_id,
        "client_secret": secret or tenant.client_secret,
        "scope": f"{sim.base_url}/.default",
    }
    async with http.post(f"{sim.base_url}/{tenant.tenant_id}/oauth2/v2.0/token", data=form) as r:
        return r.status, await r.json()


async def graph_for(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession, tenant: SimTenant
) -> Graph:
    status, body = await token_for(sim, http, tenant)
    assert status == 200, body
    return Graph(sim, http, body["access_token"])


async def openid(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession, tenant_id: str
) -> tuple[int, dict[str, Any]]:
    url = f"{sim.base_url}/{tenant_id}/v2.0/.well-known/openid-configuration"
    async with http.get(url) as resp:
        return resp.status, await resp.json()


def msal_token(sim: MicrosoftSimulator, tenant: SimTenant, credential: Any) -> dict[str, Any]:
    session = requests.Session()
    session.trust_env = False
    session.verify = sim.ca_file
    try:
        app = msal.ConfidentialClientApplication(
            tenant.client_id,
            client_credential=credential,
            authority=f"{sim.base_url}/{tenant.tenant_id}",
            instance_discovery=False,
            http_client=session,
        )
        result: dict[str, Any] = app.acquire_token_for_client([f"{sim.base_url}/.default"])
        return result
    finally:
        session.close()


def retained_id(tenant: SimTenant) -> str:
    user = tenant.retained_user
    assert user is not None
    return str(user["id"])


def deletes(ids: list[str], start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": str(start + n), "method": "DELETE", "url": f"/users/{user_id}"}
        for n, user_id in enumerate(ids)
    ]


# -- authority ---------------------------------------------------------------------------------


async def test_msal_gets_a_token_over_tls_that_graph_accepts(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """MSAL, trusting only the simulator's CA, discovers the tenant and gets a working token."""
    tenant = sim.add_tenant(name="contoso", users=5)
    result = await asyncio.to_thread(msal_token, sim, tenant, tenant.client_secret)
    assert "access_token" in result, result
    status, _, org = await Graph(sim, http, result["access_token"]).call(
        "GET", "/organization?$select=id,onPremisesSyncEnabled"
    )
    assert status == 200
    assert org["value"] == [{"id": tenant.tenant_id, "onPremisesSyncEnabled": None}]


async def test_msal_certificate_credential_is_verified(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """A client assertion signed by the registered certificate gets a token; another does not."""
    key, cert = create_client_certificate()
    tenant = sim.add_tenant(name="fabrikam", users=3, client_certificate=cert)
    good = {"private_key": key.decode(), "public_certificate": cert.decode()}
    result = await asyncio.to_thread(msal_token, sim, tenant, good)
    assert "access_token" in result, result
    other_key, other_cert = create_client_certificate()
    for forged in (
        {"private_key": other_key.decode(), "public_certificate": other_cert.decode()},
        {"private_key": other_key.decode(), "public_certificate": cert.decode()},
    ):
        result = await asyncio.to_thread(msal_token, sim, tenant, forged)
        assert result["error"] == "invalid_client" and result["error_codes"] == [700027]


async def test_unknown_tenant_discovery_answers_90002(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """OpenID discovery for a tenant that does not exist is a 400 with AADSTS90002."""
    status, body = await openid(sim, http, "00000000-0000-0000-0000-000000000001")
    assert status == 400
    assert body["error"] == "invalid_tenant" and body["error_codes"] == [90002]
    assert body["error_description"].startswith("AADSTS90002: Tenant '")


async def test_discovery_resolves_a_tenant_by_domain_name(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """The authority accepts a tenant's domain in place of its id, as Entra does."""
    tenant = sim.add_tenant(name="contoso", users=3)
    status, body = await openid(sim, http, "contoso.onmicrosoft.com")
    assert status == 200
    assert body["token_endpoint"] == f"{sim.base_url}/{tenant.tenant_id}/oauth2/v2.0/token"


async def test_wrong_secret_is_invalid_client(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """A wrong client secret is refused with 401 invalid_client and AADSTS7000215."""
    tenant = sim.add_tenant(name="contoso", users=3)
    status, body = await token_for(sim, http, tenant, secret="not-the-secret")
    assert status == 401
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000215]


async def test_graph_refuses_missing_and_expired_tokens(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Graph answers 401 InvalidAuthenticationToken without a token and once it has expired."""
    tenant = sim.add_tenant(name="contoso", users=3)
    graph = await graph_for(sim, http, tenant)
    async with http.get(f"{sim.base_url}/v1.0/users") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "InvalidAuthenticationToken"
    assert (await graph.call("GET", "/users"))[0] == 200
    sim.expire_tokens()
    status, _, body = await graph.call("GET", "/users")
    assert status == 401 and "expired" in body["error"]["message"]
    sim.token_lifetime = 0
    status, body = await token_for(sim, http, tenant)
    assert body["expires_in"] == 0
    assert (await Graph(sim, http, body["access_token"]).call("GET", "/users"))[0] == 401


# -- reading the directory ---------------------------------------------------------------------


async def test_users_page_through_absolute_next_links(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Listing users pages with absolute @odata.nextLink URLs and returns everyone exactly once."""
    tenant = sim.add_tenant(name="contoso", users=250, guests=20)
    graph = await graph_for(sim, http, tenant)
    url = "/users?$select=id,userPrincipalName,userType,onPremisesSyncEnabled&$top=100"
    seen: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        status, _, body = await graph.call("GET", next_url)
        assert status == 200
        assert body["@odata.context"].endswith(
            "#users(id,userPrincipalName,userType,onPremisesSyncEnabled)"
        )
        seen += [u["id"] for u in body["value"]]
        next_url = body.get("@odata.nextLink")
        assert next_url is None or next_url.startswith(f"{sim.base_url}/v1.0/users?")
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(tenant.users) and len(seen) == 250
    assert sum(u["userType"] == "Guest" for u in tenant.users.values()) == 20


async def test_query_options_are_as_strict_as_graph(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """$top above 999, unknown $select properties, unknown versions and segments are 400s."""
    tenant = sim.add_tenant(name="contoso", users=3)
    graph = await graph_for(sim, http, tenant)
    status, _, body = await graph.call("GET", "/users?$top=1000")
    assert status == 400 and "between 1 and 999" in body["error"]["message"]
    status, _, body = await graph.call("GET", "/users?$select=id,shoeSize")
    assert status == 400 and "shoeSize" in body["error"]["message"]
    status, _, body = await graph.call("GET", "/users", version="v2.0")
    assert status == 400 and body["error"]["message"] == "Invalid version: v2.0"
    status, _, body = await graph.call("GET", "/tenants")
    assert status == 400
    assert body["error"]["message"] == "Resource not found for the segment 'tenants'."
    assert set(body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    status, _, body = await graph.call("GET", "/users")
    assert status == 200 and "userType" not in body["value"][0]


async def test_global_admin_assignments_expand_their_principal(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """The role-assignment filter finds the retained Global Administrator with its principal."""
    tenant = sim.add_tenant(name="contoso", users=10)
    graph = await graph_for(sim, http, tenant)
    status, _, body = await graph.call(
        "GET", f"/roleManagement/directory/roleAssignments?{GA_FILTER}"
    )
    assert status == 200
    upns = {a["principal"]["userPrincipalName"] for a in body["value"]}
    assert tenant.retained_upn in upns
    assert all(a["roleDefinitionId"] == GLOBAL_ADMINISTRATOR for a in body["value"])
    assert all(a["principal"]["@odata.type"] == "#microsoft.graph.user" for a in body["value"])


async def test_service_principals_filter_by_app_id(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """`$filter=appId eq '...'` returns the bot's own service principal and nothing else."""
    tenant = sim.add_tenant(name="contoso", users=3)
    graph = await graph_for(sim, http, tenant)
    status, _, body = await graph.call(
        "GET", f"/servicePrincipals?$filter=appId eq '{tenant.client_id}'"
    )
    assert status == 200
    assert [sp["appId"] for sp in body["value"]] == [tenant.client_id]


# -- $batch ------------------------------------------------------------------------------------


async def test_batch_limits_and_validation(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """A batch of more than 20 requests, or a write without Content-Type, is refused whole."""
    tenant = sim.add_tenant(name="contoso", users=30)
    graph = await graph_for(sim, http, tenant)
    others = [u for u in tenant.users if u != retained_id(tenant)]
    status, body = await graph.batch(deletes(others[:21]))
    assert status == 400 and "20" in body["error"]["message"]
    assert len(tenant.users) == 30
    patch = {
        "id": "1",
        "method": "PATCH",
        "url": "/policies/identitySecurityDefaultsEnforcementPolicy",
        "body": {"isEnabled": False},
    }
    status, body = await graph.batch([patch])
    assert status == 400 and "Content-Type" in body["error"]["message"]


async def test_batch_dependencies_fail_with_424(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """A sub-request that depends on a failed one answers 424; unknown dependencies are 400."""
    tenant = sim.add_tenant(name="contoso", users=3)
    graph = await graph_for(sim, http, tenant)
    missing = {"id": "a", "method": "DELETE", "url": "/users/00000000-0000-0000-0000-00000000beef"}
    domains = {"id": "b", "method": "GET", "url": "/domains", "dependsOn": ["a"]}
    status, body = await graph.batch([missing, domains])
    assert status == 200
    assert [r["status"] for r in body["responses"]] == [404, 424]
    status, body = await graph.batch([{**domains, "dependsOn": ["z"]}])
    assert status == 400


async def test_batch_sub_requests_are_throttled_on_their_own(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """A 200 batch can carry a 429 sub-response with its own Retry-After next to 204s."""
    tenant = sim.add_tenant(
        name="contoso",
        users=10,
        app_directory_roles=frozenset({"Privileged Authentication Administrator"}),
    )
    graph = await graph_for(sim, http, tenant)
    targets = [u for u in tenant.users if not tenant.roles.get(u)][:3]
    sim.faults.throttle(1, path_prefix=f"/v1.0/users/{targets[1]}", retry_after=0.25)
    status, body = await graph.batch(deletes(targets))
    assert status == 200
    by_id = {r["id"]: r for r in body["responses"]}
    assert [by_id[i]["status"] for i in "012"] == [204, 429, 204]
    assert by_id["1"]["headers"]["Retry-After"] == "0.25"
    assert by_id["1"]["body"]["error"]["code"] == "TooManyRequests"
    subs = [r for r in sim.requests if r.batch]
    assert [r.status for r in subs] == [204, 429, 204]
    assert subs[1].path == f"/v1.0/users/{targets[1]}"


async def test_beta_paths_work_only_in_a_beta_batch(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Per-user MFA requirements resolve in a beta batch and fail in a v1.0 one."""
    tenant = sim.add_tenant(name="contoso", users=5)
    graph = await graph_for(sim, http, tenant)
    user_id = next(iter(tenant.users))
    item = {"id": "1", "method": "GET", "url": f"/users/{user_id}/authentication/requirements"}
    status, body = await graph.batch([item])
    assert status == 200 and body["responses"][0]["status"] == 400
    status, body = await graph.batch([item], version="beta")
    assert body["responses"][0]["status"] == 200
    assert body["responses"][0]["body"]["perUserMfaState"] == tenant.per_user_mfa[user_id]
    patch = {
        **item,
        "method": "PATCH",
        "body": {"perUserMfaState": "disabled"},
        "headers": {"Content-Type": "application/json"},
    }
    status, body = await graph.batch([patch], version="beta")
    assert body["responses"][0]["status"] == 204
    assert tenant.per_user_mfa[user_id] == "disabled"


# -- throttling and faults ---------------------------------------------------------------------


async def test_write_budget_answers_429_with_the_real_wait(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Past the write budget Graph answers 429 with Retry-After and the limit percentage."""
    tenant = sim.add_tenant(name="contoso", users=20)
    tenant.write_budget = (5, 10.0)
    graph = await graph_for(sim, http, tenant)
    targets = [u for u in tenant.users if not tenant.roles.get(u)]
    for n, user_id in enumerate(targets[:5]):
        clock.now += 1
        status, headers, _ = await graph.call("DELETE", f"/users/{user_id}")
        assert status == 204
        assert ("x-ms-throttle-limit-percentage" in headers) == (n == 4)
    status, headers, body = await graph.call("DELETE", f"/users/{targets[5]}")
    assert status == 429 and body["error"]["code"] == "TooManyRequests"
    assert float(headers["Retry-After"]) == pytest.approx(6.0)
    assert float(headers["x-ms-throttle-limit-percentage"]) > 1.0
    clock.now += 6
    assert (await graph.call("DELETE", f"/users/{targets[5]}"))[0] == 204


async def test_listing_users_spends_read_resource_units(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """GET /users costs 2 resource units, 1 with $select, against the read budget."""
    tenant = sim.add_tenant(name="contoso", users=5)
    tenant.read_budget = (5, 10.0)
    graph = await graph_for(sim, http, tenant)
    assert (await graph.call("GET", "/users"))[0] == 200
    assert (await graph.call("GET", "/users"))[0] == 200
    assert (await graph.call("GET", "/users"))[0] == 429
    assert (await graph.call("GET", "/users?$select=id"))[0] == 200
    clock.now += 10
    assert (await graph.call("GET", "/users"))[0] == 200


async def test_conditional_access_allows_one_request_per_second_without_retry_after(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Conditional access answers a second request within a second 429 with no Retry-After."""
    tenant = sim.add_tenant(name="contoso", users=5)
    graph = await graph_for(sim, http, tenant)
    status, _, body = await graph.call("GET", "/identity/conditionalAccess/policies")
    assert status == 200
    mfa = [p for p in body["value"] if "mfa" in p["grantControls"]["builtInControls"]]
    assert {p["state"] for p in mfa} == {"enabled", "enabledForReportingButNotEnforced", "disabled"}
    target = next(p["id"] for p in mfa if p["state"] == "enabled")
    path = f"/identity/conditionalAccess/policies/{target}"
    status, headers, body = await graph.call("PATCH", path, {"state": "disabled"})
    assert status == 429 and "Retry-After" not in headers
    clock.now += 1
    assert (await graph.call("PATCH", path, {"state": "disabled"}))[0] == 204
    assert tenant.ca_policies[target]["state"] == "disabled"


async def test_injected_errors_and_dropped_connections(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Faults make the next matching calls fail with 503 or lose their connection."""
    tenant = sim.add_tenant(name="contoso", users=5)
    graph = await graph_for(sim, http, tenant)
    sim.faults.error(503, path_prefix="/v1.0/domains")
    assert (await graph.call("GET", "/organization"))[0] == 200
    assert (await graph.call("GET", "/domains"))[0] == 503
    assert (await graph.call("GET", "/domains"))[0] == 200
    sim.faults.drop(1, method="POST")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await graph.batch([{"id": "1", "method": "GET", "url": "/domains"}])
    assert sim.requests[-1].status == 0
    sim.faults.throttle(1, retry_after=None)
    status, headers, _ = await graph.call("GET", "/domains")
    assert status == 429 and "Retry-After" not in headers


# -- deleting --------------------------------------------------------------------------------


async def test_deleted_users_need_the_cast_and_can_be_restored_or_purged(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Deleted users are listed only through the user cast, restorable until purged."""
    tenant = sim.add_tenant(name="contoso", users=5)
    graph = await graph_for(sim, http, tenant)
    first, second = [u for u in tenant.users if not tenant.roles.get(u)][:2]
    upn = tenant.users[first]["userPrincipalName"]
    for user_id in (first, second):
        assert (await graph.call("DELETE", f"/users/{user_id}"))[0] == 204
    assert (await graph.call("DELETE", f"/users/{first}"))[0] == 404
    status, _, body = await graph.call("GET", "/directory/deletedItems")
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    status, _, body = await graph.call("GET", "/directory/deletedItems/microsoft.graph.user")
    assert status == 200 and {u["id"] for u in body["value"]} == {first, second}
    status, _, body = await graph.call("POST", f"/directory/deletedItems/{first}/restore")
    assert status == 200 and body["userPrincipalName"] == upn
    assert first in tenant.users
    assert (await graph.call("DELETE", f"/directory/deletedItems/{second}"))[0] == 204
    assert (await graph.call("POST", f"/directory/deletedItems/{second}/restore"))[0] == 404
    assert not tenant.deleted_users


async def test_deleting_an_admin_needs_a_privileged_directory_role(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Without Privileged Authentication Administrator the app cannot delete an administrator."""
    tenant = sim.add_tenant(name="contoso", users=10, app_directory_roles=frozenset())
    graph = await graph_for(sim, http, tenant)
    admin = next(u for u in tenant.users if tenant.roles.get(u) and u != retained_id(tenant))
    plain = next(u for u in tenant.users if not tenant.roles.get(u))
    status, _, body = await graph.call("DELETE", f"/users/{admin}")
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    assert (await graph.call("DELETE", f"/users/{plain}"))[0] == 204


async def test_synced_users_cannot_be_deleted_until_sync_is_off(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """With directory sync on, synced users refuse deletion; turning sync off frees them."""
    tenant = sim.add_tenant(name="contoso", users=10, sync_enabled=True)
    graph = await graph_for(sim, http, tenant)
    synced = next(u for u, v in tenant.users.items() if v["onPremisesSyncEnabled"])
    assert (await graph.call("DELETE", f"/users/{synced}"))[0] == 400
    async with http.post(
        f"{sim.base_url}/_sim/tenants/{tenant.tenant_id}/sync", json={"enabled": False}
    ) as resp:
        assert resp.status == 200
    _, _, org = await graph.call("GET", "/organization?$select=id,onPremisesSyncEnabled")
    assert org["value"][0]["onPremisesSyncEnabled"] is False
    assert (await graph.call("DELETE", f"/users/{synced}"))[0] == 204


async def test_subscriptions_cancel_delete_and_deprovision(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Only a cancelled subscription can be deleted, and it disappears about 72 hours later."""
    tenant = sim.add_tenant(name="contoso", users=5)
    graph = await graph_for(sim, http, tenant)
    _, _, body = await graph.call("GET", "/directory/subscriptions")
    assert [s["status"] for s in body["value"]] == ["Enabled"] * 3
    assert sum(s["ownerTenantId"] != tenant.tenant_id for s in body["value"]) == 1
    sub = body["value"][0]["id"]
    admin = f"{sim.base_url}/_sim/tenants/{tenant.tenant_id}"
    async with http.post(f"{admin}/subscriptions/{sub}/delete") as resp:
        assert resp.status == 409 and (await resp.json())["reasons"]
    async with http.post(f"{admin}/subscriptions/{sub}/cancel") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "Suspended"
    async with http.post(f"{admin}/subscriptions/{sub}/delete") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "Deleted"
    tenant.advance(71 * 3600)
    assert tenant.find_subscription(sub) is not None
    async with http.post(f"{admin}/advance", json={"seconds": 3600}) as resp:
        assert resp.status == 200
    _, _, body = await graph.call("GET", "/directory/subscriptions")
    assert sub not in {s["id"] for s in body["value"]}


async def test_directory_deletion_checks_preconditions_then_the_tenant_is_gone(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Delete tenant lists every blocker; once cleared the tenant answers 90002 and Graph 401."""
    tenant = sim.add_tenant(name="contoso", users=8, custom_domains=2)
    graph = await graph_for(sim, http, tenant)
    admin = f"{sim.base_url}/_sim/tenants/{tenant.tenant_id}"
    async with http.post(f"{admin}/delete") as resp:
        assert resp.status == 409
        # users, subscriptions, apps, SPs, an enterprise app that cannot be deleted (enabled)
        assert len((await resp.json())["reasons"]) == 5
    others = [u for u in tenant.users if u != retained_id(tenant)]
    _, body = await graph.batch(deletes(others))
    assert {r["status"] for r in body["responses"]} == {204}
    for sub in tenant.subscriptions:
        tenant.cancel_subscription(sub["id"])
        tenant.delete_subscription(sub["id"])
    assert any("deleted users" in reason for reason in tenant.deletion_blockers())
    _, _, body = await graph.call("GET", "/directory/deletedItems/microsoft.graph.user?$select=id")
    purge = [
        {"id": str(n), "method": "DELETE", "url": f"/directory/deletedItems/{u['id']}"}
        for n, u in enumerate(body["value"])
    ]
    _, body = await graph.batch(purge)
    assert {r["status"] for r in body["responses"]} == {204}
    _, _, sps = await graph.call("GET", "/servicePrincipals?$top=999")
    for sp in sps["value"]:
        if sp["appId"] == tenant.client_id:
            continue
        status, _, _ = await graph.call("DELETE", f"/servicePrincipals/{sp['id']}")
        microsoft = sp["appOwnerOrganizationId"] == MICROSOFT_TENANT_ID
        undeletable = sp["id"] in tenant.undeletable_sps
        assert status == (403 if microsoft or undeletable else 204)
        if undeletable:  # disabled instead (directory-delete-howto.md)
            patch = {"accountEnabled": False}
            assert (await graph.call("PATCH", f"/servicePrincipals/{sp['id']}", patch))[0] == 204
    # Deleted service principals wait in the recycle bin until purged (directory-deleteditems-*).
    _, _, binned = await graph.call(
        "GET", "/directory/deletedItems/microsoft.graph.servicePrincipal"
    )
    assert binned["value"]
    for sp in binned["value"]:
        assert (await graph.call("DELETE", f"/directory/deletedItems/{sp['id']}"))[0] == 204
    _, _, apps = await graph.call("GET", "/applications")
    bot_app = next(a["id"] for a in apps["value"] if a["appId"] == tenant.client_id)
    for app in apps["value"]:
        if app["id"] != bot_app:
            assert (await graph.call("DELETE", f"/applications/{app['id']}"))[0] == 204
            purge = f"/directory/deletedItems/{app['id']}"
            assert (await graph.call("DELETE", purge))[0] == 204
    with pytest.raises(SimError) as refused:
        tenant.delete_tenant()
    assert len(refused.value.reasons) == 2  # the bot's app and its service principal
    assert (await graph.call("DELETE", f"/applications/{bot_app}"))[0] == 204
    status, _, body = await graph.call("GET", "/users")
    assert status == 401 and body["error"]["code"] == "Authorization_IdentityNotFound"
    status, body = await token_for(sim, http, tenant)
    assert status == 400 and body["error_codes"] == [700016]
    assert (await openid(sim, http, tenant.tenant_id))[0] == 200
    async with http.post(f"{admin}/delete") as resp:
        assert resp.status == 409  # the bot's deleted application is still in the recycle bin
    async with http.post(f"{admin}/purge-application", json={"id": bot_app}) as resp:
        assert resp.status == 200
    async with http.post(f"{admin}/delete") as resp:
        assert resp.status == 200 and (await resp.json())["deleted"] is True
    status, body = await openid(sim, http, tenant.tenant_id)
    assert status == 400 and body["error_codes"] == [90002]
    status, body = await token_for(sim, http, tenant)
    assert status == 400 and body["error_codes"] == [90002]


async def test_hold_writes_freezes_writes_until_release(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """After N successful writes further writes wait at the gate; release lets them through."""
    tenant = sim.add_tenant(name="contoso", users=10)
    graph = await graph_for(sim, http, tenant)
    targets = [u for u in tenant.users if not tenant.roles.get(u)][:5]
    sim.hold_writes(after=2)
    task = asyncio.create_task(graph.batch(deletes(targets)))
    async with asyncio.timeout(5):  # a failure, not a hang, if the gate never holds
        await sim.writes_held()
    assert sim.held_writes == 1
    assert sum(u in tenant.deleted_users for u in targets) == 2
    assert (await graph.call("GET", "/users?$select=id"))[0] == 200  # reads still flow
    sim.release_writes()
    status, body = await task
    assert status == 200 and {r["status"] for r in body["responses"]} == {204}
    assert all(u in tenant.deleted_users for u in targets)


async def test_security_defaults_and_control_surface_summary(
    sim: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Security defaults switch off by PATCH and the admin summary counts what is left."""
    tenant = sim.add_tenant(name="contoso", users=12, guests=2)
    graph = await graph_for(sim, http, tenant)
    path = "/policies/identitySecurityDefaultsEnforcementPolicy"
    assert (await graph.call("GET", path))[2]["isEnabled"] is True
    assert (await graph.call("PATCH", path, {"isEnabled": False}))[0] == 204
    assert (await graph.call("PATCH", path, {"isEnabled": "no"}))[0] == 400
    assert (await graph.call("GET", path))[2]["isEnabled"] is False
    async with http.get(f"{sim.base_url}/_sim/tenants/{tenant.tenant_id}") as resp:
        summary = await resp.json()
    assert summary["users"] == 12 and summary["guests"] == 2
    assert summary["security_defaults_enabled"] is False
    assert summary["subscription_counts"]["Enabled"] == 3


def test_time_scale_compresses_budgets_and_tenant_clocks(clock: FakeClock) -> None:
    """time_scale shortens the throttling windows and runs tenant clocks that much faster."""
    sim = MicrosoftSimulator(time_scale=1000, clock=clock)
    tenant = sim.add_tenant(name="contoso", users=100)
    assert sim.throttler.budgets(tenant) == ((5000, 0.01), (3000, 0.15))
    before = tenant.now()
    clock.now += 3.6
    assert (tenant.now() - before).total_seconds() == pytest.approx(3600)
    tenant.write_budget = (10, 1.0)
    assert sim.throttler.budgets(tenant)[1] == (10, 1.0)
