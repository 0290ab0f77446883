"""The right people pinged (issue 13 item 6): admin-center checklists and their reminders mention
the retained administrator's Slack user; approval reminders go on until the request expires."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest

from bot import messages
from bot.config import ConfigError, settings_from_mapping
from bot.identity import Ping
from bot.rehearsal import run_rehearsal
from bot.settings import TenantSettings
from bot.world import APPROVERS, World
from simulator.slack.server import SimMessage, SimUser
from storage import approvals as requests_db
from storage import audit
from tests.conftest import MakeWorld
from tests.test_config import ENV
from tests.test_escaping import HOSTILE, assert_inert
from tests.test_rehearsal import sample

GLOBAL_ADMIN = "U0GLOBAL"


def checklists(world: World) -> list[SimMessage]:
    return [
        m
        for m in world.slack.messages
        if "checklist for a Global Administrator" in m.text.split("\n")[0]
    ]


def admin_reminders(world: World) -> list[SimMessage]:
    return [m for m in world.slack.messages if "in the admin center:" in m.text]


async def first_checklist(world: World) -> SimMessage:
    """Approve every step and wait for step 2's checklist (nobody works it)."""
    world.script_approvers()
    await world.command(world.tenant.name)
    return await world.slack.wait_for(lambda _: next(iter(checklists(world)), None), timeout=60)


async def test_checklist_mentions_the_admin_found_by_email(make_world: MakeWorld) -> None:
    """The retained UPN's Slack user (users.lookupByEmail) is mentioned in the checklist and
    each of its reminders."""
    world = await make_world(users=20, start=False, timing={"reminder_interval": "300ms"})
    world.slack.add_user(SimUser(GLOBAL_ADMIN, "gale.global", world.tenant.retained_upn))
    await world.start_bot()
    checklist = await first_checklist(world)
    assert checklist.text.startswith("Step 2")
    assert f"<@{GLOBAL_ADMIN}>" in checklist.text
    assert f"<@{GLOBAL_ADMIN}>" in json.dumps(checklist.blocks)
    reminder = await world.slack.wait_for(lambda _: next(iter(admin_reminders(world)), None))
    assert f"still waiting on <@{GLOBAL_ADMIN}>" in reminder.text


async def test_checklist_mentions_the_slack_user_named_in_the_config(
    make_world: MakeWorld,
) -> None:
    """`retain_slack_user` names the Slack user to mention when the UPN is nobody's email."""
    world = await make_world(users=20, start=False, timing={"reminder_interval": "300ms"})
    world.slack.add_user(SimUser(GLOBAL_ADMIN, "gale.global", "gale@msp.example"))
    config = world.config_path.read_text()
    retain = f'retain = ["{world.tenant.retained_upn}"]\n'
    world.config_path.write_text(
        config.replace(retain, f'{retain}retain_slack_user = "{GLOBAL_ADMIN}"\n')
    )
    await world.start_bot()
    checklist = await first_checklist(world)
    assert f"<@{GLOBAL_ADMIN}>, this checklist is yours" in checklist.text
    reminder = await world.slack.wait_for(lambda _: next(iter(admin_reminders(world)), None))
    assert f"<@{GLOBAL_ADMIN}>" in reminder.text


async def test_unresolvable_admin_is_named_and_the_reason_said_once(
    make_world: MakeWorld,
) -> None:
    """With no Slack user for the retained account, the checklist names the account, says once
    why nobody is pinged, and its reminders name the account with no mention."""
    world = await make_world(users=20, timing={"reminder_interval": "200ms"})
    checklist = await first_checklist(world)
    assert "Nobody is pinged for this checklist: no Slack user has the email" in checklist.text
    assert world.tenant.retained_upn in checklist.text
    assert "<@" not in checklist.text
    await world.slack.wait_for(lambda _: len(admin_reminders(world)) >= 2)
    for reminder in admin_reminders(world)[:2]:
        assert world.tenant.retained_upn in reminder.text and "<@" not in reminder.text
    reasons = [m for m in world.slack.messages if "Nobody is pinged" in m.text]
    assert reasons == [checklist]


