"""Microsoft's permission tables: the simulator allows each Graph call the bot makes with the
call's least privileged Application permission and answers 403 without any accepted one; the
bot's REQUIRED_ROLES, the simulator's table and the README's table say the same."""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.doctor import REQUIRED_ROLES, Need
from simulator.microsoft import graph_api, permissions
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES
from simulator.microsoft.server import MicrosoftSimulator

README = Path(__file__).resolve().parent.parent / "README.md"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "organization/{id}"): {"onPremisesSyncEnabled": False},
    ("PATCH", "policies/identitySecurityDefaultsEnforcementPolicy"): {"isEnabled": False},
    ("PATCH", "identity/conditionalAccess/policies/{id}"): {"state": "disabled"},
    ("PATCH", "users/{id}/authentication/requirements"): {"perUserMfaState": "disabled"},
}


@pytest.fixture
async def sim() -> AsyncIterator[tuple[MicrosoftSimulator, aiohttp.ClientSession]]:
    async with MicrosoftSimulator() as ms:
        context = ssl.create_default_context(cafile=ms.ca_file)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            yield ms, http


async def call(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession, need: Need, roles: frozenset[str]
) -> tuple[int, Any]:
    """Make the call with a fresh tenant whose app holds exactly `roles`."""
    tenant = ms.add_tenant(name=f"t{uuid.uuid4().hex[:8]}", users=3, app_roles=roles)
    tenant.ca_interval = 0.0  # conditional access' 1 request/s is not what this pins
    ids = {
        "organization/{id}": tenant.tenant_id,
        "users/{id}": next(iter(tenant.users)),
        "users/{id}/authentication/requirements": next(iter(tenant.users)),
        "identity/conditionalAccess/policies/{id}": next(iter(tenant.ca_policies), "x"),
    }
    path = need.path.replace("{id}", ids.get(need.path, str(uuid.uuid4())))
    url = f"{ms.base_url}/{need.version}/{path}"
    headers = {"Authorization": f"Bearer {ms.access_token(tenant.tenant_id)}"}
    body = BODIES.get((need.method, need.path))
    async with http.request(need.method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None) if resp.status != 204 else None


async def test_least_privileged_permission_allows_each_call_and_none_is_403(
    sim: tuple[MicrosoftSimulator, aiohttp.ClientSession],
) -> None:
    """Each call the bot makes passes with only its least privileged permission(s), and is
    403 Authorization_RequestDenied with every other default permission but none it accepts."""
    ms, http = sim
    wrong: list[str] = []
    for need in REQUIRED_ROLES:
        status, _ = await call(ms, http, need, frozenset(need.least.split(" + ")))
        if status in (401, 403) or status >= 500:
            wrong.append(f"{need.call} with {need.least}: {status}")
        accepted = {role for alt in need.accepted for role in alt.split(" + ")}
        others = DEFAULT_APP_ROLES - accepted
        status, body = await call(ms, http, need, others)
        code = (body or {}).get("error", {}).get("code")
        if (status, code) != (403, "Authorization_RequestDenied"):
            wrong.append(f"{need.call} without {sorted(accepted)}: {status} {code}")
    assert wrong == []


async def test_delete_restore_alone_cannot_list_users(
    sim: tuple[MicrosoftSimulator, aiohttp.ClientSession],
) -> None:
    """User.DeleteRestore.All deletes users but does not list them (user-list.md)."""
    ms, http = sim
    only = frozenset({"User.DeleteRestore.All"})
    by_call = {n.call: n for n in REQUIRED_ROLES}
    assert (await call(ms, http, by_call["list users"], only))[0] == 403
    assert (await call(ms, http, by_call["delete users"], only))[0] == 204
    assert (await call(ms, http, by_call["list deleted users"], only))[0] == 200


def test_every_routed_call_has_a_documented_permission() -> None:
    """No Graph route of the simulator answers without an entry in the permission table,
    and every entry names the docs page it comes from."""
    missing = [
        f"{method} {version}/{path}"
        for path, versions, methods in graph_api._TABLE
        for version in versions
        for method in methods
        if permissions.lookup(method, version, path.split("/")) is None
    ]
    assert missing == []
    assert all(p.doc.endswith(".md") and "api-reference/" in p.doc for p in permissions.TABLE)


def test_required_roles_match_the_simulators_table() -> None:
    """check's REQUIRED_ROLES accepts, for each call, exactly what the simulator accepts."""
    for need in REQUIRED_ROLES:
        entry = permissions.lookup(need.method, need.version, need.path.split("/"))
        assert entry is not None, need.call
        assert entry.accepted == need.accepted, need.call


def readme_rows() -> list[tuple[str, str, tuple[str, ...]]]:
    """(step, call, accepted) from the README's permission table."""
    text = README.read_text()
    start = text.index("| step | call | least privileged | also allowed by |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        step, call, least, also = (c.strip() for c in line.strip("|").split("|"))
        accepted = (least, *([] if also == "none" else also.split(", ")))
        rows.append(
            (step, call.split(":")[0], tuple(re.sub(r"`", "", a).strip() for a in accepted))
        )
    return rows


def test_readme_table_says_what_required_roles_say() -> None:
    """The README's table lists every call of REQUIRED_ROLES with the same permissions."""
    assert readme_rows() == [(n.step, n.call, n.accepted) for n in REQUIRED_ROLES]
