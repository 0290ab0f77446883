"""Approvers see everything they approve: long lists split over blocks within Slack's limits
(50 blocks, 3,000 characters a section, counted as Slack counts), never cut inside markup,
'and N more' wherever a list is shortened, and past that a file in the thread with every item."""

from __future__ import annotations

import re

from bot import blocks, inventory, messages
from bot.world import World
from simulator.slack.blocks import check_blocks
from statemachine.plan import Item, Plan, PlanDiff


def texts(body: list[blocks.Block]) -> list[str]:
    out = []
    for block in body:
        if block["type"] == "section":
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out += [e["text"] for e in block["elements"]]
    return out


def subscriptions(n: int, name: str = "Microsoft 365 E3 `trial` & more") -> Plan:
    items = tuple(
        Item("subscription", f"00000000-0000-0000-0000-{k:012d}", f"{name} {k}") for k in range(n)
    )
    lines = tuple(f"{i.name} ({i.id}): admin center > Billing > Cancel" for i in items)
    return Plan("cancel_subscriptions", "tid", items, (), lines, {"display_name": "Contoso"})


def test_a_long_line_is_split_at_a_space_outside_markup() -> None:
    """A text over 3,000 is cut only outside a code span, an entity or a <...> token, and
    nothing is lost."""
    line = " ".join(["`code span`", "a &amp; b", "<@U0APPR1>", "emoji 😀"] * 400)
    pieces = blocks.split_text(line)
    assert len(pieces) > 1 and "".join(pieces) == line
    for piece in pieces:
        assert blocks.slack_len(piece) <= 3000
        assert piece.count("`") % 2 == 0
        assert not re.search(r"&[a-z]*$", piece) and piece.count("<") == piece.count(">")


def test_emoji_count_as_slack_counts_them() -> None:
    """A character outside the BMP counts twice (UTF-16), so a section never runs over."""
    assert blocks.slack_len("😀") == 2
    assert all(blocks.slack_len(t) <= 3000 for t in blocks.pack(["😀" * 1000] * 5))


def test_a_checklist_of_200_subscriptions_shows_every_line() -> None:
    """200 checklist lines go over several sections, all of them, within Slack's limits."""
    plan = subscriptions(200)
    body = blocks.checklist_blocks("Checklist", plan.checklist, "footer")
    check_blocks(body)
    shown = "\n".join(texts(body))
    assert all(f"{i.id}" in shown for i in plan.items)
    assert not blocks.checklist_needs_file(plan)


def test_an_approval_request_too_long_for_one_message_says_how_many_more() -> None:
    """2,000 items: the request fits 50 blocks, lists what fits, says 'and N more' and names
    the file that holds every item."""
    plan = subscriptions(2000)
    body = blocks.approval_blocks(plan, approvers=["U1"], quorum=1, expires_at=1e9)
    check_blocks(body)
    assert len(body) <= 50
    shown = sum(t.count("`00000000-0000") for t in texts(body))
    note = next(t for t in texts(body) if "more: every item is in" in t)
    assert f"and {2000 - shown:,} more" in note and blocks.plan_file_name(plan) in note
    assert blocks.checklist_needs_file(plan)
    assert blocks.plan_file_name(plan) == inventory.csv_name(plan)
    assert all(i.id in inventory.inventory_csv(plan) for i in plan.items)
    assert all(line in inventory.checklist_text(plan) for line in plan.checklist)


def test_plan_changes_say_how_many_more_of_each_kind() -> None:
    """The 'changes' list shows 10 names per kind and 'and N more' for the rest."""
    plan = subscriptions(25)
    lines = messages.plan_changes(PlanDiff(added=plan.items, removed=(), changed=()), [])
    assert len(lines) == 11 and lines[-1] == "• added: and 15 more"


async def test_a_plan_too_long_for_its_request_is_attached_in_the_thread() -> None:
    """A step with thousands of users: the request lists what fits, and the thread gets the
    inventory file with every user once."""
    world = await World.create(users=2500)
    try:
        await world.command(world.tenant.name)
        request = await world.wait_request("delete_users")
        check_blocks(request.blocks)
        posted = await world.slack.wait_for(
            lambda _: next((m for m in world.slack.messages if m.files), None)
        )
        assert posted.thread_ts is not None
        assert [f["name"] for f in posted.files] == [
            f"plan-delete_users-{request.metadata['event_payload']['plan_hash'][:12]}.csv"
        ]
        assert sum(bool(m.files) for m in world.slack.messages) == 1
        [uploaded] = world.slack.files
        assert uploaded["content"].decode().count("\nuser,") == 2499  # all but the retained
    finally:
        await world.close()
