"""The App Home tab: every closure with its state, approvals, what it waits on and its thread."""

from __future__ import annotations

from typing import Any

from bot.commands import USAGE
from bot.home import MAX_VIEW_BLOCKS, HomeClosure, home_view, publish_home
from bot.messages import slack_date
from bot.world import APPROVERS, World
from simulator.slack.blocks import check_view
from simulator.slack.shapes import permalink
from tests.conftest import MakeWorld

NOW = 1_700_000_000.0
LINK = "https://sim.example/archives/C0PROGRESS/p1700000000000100"
SYNC_FIX = (
    "Directory synchronization is on: deleted users would come back from on-premises."
    " Fix: turn off Microsoft Entra Connect sync. Then `retry`."
)


def closure(**fields: Any) -> HomeClosure:
    base: dict[str, Any] = {
        "closure_id": "c0ffee000001",
        "tenant": "contoso",
        "tenant_id": "8f0c0000-0000-0000-0000-000000000000",
        "state": "delete_users.awaiting_approval",
        "requester": "U0ADMIN1",
        "created_at": NOW - 600,
        "updated_at": NOW - 60,
    }
    return HomeClosure(**{**base, **fields})


def sections(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]


def headers(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]


def test_awaiting_approval_names_who_voted_and_who_is_still_needed() -> None:
    """An open request at 1/2 shows the voter, the missing approvers as mentions and the expiry."""
    c = closure(
        display_name="Contoso Ltd",
        votes=("U0APPR1",),
        needed=("U0APPR2", "U0APPR3"),
        quorum=2,
        expires_at=NOW + 3600,
        rollback_possible=True,
        permalink=LINK,
    )
    view = home_view([c], now=NOW)
    check_view(view)
    assert view["type"] == "home"
    assert headers(view) == ["Tenant closures", "Open (1)"]
    assert view["blocks"][3:] == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "\n".join(
                    [
                        ":hourglass_flowing_sand: *contoso* · Contoso Ltd — step 1/5,"
                        " Delete users: waiting for approval",
                        "*Approvals:* 1/2, by <@U0APPR1>",
                        "*Waiting on:* 1 more approval from <@U0APPR2> or <@U0APPR3>"
                        f" · expires {slack_date(NOW + 3600)} (in 60m)",
                        ":leftwards_arrow_with_hook: Rollback is still possible"
                        " (`/close-account rollback contoso`).",
                        f"<{LINK}|Open the thread>",
                    ]
                ),
            },
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "tenant `8f0c0000-0000-0000-0000-000000000000` · requested by"
                    f" <@U0ADMIN1> · closure `c0ffee000001` · started {slack_date(NOW - 600)}"
                    " (10m ago)",
                }
            ],
        },
        {"type": "divider"},
    ]


def test_the_viewer_is_told_their_approval_is_needed() -> None:
    """The approver who opens the Home tab and has not voted yet sees a line addressed to them."""
    c = closure(votes=(), needed=("U0APPR2",), quorum=1, expires_at=NOW - 5)
    mine = sections(home_view([c], now=NOW, viewer="U0APPR2"))[0].split("\n")
    theirs = sections(home_view([c], now=NOW, viewer="U0APPR9"))[0].split("\n")
    assert mine[1] == ":point_right: *Your approval is needed* (react in the thread)"
    assert mine[1:] == [mine[1], *theirs[1:]]
    assert theirs[1:3] == [
        "*Approvals:* 0/1 so far",
        f"*Waiting on:* 1 more approval from <@U0APPR2> · expired {slack_date(NOW - 5)}"
        " (5s ago); a fresh request follows",
    ]


def test_blocked_closure_shows_the_fix_and_the_retry() -> None:
    """A blocked step says what is wrong, how to fix it, and that an admin's retry comes next."""
    c = closure(
        state="delete_users.blocked",
        reason=SYNC_FIX,
        rollback_possible=True,
        permalink=LINK,
    )
    lines = sections(home_view([c], now=NOW))[0].split("\n")
    assert lines[:3] == [
        ":no_entry: *contoso* — step 1/5, Delete users: BLOCKED",
        f"*Blocked:* {SYNC_FIX}",
        "*Waiting on:* the fix above, then an admin's `/close-account retry contoso`",
    ]


def test_waiting_external_failed_and_rejected_say_what_they_wait_on() -> None:
    """A checklist step waits on the Global Administrator; failed and vetoed steps on a retry."""
    waits = {
        state: sections(home_view([closure(state=state, reason="why")], now=NOW))[0].split("\n")
        for state in (
            "cancel_subscriptions.waiting_external",
            "disable_mfa.failed",
            "delete_users.rejected",
        )
    }
    assert waits["cancel_subscriptions.waiting_external"][1] == (
        "*Waiting on:* the Global Administrator's checklist (in the thread);"
        " the bot re-checks Microsoft and moves on by itself"
    )
    assert waits["disable_mfa.failed"][1:3] == [
        "*Failed:* why",
        "*Waiting on:* an admin's retry (`/close-account retry contoso`) or `abort`",
    ]
    assert waits["delete_users.rejected"][1] == "*Vetoed:* why"
    assert waits["delete_users.rejected"][2] == waits["disable_mfa.failed"][2]


def test_closed_closure_lists_who_approved_each_step() -> None:
    """A closed closure comes under "Recently finished" with every step's approvers, no wait."""
    approvals = {step: ("U0APPR1", "U0APPR2") for step in ("delete_users", "disable_mfa")}
    c = closure(state="closed", approvals=approvals, permalink=LINK, updated_at=NOW - 7200)
    view = home_view([c], now=NOW)
    check_view(view)
    assert headers(view) == ["Tenant closures", "Recently finished"]
    assert sections(view) == [
        "\n".join(
            [
                ":white_check_mark: *contoso* — closed",
                "*Approved:* step 1 by <@U0APPR1>, <@U0APPR2> · step 4 by <@U0APPR1>, <@U0APPR2>",
                f"<{LINK}|Open the thread>",
            ]
        )
    ]
    assert f"finished {slack_date(NOW - 7200)} (2h00m ago)" in str(view["blocks"][-2])