async def test_approval_reminders_go_on_until_expiry_and_stop_there(
    make_world: MakeWorld,
) -> None:
    """With the defaults' proportions (ttl = 2 x interval), an unanswered request gets a
    reminder and then a last call before it expires, and none after."""
    world = await make_world(users=20, timing={"approval_ttl": "4s", "reminder_interval": "2s"})
    await world.command(world.tenant.name)
    first = await world.wait_request("delete_users")
    await world.vote(first, APPROVERS[0])
    await world.wait_request("delete_users", count=2, timeout=15)
    assert world.service is not None
    db = world.service.db
    trail = audit.trail(db, world.tenant.name)
    closure_id = next(r.closure_id for r in trail if r.closure_id)
    assert closure_id is not None
    old, new = requests_db.requests_of(db, closure_id)[:2]
    reminders = [r for r in trail if r.action == "reminder"]
    during = [r for r in reminders if old.created_at <= r.at < old.expires_at]
    assert len(during) >= 2
    assert [r.detail["last_call"] for r in during][-1] is True
    assert not any(old.expires_at <= r.at < new.created_at for r in reminders)
    last_call = next(m for m in world.slack.messages if m.text.startswith(":hourglass_flowing"))
    assert f"<@{APPROVERS[1]}>" in last_call.text and f"<@{APPROVERS[0]}>" not in last_call.text
    assert "the request expires in" in last_call.text


MINIMAL_TOML = """
[slack]
progress_channel = "C0PROGRESS"
admins = ["U0ADMIN1"]

[storage]
path = "close-account.db"

[[tenants]]
name = "contoso"
tenant_id = "8f0c1d2e-3a4b-4c6d-8e8f-9a0b1c2d3e4f"
client_id = "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0"
client_secret_env = "CONTOSO_SECRET"
retain = ["admin@contoso.onmicrosoft.com"]
approvers = ["U0APPR1", "U0APPR2"]
quorum = 1
"""


def tenant_with(tmp_path: Path, value: str | None) -> TenantSettings:
    data = tomllib.loads(MINIMAL_TOML)
    if value is not None:
        data["tenants"][0]["retain_slack_user"] = value
    return settings_from_mapping(data, file=tmp_path / "b.toml", environ=ENV).tenants[0]


@pytest.mark.parametrize("value", [None, "U0GLOBAL", "gale@msp.example"])
def test_config_takes_a_slack_user_id_or_email_for_the_retained_admin(
    tmp_path: Path, value: str | None
) -> None:
    """`retain_slack_user` accepts a Slack user ID or an email and is optional."""
    assert tenant_with(tmp_path, value).retain_slack_user == value


def test_config_refuses_a_retained_slack_user_that_is_neither(tmp_path: Path) -> None:
    """A `retain_slack_user` that is no user ID or email is one line naming file and key."""
    with pytest.raises(ConfigError) as info:
        tenant_with(tmp_path, "@gale")
    assert str(info.value) == (
        f"{tmp_path / 'b.toml'}: tenants[0].retain_slack_user: '@gale' is not a Slack user ID"
        " like U0123ABCD or an email"
    )


def test_ping_sentences_keep_outside_text_inert() -> None:
    """Only a well-formed user ID becomes a mention; the account and the reason stay inert."""
    hostile = Ping(HOSTILE, user_id="<!channel>", why_not=HOSTILE)
    posts = [
        messages.checklist_ping(hostile),
        messages.checklist_ping(Ping(HOSTILE, why_not=HOSTILE)),
        messages.remind_admin_ping("cancel_subscriptions", hostile, [HOSTILE]),
    ]
    assert_inert(posts)
    assert messages.admin_mention(hostile) is None
    assert messages.admin_mention(Ping("a@b.example", user_id="U0GLOBAL")) == "<@U0GLOBAL>"


async def test_the_rehearsal_pings_the_configured_slack_user(tmp_path: Path) -> None:
    """`demo --config` with `retain_slack_user` set adds that member to the simulated workspace
    and its checklists say the checklist is theirs."""
    config = sample(
        tmp_path, ('# retain_slack_user = "U0GLOBALADMIN"', 'retain_slack_user = "U0GLOBALADMIN"')
    )
    out = io.StringIO()
    assert await run_rehearsal(config, out=out) == 0, out.getvalue()
    assert "this checklist is yours" in out.getvalue()
    assert "Nobody is pinged" not in out.getvalue()
