"""Verification waits for Entra to catch up: reads right after a write may show the old state
(the simulator's replica lag), so a verification re-reads over a bounded time before failing."""

from __future__ import annotations

import logging

import pytest

from bot.world import APPROVERS, World
from simulator.microsoft.graph_lag import ReplicaLag
from simulator.microsoft.graph_odata import GraphRequest, GraphResponse
from tests.conftest import MakeWorld


async def hold_before_step_4(world: World) -> None:
    """Run the closure to step 4's approval request, approving and working every other step."""
    world.script_approvers(skip=("disable_mfa",))
    world.script_admin()
    await world.command(world.tenant.name)
    await world.wait_request("disable_mfa", timeout=60)


async def approve_step_4(world: World) -> None:
    request = world.requests("disable_mfa")[-1]
    for user in APPROVERS[:2]:
        await world.vote(request, user)


def test_replica_lag_answers_the_old_state_for_n_reads() -> None:
    """After a write, the next N reads of what was read before it answer the old answer; then
    the live one."""
    now = [0.0]
    lag = ReplicaLag(lambda: now[0])
    lag.set(reads=2)
    req = GraphRequest("GET", "v1.0", "/policies/x")
    lag.served("t", req, GraphResponse(200, {"isEnabled": True}))
    assert lag.read("t", req) is None  # nothing written yet: live
    lag.wrote()
    answers = [lag.read("t", req) for _ in range(3)]
    assert [a.body if a else None for a in answers] == [{"isEnabled": True}] * 2 + [None]
    assert lag.read("t", GraphRequest("GET", "v1.0", "/other")) is None  # never read: live


def test_replica_lag_by_time() -> None:
    """With a lag in seconds, reads are stale until that long after the last write."""
    now = [0.0]
    lag = ReplicaLag(lambda: now[0])
    lag.set(seconds=5)
    req = GraphRequest("GET", "v1.0", "/organization")
    lag.served("t", req, GraphResponse(200, {"v": 1}))
    lag.wrote()
    now[0] = 4.9
    assert lag.read("t", req) is not None
    now[0] = 5.1
    assert lag.read("t", req) is None


async def test_step_4_verification_waits_for_entra(make_world: MakeWorld) -> None:
    """Step 4's verification right after its writes sees the old settings (replica lag), re-reads
    and passes: the step does not fail and the closure closes."""
    world = await make_world(users=10)
    await hold_before_step_4(world)
    world.microsoft.lag.set(reads=4)
    await approve_step_4(world)
    state = await world.wait_state("closed", "disable_mfa.failed", timeout=60)
    assert state == "closed"
    assert world.microsoft.lag.stale_served > 0  # Entra did lag behind the writes
    assert not [m for m in world.slack.messages if "failed" in m.text]


async def test_verification_fails_after_the_bound_with_the_reason(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A verification that never sees the writes fails once the bound has passed, and the
    "fail" transition's log line says why."""
    caplog.set_level(logging.INFO, logger="close_account_bot.runner")
    world = await make_world(users=10)
    await hold_before_step_4(world)
    assert world.service is not None
    world.service.core.phases.patience.settle = 1.0
    world.microsoft.lag.set(seconds=3600)  # Entra never catches up within the test
    await approve_step_4(world)
    assert await world.wait_state("disable_mfa.failed", timeout=30) == "disable_mfa.failed"
    failures = [m.text for m in world.slack.messages if "failed" in m.text]
    assert failures and "still so after re-reading" in failures[-1]
    lines = [r.getMessage() for r in caplog.records if "(fail by bot)" in r.getMessage()]
    assert lines and "is still on" in lines[-1] and "re-reading" in lines[-1]
    assert any("Entra may not have caught up" in r.getMessage() for r in caplog.records)
