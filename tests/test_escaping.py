"""Everything from outside (Microsoft's names, an error's words) reaches mrkdwn inert: it cannot
ping, link, open or close a code span, or start a line of its own in the bot's voice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from bot import blocks, home, messages
from bot.world import APPROVERS, World
from statemachine.plan import Item, Plan, PlanDiff

HOSTILE = (
    "<!channel> Evil & Co `x` <https://evil.example|click>\n:white_check_mark: safe to approve"
)
RAW = ("<!channel>", "<https://evil", "<!here>")


def mrkdwn_texts(value: Any) -> Iterator[str]:
    """Every string a message or view would have Slack read as mrkdwn (and its fallback text)."""
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return
        for v in value.values():
            yield from mrkdwn_texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from mrkdwn_texts(v)
    elif isinstance(value, str):
        yield value


def assert_inert(value: Any) -> None:
    for text in mrkdwn_texts(value):
        for raw in RAW:
            assert raw not in text, text
        assert not re.search(r"^:white_check_mark: safe to approve", text, re.M), text
        for line in text.splitlines():  # every code span the bot opened is closed on its line
            assert line.count("`") % 2 == 0, line


def hostile_plan(n: int = 3) -> Plan:
    items = tuple(
        Item("subscription", f"00000000-0000-0000-0000-{k:012d}", HOSTILE) for k in range(n)
    )
    facts = {"display_name": HOSTILE, "tenant_id": "t`id", "primary_domain": HOSTILE}
    return Plan("cancel_subscriptions", "tid", items, (), (f"{HOSTILE} > Cancel",), facts)


def test_escape_is_idempotent_and_keeps_slacks_own_entities() -> None:
    """&, < and > become entities once; text Slack already escaped is left as it was."""
    assert messages.inert("a & b < c") == "a &amp; b &lt; c"
    assert messages.inert(messages.inert("a & b < c")) == "a &amp; b &lt; c"
    assert messages.inert("x\ny\r\nz") == "x y z"
    assert messages.code("a`b") == "`a\u02cbb`"


def test_approval_request_shows_hostile_names_inert() -> None:
    """The request's tenant line, item list and changes carry no ping, link or fake line."""
    plan = hostile_plan()
    change = PlanDiff(added=plan.items, removed=(), changed=())
    body = blocks.approval_blocks(
        plan,
        approvers=list(APPROVERS),
        quorum=2,
        expires_at=1e9,
        changes=messages.plan_changes(change, [HOSTILE]),
    )
    assert_inert(body)
    assert "&lt;!channel&gt; Evil &amp; Co" in json.dumps(body)


def test_thread_posts_show_hostile_text_inert() -> None:
    """Blockers, failures, checklist progress and reminders escape what Microsoft said."""
    posts = [
        messages.blocked("delete_users", "contoso", [HOSTILE], offer=None),
        messages.failed("delete_users", "contoso", HOSTILE),
        messages.seen_done("cancel_subscriptions", [HOSTILE], [HOSTILE]),
        messages.remind_admin("cancel_subscriptions", [HOSTILE], [HOSTILE]),
        messages.shown_reason("failed", HOSTILE),
    ]
    assert_inert(posts)
    assert messages.shown_reason("rejected", "vetoed by <@U1>") == "vetoed by <@U1>"


def test_checklist_status_and_home_show_hostile_names_inert() -> None:
    """A checklist's lines, the status message's and the Home tab's display name and reason."""
    assert_inert(blocks.checklist_blocks("Checklist", [HOSTILE] * 3, "footer"))
    status = blocks.StatusView(
        "c1", "contoso", "tid", "delete_users.failed", "U0ADMIN1", display_name=HOSTILE
    )
    assert_inert(blocks.status_blocks(status))
    closure = home.HomeClosure(
        closure_id="c1",
        tenant="contoso",
        tenant_id="tid",
        state="delete_users.blocked",
        requester="U0ADMIN1",
        created_at=0.0,
        updated_at=0.0,
        display_name=HOSTILE,
        reason=HOSTILE,
    )
    assert_inert(home.closure_blocks(closure, now=0.0))


async def test_hostile_names_from_microsoft_reach_slack_inert() -> None:
    """A tenant, users and subscriptions with hostile names: what the bot posts is inert."""
    world = await World.create(
        users=4,
        tenant={"display_name": HOSTILE, "subscriptions": [{"skuPartNumber": HOSTILE}]},
        start=False,
    )
    try:
        others = [
            u
            for u in world.tenant.users.values()
            if u["userPrincipalName"] != world.tenant.retained_upn
        ]
        for user in others[:2]:
            user["displayName"] = HOSTILE
            user["userPrincipalName"] = f"{HOSTILE}@contoso.example"
        await world.start_bot()
        await world.command(world.tenant.name)
        for step in ("delete_users", "cancel_subscriptions"):
            request = await world.wait_request(step)
            await world.vote(request, APPROVERS[0])
            await world.vote(request, APPROVERS[1])
        await world.slack.wait_for(
            lambda _: any("checklist for a Global" in m.text for m in world.slack.messages)
        )
        assert world.slack.messages
        for message in world.slack.messages:
            assert_inert([message.text, message.blocks])
    finally:
        await world.close()
