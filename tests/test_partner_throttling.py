"""Partner Center throttling and outages (developer/api-throttling-guidance.md): a 429 waits for
its Retry-After and spends no attempt, a 5xx is retried with bounded backoff and then waited out
like any Microsoft outage, and neither is ever read as a refusal to cancel."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.microsoft.partner import THROTTLED_TOO_LONG, PartnerCenterError
from bot.patience import retry_can_fix
from bot.world import APPROVERS, World
from tests.conftest import MakeWorld
from tests.test_partner_center import Setup, patches
from tests.test_partner_center import pc as pc


def partner_calls(setup: Setup) -> list[tuple[str, int]]:
    return [(r.method, r.status) for r in setup.ms.requests if "/partnercenter/" in r.path]


class Waits:
    """The client's sleep and clock: records each wait and moves the clock on by it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def fake_time(setup: Setup) -> Waits:
    waits = Waits()
    setup.client.sleep = waits.sleep
    setup.client.clock = waits.clock
    return waits


async def test_the_simulator_throttles_as_documented(pc: Setup) -> None:
    """A throttled call is 429 with Retry-After in seconds and the documented body; the next
    call after the switch runs out is answered normally."""
    pc.customer.partner_center.throttle(1)
    auth = {"Authorization": f"Bearer {await pc.token()}"}
    async with pc.http.get(pc.url, headers=auth) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "57"
        body = await resp.json()
    assert body == {
        "statusCode": 429,
        "message": "Rate limit is exceeded. Try again in 57 seconds.",
    }
    assert (await pc.get())["status"] == "active"


async def test_a_throttled_get_waits_retry_after_and_cancels(pc: Setup) -> None:
    """Two 429s on the GET are waited out for exactly their Retry-After, then the subscription
    is cancelled."""
    waits = fake_time(pc)
    pc.customer.partner_center.throttle(2, method="GET")
    commerce = pc.sub["commerceSubscriptionId"]
    outcome = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert outcome.kind == "cancelled"
    assert waits.waits == [57.0, 57.0]
    assert partner_calls(pc) == [("GET", 429), ("GET", 429), ("GET", 200), ("PATCH", 200)]


async def test_throttling_spends_no_attempt(pc: Setup) -> None:
    """More 429s on the PATCH than the client has attempts still end cancelled, not refused:
    a 429 is not a failure."""
    fake_time(pc)
    throttled = pc.client.max_attempts * 2
    pc.customer.partner_center.throttle(throttled, retry_after=1, method="PATCH")
    commerce = pc.sub["commerceSubscriptionId"]
    outcome = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert outcome.kind == "cancelled"
    assert patches(pc) == [429] * throttled + [200]


async def test_throttled_too_long_fails_with_a_reason_not_a_refusal(
    pc: Setup,
) -> None:
    """429s with nothing admitted for give_up_after raise throttledTooLong, which says so and
    which the runner does not retry; it is never a refusal outcome."""
    waits = fake_time(pc)
    pc.customer.partner_center.throttle(10**6, retry_after=60, method="PATCH")
    commerce = pc.sub["commerceSubscriptionId"]
    with pytest.raises(PartnerCenterError) as info:
        await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert (info.value.status, info.value.code) == (429, THROTTLED_TOO_LONG)
    assert "admitted none" in str(info.value)
    assert not retry_can_fix(info.value)
    assert waits.now == pytest.approx(pc.client.give_up_after)
    assert (await pc.get())["status"] == "active"


async def test_a_503_on_the_patch_reads_again_and_cancels(pc: Setup) -> None:
    """A PATCH answered 503 may or may not have been applied: the client reads the
    subscription again before sending it again, and ends cancelled, not refused."""
    fake_time(pc)
    pc.customer.partner_center.error(503, 2, method="PATCH")
    commerce = pc.sub["commerceSubscriptionId"]
    outcome = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert outcome.kind == "cancelled"
    assert partner_calls(pc) == [
        ("GET", 200),
        ("PATCH", 503),
        ("GET", 200),
        ("PATCH", 503),
        ("GET", 200),
        ("PATCH", 200),
    ]


async def test_a_lasting_503_raises_an_error_retrying_can_fix(pc: Setup) -> None:
    """A GET answered 503 every time is tried max_attempts times with growing waits, then
    raises an error the runner waits out (retry_can_fix), not a refusal."""
    waits = fake_time(pc)
    pc.customer.partner_center.error(503, 10**6)
    commerce = pc.sub["commerceSubscriptionId"]
    with pytest.raises(PartnerCenterError) as info:
        await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert info.value.status == 503
    assert retry_can_fix(info.value)
    assert partner_calls(pc) == [("GET", 503)] * pc.client.max_attempts
    assert len(waits.waits) == pc.client.max_attempts - 1


def partner_subs(world: World) -> list[dict[str, Any]]:
    return [
        s
        for s in world.tenant.subscriptions
        if s.get("ownerTenantId") not in (None, world.tenant.tenant_id)
    ]


async def approve_cancel_subscriptions(world: World) -> None:
    """Approve steps 1 and 2; faults are switched on by the caller before this returns."""
    for step in ("delete_users", "cancel_subscriptions"):
        request = await world.wait_request(step)
        await world.vote(request, APPROVERS[0])
        await world.vote(request, APPROVERS[1])


def pc_answers(world: World, method: str) -> list[int]:
    return [
        r.status
        for r in world.microsoft.requests
        if "/partnercenter/" in r.path and r.method == method
    ]


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_a_throttled_partner_center_still_cancels_in_the_closure(
    make_world: MakeWorld, method: str
) -> None:
    """A 429 with Retry-After on Partner Center's GET or PATCH during step 2 is waited out:
    the partner's subscriptions are cancelled and no checklist line asks the partner."""
    world = await make_world(users=10, partner=True)
    subs = partner_subs(world)
    assert subs
    world.tenant.partner_center.throttle(3, retry_after=0.01, method=method)
    world.script_admin()
    await world.command(world.tenant.name)
    await approve_cancel_subscriptions(world)
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)
    assert pc_answers(world, method)[:3] == [429, 429, 429]
    assert pc_answers(world, "PATCH")[-len(subs) :] == [200] * len(subs)
    assert not [m for m in world.slack.messages if "Partner Center refused" in m.text]
    assert not [m for m in world.slack.messages if "failed" in m.text]
    for sub in subs:
        assert sub["status"] == "Suspended"


async def test_a_partner_center_outage_waits_and_then_cancels(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Partner Center answering 503 past the client's retries leaves step 2 executing (waited
    out with a warning, never failed); once it recovers the subscriptions are cancelled."""
    caplog.set_level(logging.WARNING, logger="close_account_bot.runner")
    world = await make_world(users=10, partner=True)
    subs = partner_subs(world)
    world.tenant.partner_center.error(503, 10**6)
    world.script_admin()
    await world.command(world.tenant.name)
    await approve_cancel_subscriptions(world)

    def waited_out_twice() -> bool:
        return sum("Microsoft did not answer" in r.getMessage() for r in caplog.records) >= 2

    await world.until(waited_out_twice)
    assert world.state() == "cancel_subscriptions.executing"
    assert not [m for m in world.slack.messages if "failed" in m.text]
    world.tenant.partner_center.recover()
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)
    assert not [m for m in world.slack.messages if "Partner Center refused" in m.text]
    for sub in subs:
        assert sub["status"] == "Suspended"
