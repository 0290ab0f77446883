"""Faults from Microsoft and Slack while a closure runs: it completes and nothing is skipped."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter

import pytest

from bot.world import World
from simulator.slack.server import SimMessage
from tests.conftest import MakeWorld


async def run_to_closed(world: World) -> None:
    world.script_approvers()
    world.script_admin()
    await world.command(world.tenant.name)
    assert await world.wait_state("closed", timeout=90) == "closed"
    assert world.tenant.deleted


def deletes_per_user(world: World) -> Counter[str]:
    return Counter(
        r.path
        for r in world.microsoft.requests
        if r.method == "DELETE" and "/users/" in r.path and r.status == 204
    )


@pytest.mark.parametrize(
    "fault",
    ["429-with-retry-after", "429-without-retry-after", "500", "503", "dropped"],
)
async def test_graph_faults_during_the_closure(make_world: MakeWorld, fault: str) -> None:
    """A storm of Graph faults on deletes, reads and the $batch itself is ridden out."""
    world = await make_world(users=60)
    faults = world.microsoft.faults
    if fault == "429-with-retry-after":
        faults.throttle(25, path_prefix="/v1.0/users/", method="DELETE")
        faults.throttle(5, path_prefix="/v1.0/users", method="GET")
    elif fault == "429-without-retry-after":
        faults.throttle(10, path_prefix="/v1.0/users/", method="DELETE", retry_after=None)
    elif fault == "dropped":
        faults.drop(3, path_prefix="/v1.0/$batch")
        faults.drop(2, path_prefix="/v1.0/organization")
    else:
        faults.error(int(fault), 6, path_prefix="/v1.0/$batch")
        faults.error(int(fault), 3, path_prefix="/v1.0/subscribedSkus")
    await run_to_closed(world)
    per_user = deletes_per_user(world)
    assert len(per_user) == 59 and max(per_user.values()) == 1
    assert not [m for m in world.slack.messages if "failed" in m.text]


async def test_token_expiring_mid_step(make_world: MakeWorld) -> None:
    """Tokens that expire while users are being deleted are renewed; every user is deleted."""
    world = await make_world(users=80)
    world.microsoft.hold_writes(after=40)
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.microsoft.writes_held()
    world.microsoft.expire_tokens()
    world.microsoft.release_writes()
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    assert len(world.tenant.users) == 1
    assert any(r.status == 401 for r in world.microsoft.requests)


async def test_slack_429_and_5xx_are_retried(make_world: MakeWorld) -> None:
    """Slack rate limits and server errors on posts and edits are retried; no post is lost."""
    world = await make_world(users=20)
    world.slack.fail_next("chat.postMessage", status=429, retry_after=0, count=2)
    world.slack.fail_next("chat.update", status=429, retry_after=0, count=2)
    world.slack.fail_next("chat.postMessage", status=503, count=1)
    await run_to_closed(world)
    texts = [m.text for m in world.slack.messages]
    for once in ("Step 1 approved", "Step 5 approved", "is closed"):
        assert sum(once in t for t in texts) == 1, once
    assert len(world.find_status_messages()) == 1


async def test_status_edits_are_coalesced_to_one_per_interval(make_world: MakeWorld) -> None:
    """With a 1 s interval the status message is edited at most once a second, and it still
    ends showing the latest state."""
    world = await make_world(users=120, timing={"status_edit_interval": "1s"})
    edits: list[float] = []

    def on_change(kind: str, message: SimMessage) -> None:
        meta = message.metadata or {}
        if kind == "updated" and meta.get("event_type") == "close_account_status":
            edits.append(time.monotonic())

    world.slack.subscribe(on_change)
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    assert len(edits) >= 2
    gaps = [b - a for a, b in itertools.pairwise(edits)]
    assert all(gap >= 0.9 for gap in gaps), gaps


@pytest.mark.parametrize("outage", ["503", "dropped"])
async def test_a_microsoft_outage_never_fails_a_step(
    make_world: MakeWorld, outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Microsoft failing longer than Graph's own retries (5xx or no answer, while step 2 waits on
    the admin) is waited out with a warning each time: the step does not fail, the closure
    closes."""
    caplog.set_level(logging.WARNING, logger="close_account_bot.runner")
    world = await make_world(users=10)
    faults = world.microsoft.faults
    if outage == "503":  # three times Graph's 8 attempts: the phase itself must wait
        faults.error(503, 24, path_prefix="/v1.0/directory/subscriptions")
    else:
        faults.drop(24, path_prefix="/v1.0/directory/subscriptions")
    await run_to_closed(world)
    assert not [m for m in world.slack.messages if "failed" in m.text]
    warnings = [
        r.getMessage() for r in caplog.records if "Microsoft did not answer" in r.getMessage()
    ]
    assert warnings and "the step does not fail" in warnings[0]
