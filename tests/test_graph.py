"""The Graph client against the simulated tenant: paging, $batch, throttling, faults, tokens."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest

from bot.config import TenantSettings
from bot.microsoft.graph import BatchRequest, Graph, GraphError, Response
from bot.microsoft.pacing import WritePacer
from bot.microsoft.tokens import MsalTokens, TokenError
from simulator.microsoft.server import MicrosoftSimulator, SimTenant


@dataclass
class Env:
    sim: MicrosoftSimulator
    tenant: SimTenant
    graph: Graph
    tokens: MsalTokens


def settings_for(sim: MicrosoftSimulator, tenant: SimTenant, secret: str) -> TenantSettings:
    return TenantSettings(
        name=tenant.name,
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        retain=(tenant.retained_upn,),
        approvers=("U1", "U2"),
        quorum=1,
        quorum_by_step=MappingProxyType({}),
        cloud="global",
        authority_host=sim.base_url,
        graph_url=sim.base_url,
        client_secret_env="X",
        client_secret=secret,
        certificate_file=None,
    )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sim = MicrosoftSimulator(retry_after=0.01)
    tenant = sim.add_tenant(name="contoso", users=260)
    await sim.start()
    tokens = MsalTokens(settings_for(sim, tenant, tenant.client_secret), ca_bundle=sim.ca_file)
    async with aiohttp.ClientSession() as session:
        graph = Graph(
            session,
            graph_url=sim.base_url,
            tokens=tokens,
            ssl_context=ssl.create_default_context(cafile=sim.ca_file),
            backoff_base=0.01,
        )
        yield Env(sim, tenant, graph, tokens)
    tokens.close()
    await sim.stop()


def user_paths(env: Env, n: int) -> list[str]:
    ids = [
        u["id"]
        for u in env.tenant.users.values()
        if u["userPrincipalName"] != env.tenant.retained_upn
    ]
    return [f"/users/{i}" for i in ids[:n]]


async def test_paging_follows_next_link_to_the_end(env: Env) -> None:
    """get_all follows @odata.nextLink until every user is read."""
    users = await env.graph.get_all("/users?$select=id,userPrincipalName&$top=100")
    assert len(users) == len(env.tenant.users) == 260
    pages = [r for r in env.sim.requests if r.method == "GET" and "/users" in r.path]
    assert len(pages) == 3


async def test_batch_is_sent_in_chunks_of_twenty(env: Env) -> None:
    """45 deletes go as three $batch posts, and every user is gone."""
    paths = user_paths(env, 45)
    results = await env.graph.batch(
        [BatchRequest(str(i), "DELETE", p) for i, p in enumerate(paths)]
    )
    assert {r.status for r in results.values()} == {204}
    batches = [r for r in env.sim.requests if r.path.endswith("/$batch") and not r.batch]
    assert len(batches) == 3
    assert len(env.tenant.users) == 260 - 45


async def test_throttled_sub_requests_are_retried_after_retry_after(env: Env) -> None:
    """A 429 inside a 200 batch is retried on its own until it succeeds."""
    env.sim.faults.throttle(3, path_prefix="/v1.0/users/", method="DELETE")
    paths = user_paths(env, 10)
    results = await env.graph.batch(
        [BatchRequest(str(i), "DELETE", p) for i, p in enumerate(paths)]
    )
    assert all(r.status == 204 for r in results.values())
    subs = [r for r in env.sim.requests if r.batch and r.method == "DELETE"]
    assert sum(r.status == 429 for r in subs) == 3
    assert len(subs) == 13


async def test_repeated_delete_answered_404_is_done(env: Env) -> None:
    """Deleting an already deleted user reports 404, which the caller may treat as done."""
    path = user_paths(env, 1)[0]
    first = await env.graph.batch([BatchRequest("1", "DELETE", path)], ok_statuses=(404,))
    again = await env.graph.batch([BatchRequest("1", "DELETE", path)], ok_statuses=(404,))
    assert first["1"].status == 204 and again["1"].status == 404


async def test_5xx_and_dropped_connections_are_retried(env: Env) -> None:
    """503s and a dropped connection are retried with backoff, then the read succeeds."""
    env.sim.faults.error(503, 2, path_prefix="/v1.0/organization")
    env.sim.faults.drop(1, path_prefix="/v1.0/organization")
    body = await env.graph.get("/organization")
    assert body["value"][0]["id"] == env.tenant.tenant_id


async def test_429_without_retry_after_backs_off(env: Env) -> None:
    """A 429 with no Retry-After (conditional access) is retried with exponential backoff."""
    env.sim.faults.throttle(2, path_prefix="/v1.0/identity", retry_after=None)
    policies = await env.graph.get_all("/identity/conditionalAccess/policies")
    assert policies


async def test_retries_are_bounded(env: Env) -> None:
    """A fault that never clears ends in a GraphError after max_attempts."""
    env.sim.faults.error(500, 50, path_prefix="/v1.0/domains")
    with pytest.raises(GraphError) as info:
        await env.graph.get("/domains")
    assert info.value.status == 500
    tries = [r for r in env.sim.requests if r.path.startswith("/v1.0/domains")]
    assert len(tries) == env.graph.max_attempts


async def test_expired_token_is_refreshed_once(env: Env) -> None:
    """A token that expires mid-step is replaced and the call goes through."""
    await env.graph.get("/organization")
    env.sim.expire_tokens()
    body = await env.graph.get("/organization")
    assert body["value"]
    assert any(r.status == 401 for r in env.sim.requests)


async def test_wrong_secret_is_a_clear_token_error(env: Env, tmp_path: Path) -> None:
    """A wrong client secret surfaces Microsoft's error, never the secret."""
    bad = MsalTokens(settings_for(env.sim, env.tenant, "not-the-secret"), ca_bundle=env.sim.ca_file)
    try:
        with pytest.raises(TokenError) as info:
            await bad.token()
    finally:
        bad.close()
    assert "invalid_client" in str(info.value)
    assert "not-the-secret" not in str(info.value)


