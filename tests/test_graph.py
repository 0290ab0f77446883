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
from bot.microsoft.graph import BatchRequest, Graph, GraphError
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
