"""Slack's rate limits: the simulator enforces each method's tier, and the bot answers Slack's
events within 3 s even while Slack is rate-limiting the calls it makes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from bot.editbudget import EditBudget
from bot.world import APPROVERS, CHANNEL, World
from simulator.slack.limits import (
    METHOD_TIERS,
    POST_BURST,
    SPECIAL_AS_TIER,
    TIER_PER_MINUTE,
    RateLimits,
)
from simulator.slack.server import SlackSimulator
from simulator.slack.webapi import METHODS
from statemachine.steps import names as step_names
from storage.audit import trail
from storage.db import open_db
from tests.conftest import MakeWorld

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "slack" / "methods"


class Clock:
    """Slack's clock for the rate limits, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tiers_are_those_of_slacks_method_reference() -> None:
    """Every method the simulator implements has the tier Slack's reference gives it ("special"
    ones are chat.postMessage's per-channel limit or treated as tier 4)."""
    for method in METHODS:
        label = json.loads((REFERENCE / f"{method}.json").read_text())["rate_limit"]["label"]
        tier = re.match(r"Tier (\d):", label)
        if tier is None:
            assert label.startswith("Special"), (method, label)
            assert method == "chat.postMessage" or method in SPECIAL_AS_TIER, method
        else:
            assert METHOD_TIERS.get(method) == int(tier.group(1)), (method, label)


async def _call(sim: SlackSimulator, method: str, **args: str) -> tuple[int, dict[str, str], dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sim.api_url}{method}",
            data=args,
            headers={"Authorization": f"Bearer {sim.bot_token}"},
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json()


async def test_a_tier_3_method_is_refused_with_retry_after_once_its_minute_is_spent() -> None:
    """chat.update takes a minute's worth (50) at once, then answers 429 `ratelimited` with a
    whole-second Retry-After until its budget refills."""
    clock = Clock()
    async with SlackSimulator(rate_limits=RateLimits(clock=clock)) as sim:
        statuses = [(await _call(sim, "users.info", user="U0NOBODY"))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]  # tier 4, far from its limit
        budget = TIER_PER_MINUTE[METHOD_TIERS["chat.update"]]
        answers = [await _call(sim, "chat.update", channel=CHANNEL, ts="1.000001", text="x")]
        answers += [
            await _call(sim, "chat.update", channel=CHANNEL, ts="1.000001", text="x")
            for _ in range(budget)
        ]
        assert [a[0] for a in answers[:budget]] == [200] * budget
        status, headers, body = answers[budget]
        assert (status, body) == (429, {"ok": False, "error": "ratelimited"})
        assert headers["Retry-After"] == "2"  # one request per 1.2 s, in whole seconds
        clock.now += 1.2
        assert (await _call(sim, "chat.update", channel=CHANNEL, ts="1.000001", text="x"))[0] == 200


async def test_chat_post_message_is_limited_per_channel() -> None:
    """chat.postMessage allows a short burst, then one message per second per channel; another
    channel has its own allowance."""
    clock = Clock()
    async with SlackSimulator(
        rate_limits=RateLimits(clock=clock), channels={CHANNEL: "progress", "C0OTHER": "other"}
    ) as sim:
        burst = [(await _call(sim, "chat.postMessage", channel=CHANNEL, text="m"))[0]]
        burst += [
            (await _call(sim, "chat.postMessage", channel=CHANNEL, text="m"))[0]
            for _ in range(POST_BURST)
        ]
        assert burst == [200] * POST_BURST + [429]
        assert (await _call(sim, "chat.postMessage", channel="C0OTHER", text="m"))[0] == 200
        clock.now += 1.0
        assert (await _call(sim, "chat.postMessage", channel=CHANNEL, text="m"))[0] == 200


async def test_a_vote_is_answered_within_3s_while_slack_rate_limits_status_edits(
    make_world: MakeWorld,
) -> None:
    """With chat.update's budget spent, a vote is still stored and answered at once (Slack's 3 s
    never waits on Slack's own limits); the status edit follows once Slack allows it."""
    clock = Clock()
    limits = RateLimits(clock=clock)
    world: World = await make_world(users=10, slack_limits=limits)
    assert "started" in await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    while limits.check("chat.update") is None:  # the rest of this minute's budget, spent
        pass
    result = await world.slack.react(
        user_id=APPROVERS[0], channel=request.channel, ts=request.ts, name="white_check_mark"
    )
    assert (result.status, result.timed_out) == (200, False)
    db = open_db(world.settings().storage_path)
    try:
        votes = [r for r in trail(db, world.tenant.name) if r.action == "vote"]
    finally:
        db.conn.close()
    assert [(v.actor, v.event_id) for v in votes] == [(APPROVERS[0], result.event_id)]
    assert "Approvals: 1/2" not in world.status_text()
    clock.now += 60  # Slack's minute is up
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text(), timeout=10)
    assert ("chat.update", 2) in limits.limited


