"""Step 4 finds every policy that requires MFA (a built-in control or an authentication
strength), says why each changes, and leaves the retained administrator's MFA as it is."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.microsoft import tenant as ms
from bot.microsoft.steps import disable_mfa
from bot.microsoft.steps.base import StepContext
from bot.microsoft.steps.disable_mfa import requires_mfa
from bot.world import World
from simulator.microsoft.graph_settings import add_strength_policy
from tests.conftest import MakeWorld


def policy(builtin: list[str], strength: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"grantControls": {"builtInControls": builtin, "authenticationStrength": strength}}


def test_requires_mfa_reads_both_grant_controls() -> None:
    """A policy requires MFA through the built-in `mfa` control or an authentication strength;
    one with neither (block) does not."""
    assert requires_mfa(policy(["mfa"])) == "requires MFA"
    strong = requires_mfa(policy([], {"id": "x", "displayName": "Phishing-resistant MFA"}))
    assert strong == "requires the authentication strength Phishing-resistant MFA"
    assert requires_mfa(policy(["block"])) is None
    assert requires_mfa({"grantControls": None}) is None


def retained_id(world: World) -> str:
    upn = world.tenant.retained_upn.lower()
    return next(u["id"] for u in world.tenant.users.values() if u["userPrincipalName"] == upn)


async def test_step_4_disables_strength_policies_and_spares_the_retained_admin(
    make_world: MakeWorld,
) -> None:
    """A policy requiring an authentication strength (no `mfa` control) is in step 4's plan
    with its reason and is disabled; the retained admin's per-user MFA stays on, as the
    close-your-account page says."""
    world = await make_world(users=10)
    strength = add_strength_policy(world.tenant, "Admins: phishing-resistant sign-in")
    custom = add_strength_policy(
        world.tenant,
        "Report-only strength",
        state="enabledForReportingButNotEnforced",
        strength="11111111-2222-3333-4444-555555555555",
    )
    off = add_strength_policy(world.tenant, "Retired strength", state="disabled")
    admin = retained_id(world)
    world.tenant.per_user_mfa[admin] = "enforced"
    other = next(u for u in world.tenant.users if u != admin)
    world.tenant.per_user_mfa[other] = "enabled"
    world.script_approvers()
    world.script_admin()
    await world.command(world.tenant.name)
    assert await world.wait_state("closed", "disable_mfa.failed", timeout=90) == "closed"
    policies = world.tenant.ca_policies
    assert policies[strength]["state"] == "disabled"
    assert policies[custom]["state"] == "disabled"
    assert policies[off]["modifiedDateTime"] == policies[off]["createdDateTime"]  # untouched
    assert world.tenant.per_user_mfa[admin] == "enforced"
    patched = [r.path for r in world.microsoft.requests if r.method == "PATCH"]
    assert not [p for p in patched if admin in p]
    request = world.requests("disable_mfa")[0]
    assert "requires the authentication strength Phishing-resistant MFA" in str(request.blocks)


def test_a_strength_that_satisfies_no_mfa_does_not_require_mfa() -> None:
    """A strength whose requirementsSatisfied is `none` (or a future value) requires no MFA;
    `mfa` does, and so does a strength returned without the field."""
    assert requires_mfa(policy([], {"id": "x", "requirementsSatisfied": "none"})) is None
    assert (
        requires_mfa(policy([], {"id": "x", "requirementsSatisfied": "unknownFutureValue"})) is None
    )
    assert requires_mfa(policy([], {"id": "x", "requirementsSatisfied": "mfa"})) is not None
    assert requires_mfa(policy([], {"id": "x"})) is not None
    both = policy(
        ["mfa"], {"id": "x", "displayName": "Password only", "requirementsSatisfied": "none"}
    )
    assert requires_mfa(both) == "requires MFA"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_step_4_leaves_a_policy_whose_strength_grants_no_mfa_alone(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """Step 4 plans and disables a policy whose authentication strength grants the MFA claim,
    and neither plans nor touches one whose custom strength satisfies `none`."""
    world = await make_world(users=3)
    mfa = add_strength_policy(world.tenant, "Admins: phishing-resistant sign-in")
    none = add_strength_policy(
        world.tenant,
        "Kiosks: password and terms",
        strength="11111111-2222-4333-8444-555555555555",
        requirements="none",
        strength_name="Password only",
    )
    assert world.service is not None
    tenant = world.service.core.tenants[world.tenant.name]
    org = await ms.organization(tenant)
    ssl_context = ssl.create_default_context(cafile=world.microsoft.ca_file)
    ctx = StepContext(tenant=tenant, session=http, ssl_context=ssl_context, org=org)
    plan = await disable_mfa.STEP.plan(ctx)
    planned = {i.id for i in plan.of_kind("ca_policy")}
    assert mfa in planned and none not in planned

    async def noop(done: int, total: int) -> None:
        return None

    await disable_mfa.STEP.execute(ctx, plan, noop, 0)
    policies = world.tenant.ca_policies
    assert policies[mfa]["state"] == "disabled"
    assert policies[none]["state"] == "enabled"
    assert policies[none]["modifiedDateTime"] == policies[none]["createdDateTime"]
    assert await disable_mfa.STEP.verify(ctx, plan) == []