def test_open_closures_come_before_finished_ones() -> None:
    """Open closures are listed first (oldest first), then finished ones, newest first."""
    view = home_view(
        [
            closure(tenant="old-done", state="aborted", reason="aborted: test", updated_at=NOW - 9),
            closure(tenant="new-done", state="rolled_back", updated_at=NOW - 1),
            closure(tenant="late", created_at=NOW - 5),
            closure(tenant="early", created_at=NOW - 50),
        ],
        now=NOW,
    )
    order = [s.split("*")[1] for s in sections(view)]
    assert order == ["early", "late", "new-done", "old-done"]
    assert headers(view) == ["Tenant closures", "Open (2)", "Recently finished"]
    assert "*Reason:* aborted: test" in sections(view)[3]


def test_empty_state_is_friendly_and_shows_the_usage() -> None:
    """With no closures the Home tab says so and shows how to start one."""
    view = home_view([], now=NOW)
    check_view(view)
    assert view["blocks"][1:] == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ":wave: No closures yet. An admin starts one with"
                " `/close-account <tenant>`; it is tracked here and in the progress channel,"
                " step by step.",
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": USAGE}]},
    ]


def test_two_hundred_closures_stay_within_slack_limits() -> None:
    """200 closures (100 open, 100 finished) fit in 100 blocks; the rest are counted, not shown."""
    many = [
        closure(closure_id=f"open{n:08d}", tenant=f"t{n}", created_at=NOW - 1000 + n)
        for n in range(100)
    ] + [
        closure(
            closure_id=f"done{n:08d}",
            tenant=f"d{n}",
            state="closed",
            reason="x" * 5000,
            updated_at=NOW - n,
        )
        for n in range(100)
    ]
    view = home_view(many, now=NOW)
    check_view(view)
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert all(len(text) <= 3000 for text in sections(view))
    shown = [s.split("*")[1] for s in sections(view)]
    assert shown == [f"t{n}" for n in range(len(shown))]
    assert headers(view)[1] == "Open (100)"
    note = view["blocks"][-1]["elements"][0]["text"]
    assert f"{100 - len(shown)} more open closures are not shown" in note
    assert "100 older finished closures are not shown" in note


def test_a_long_reason_is_clipped_to_the_section_limit() -> None:
    """A huge failure text is clipped so the section stays under Slack's 3000 characters."""
    view = home_view([closure(state="delete_users.failed", reason="y" * 9000)], now=NOW)
    check_view(view)
    text = sections(view)[0]
    assert len(text) <= 3000 and "y" * 1400 in text and "…" in text


# --- through the bot and the simulated Slack ----------------------------------------------


async def _one_vote(world: World) -> None:
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())


def _home_text(world: World, user: str) -> str:
    view = world.slack.home_views[user]
    return "\n".join(str(b) for b in view["blocks"])


async def test_published_home_shows_the_closure_after_one_vote(world: World) -> None:
    """After one vote the Home tab names the tenant, the state, the voter, the rest and the link."""
    await _one_vote(world)
    assert world.service is not None
    await publish_home(world.service.core.home, APPROVERS[1])
    status = world.status()
    assert status is not None
    home = world.slack.home_views[APPROVERS[1]]
    text = sections(home)[0]
    assert f"*{world.tenant.name}*" in text
    assert "step 1/5, Delete users: waiting for approval" in text
    assert "*Approvals:* 1/2, by <@U0APPR1>" in text
    assert "*Waiting on:* 1 more approval from <@U0APPR2> or <@U0APPR3>" in text
    assert ":point_right: *Your approval is needed*" in text
    assert f"<{permalink(world.slack, status)}|Open the thread>" in text
    assert world.tenant.tenant_id in _home_text(world, APPROVERS[1])


async def test_a_permalink_failure_leaves_only_the_link_out(world: World) -> None:
    """chat.getPermalink failing still publishes the view; the next publish has the link."""
    await _one_vote(world)
    assert world.service is not None
    world.slack.fail_next("chat.getPermalink", error="internal_error")
    await publish_home(world.service.core.home, APPROVERS[0])
    assert "_No thread link right now._" in sections(world.slack.home_views[APPROVERS[0]])[0]
    assert "*Waiting on:* 1 more approval" in sections(world.slack.home_views[APPROVERS[0]])[0]
    await publish_home(world.service.core.home, APPROVERS[0])
    assert "|Open the thread>" in sections(world.slack.home_views[APPROVERS[0]])[0]


async def test_home_with_no_closures_is_the_empty_state(make_world: MakeWorld) -> None:
    """A workspace with no closure yet gets the friendly empty Home tab."""
    world = await make_world(users=5)
    assert world.service is not None
    await publish_home(world.service.core.home, APPROVERS[2])
    assert "No closures yet" in sections(world.slack.home_views[APPROVERS[2]])[0]


async def test_opening_the_home_tab_publishes_it(world: World) -> None:
    """Opening the Home tab delivers app_home_opened, and the bot publishes the view."""
    await _one_vote(world)
    result = await world.slack.open_home(APPROVERS[2])
    assert result.status == 200
    await world.slack.wait_for(lambda _: APPROVERS[2] in world.slack.home_views, timeout=5)
    assert "*Approvals:* 1/2, by <@U0APPR1>" in sections(world.slack.home_views[APPROVERS[2]])[0]