async def test_an_unchanged_status_is_not_edited_again(world: World) -> None:
    """Asking to show a status that has not changed costs no chat.update (Slack's tier 3)."""
    assert "started" in await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    await world.slack.wait_for(lambda _: "Approvals: 0/2" in world.status_text())
    status = world.status()
    assert world.service is not None and status is not None
    closure_id = str((status.metadata or {})["event_payload"]["closure_id"])

    def edits() -> int:
        return sum(
            1
            for c in world.slack.calls
            if c["method"] == "chat.update" and c["args"].get("ts") == status.ts
        )

    before = edits()
    await world.service.core.status.refresh(closure_id)
    await world.service.core.status.refresh(closure_id)
    assert edits() == before
    await world.vote(world.requests("delete_users")[0], APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert edits() == before + 1


async def test_a_whole_closure_finishes_under_slacks_rate_limits(make_world: MakeWorld) -> None:
    """With Slack's limits enforced, the closure finishes, Slack did refuse calls over them, and
    every vote was answered 200 within Slack's 3 s."""
    limits = RateLimits(time_scale=5)  # Slack's minute in 12 s: a closure's thread overruns it
    world: World = await make_world(users=10, slack_limits=limits)
    world.script_admin()
    assert "started" in await world.command(world.tenant.name)
    answers = []
    for step in step_names():
        request = await world.wait_request(step, timeout=60)
        for user in APPROVERS[:2]:
            answers.append(
                await world.slack.react(
                    user_id=user, channel=request.channel, ts=request.ts, name="white_check_mark"
                )
            )
    assert await world.wait_state("closed", timeout=120) == "closed"
    assert [(a.status, a.timed_out) for a in answers] == [(200, False)] * 2 * len(step_names())
    assert limits.limited, "Slack never had to refuse a call: the test shows nothing"


def test_the_edit_budget_spaces_edits_once_its_burst_is_spent() -> None:
    """The workspace's status edits take a burst at once, then one slot per 60/rate seconds."""
    budget = EditBudget(per_minute=60, burst=3)
    assert [budget.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert [budget.reserve(0.0), budget.reserve(0.0)] == [1.0, 2.0]  # queued behind each other
    assert not budget.take(2.5)  # the two reserved slots come first
    assert budget.take(3.0)


async def test_edits_asked_for_while_one_is_refused_become_one_edit_of_the_latest(
    make_world: MakeWorld,
) -> None:
    """Status edits asked for while Slack rate-limits the one under way hold nobody up and
    become a single further edit, showing the votes as they are once Slack allows it."""
    clock = Clock()
    limits = RateLimits(clock=clock)
    world: World = await make_world(users=10, slack_limits=limits)
    assert "started" in await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.slack.wait_for(lambda _: "Approvals: 0/2" in world.status_text())
    status = world.status()
    assert status is not None

    def edits() -> int:
        return sum(
            1
            for c in world.slack.calls
            if c["method"] == "chat.update" and c["args"].get("ts") == status.ts and c["ok"]
        )

    before = len(limits.limited), edits()
    while limits.check("chat.update") is None:
        pass
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: len(limits.limited) > before[0] + 1)  # refused
    removed = await world.slack.react(
        user_id=APPROVERS[0],
        channel=request.channel,
        ts=request.ts,
        name="white_check_mark",
        remove=True,
    )
    added = await world.slack.react(
        user_id=APPROVERS[2], channel=request.channel, ts=request.ts, name="white_check_mark"
    )
    assert [removed.status, added.status] == [200, 200]
    clock.now += 60
    await world.slack.wait_for(
        lambda _: "U0APPR3" in world.status_text() and "U0APPR1" not in world.status_text(),
        timeout=10,
    )
    assert edits() == before[1] + 2  # the refused edit, sent late, then the latest


async def test_the_bot_keeps_its_connections_to_slack(world: World) -> None:
    """The bot's Slack calls share a few kept-alive connections instead of a new connection
    (and, against slack.com, a TLS handshake) per call."""
    assert "started" in await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    await world.slack.wait_for(lambda _: "Approvals: 0/2" in world.status_text())
    calls = len(world.slack.calls)
    assert calls >= 5
    assert len(world.slack.api_connections) <= 2, (calls, world.slack.api_connections)