async def test_throttled_sub_requests_do_not_spend_attempts(env: Env) -> None:
    """Thirty 429s in a row on one sub-request, with max_attempts 3, still end in its delete:
    a 429 is not a failure."""
    env.graph.max_attempts = 3
    env.graph.pacer = WritePacer(((3000, 0.15),))  # compressed 1000x: its floor is 200/s
    env.sim.faults.throttle(30, path_prefix="/v1.0/users/", method="DELETE", retry_after=0.001)
    path = user_paths(env, 1)[0]
    results = await env.graph.batch([BatchRequest("1", "DELETE", path)])
    assert results["1"].status == 204
    assert env.graph.throttled == 30


async def test_real_errors_still_spend_attempts(env: Env) -> None:
    """A sub-request answered 503 every time is returned as it is after max_attempts tries."""
    env.graph.max_attempts = 3
    env.sim.faults.error(503, 50, path_prefix="/v1.0/users/", method="DELETE")
    path = user_paths(env, 1)[0]
    results = await env.graph.batch([BatchRequest("1", "DELETE", path)])
    assert results["1"].status == 503
    subs = [r for r in env.sim.requests if r.batch and r.method == "DELETE"]
    assert len(subs) == 3


async def test_nothing_admitted_for_the_bound_is_a_clear_error(env: Env) -> None:
    """When every answer is a 429 for give_up_after, the GraphError says Microsoft admitted
    nothing for that long, for the thread."""
    env.graph.give_up_after = 0.3
    env.graph.pacer = WritePacer(((3000, 0.15),))  # compressed 1000x: its floor is 200/s
    env.sim.faults.throttle(10**6, path_prefix="/v1.0/users/", method="DELETE", retry_after=0.02)
    path = user_paths(env, 1)[0]
    with pytest.raises(GraphError) as info:
        await env.graph.batch([BatchRequest("1", "DELETE", path)])
    assert info.value.code == "throttledTooLong"
    assert "admitted none" in str(info.value) and "gives up" in str(info.value)


async def test_whole_request_429s_do_not_spend_attempts(env: Env) -> None:
    """Ten 429s on a single DELETE, with max_attempts 2, still end in the delete, and the pacer
    learns from them."""
    env.graph.max_attempts = 2
    env.graph.pacer = WritePacer(((3000, 0.15),))  # compressed 1000x
    env.sim.faults.throttle(10, path_prefix="/v1.0/users/", method="DELETE", retry_after=0.001)
    path = user_paths(env, 1)[0]
    resp = await env.graph.request("DELETE", path)
    assert resp.status == 204
    assert env.graph.pacer.learned_rate() < 20000.0


async def test_a_tenth_of_the_budget_finishes_and_is_learned() -> None:
    """With the simulator enforcing a tenth of the documented write budget (a token bucket,
    time compressed 100x), deleting 700 users finishes with every delete done, and the learned
    rate ends near the enforced 200 writes/s."""
    sim = MicrosoftSimulator(time_scale=100.0, retry_after=0.01)
    tenant = sim.add_tenant(name="contoso", users=701)
    policy = sim.throttler.policy(tenant)
    policy.model, policy.app = "bucket", (300, 1.5)
    await sim.start()
    tokens = MsalTokens(settings_for(sim, tenant, tenant.client_secret), ca_bundle=sim.ca_file)
    try:
        async with aiohttp.ClientSession() as session:
            pacer = WritePacer(((3000, 1.5),), ca_interval=0.01)
            graph = Graph(
                session,
                graph_url=sim.base_url,
                tokens=tokens,
                ssl_context=ssl.create_default_context(cafile=sim.ca_file),
                backoff_base=0.01,
                max_attempts=2,
                pacer=pacer,
            )
            env = Env(sim, tenant, graph, tokens)
            paths = user_paths(env, 700)
            results = await graph.batch(
                [BatchRequest(str(i), "DELETE", p) for i, p in enumerate(paths)]
            )
    finally:
        tokens.close()
        await sim.stop()
    assert {r.status for r in results.values()} == {204}
    assert len(tenant.users) == 1
    assert 100.0 <= pacer.learned_rate() <= 300.0


async def test_next_link_to_another_host_or_http_is_refused(env: Env) -> None:
    """An @odata.nextLink to another host, or to the Graph host over http, is a GraphError and
    no request (so no token) goes there."""
    host = env.sim.base_url.split("://", 1)[1]
    for link in (
        "https://graph.example.net/v1.0/users?$skiptoken=x",
        f"http://{host}/v1.0/users?$skiptoken=x",
    ):
        with pytest.raises(GraphError) as info:
            env.graph.url(link)
        assert info.value.code == "foreignLink"
    sent: list[str] = []

    async def page(method: str, url: str, body: object, force_refresh: bool) -> Response:
        sent.append(url)
        return Response(200, {"value": [{"id": "1"}], "@odata.nextLink": "https://evil.test/x"})

    env.graph._send = page  # type: ignore[method-assign]
    with pytest.raises(GraphError) as info:
        await env.graph.get_all("/users")
    assert info.value.code == "foreignLink" and "evil.test" in str(info.value)
    assert len(sent) == 1 and sent[0].startswith(env.sim.base_url)
