"""`/close-account plan <tenant>`: the preview answered only to an admin or one of the tenant's
approvers (an ephemeral summary, the whole inventory as a file in their DM), writing nothing."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp

from bot import messages
from bot.world import ADMIN, APPROVERS, OUTSIDER, World
from simulator.slack.server import SimUser, SlackSimulator
from statemachine import steps
from tests.conftest import MakeWorld


def graph_writes(world: World) -> list[Any]:
    """Every request to Microsoft that is not a read (token requests aside)."""
    return [
        r
        for r in world.microsoft.requests
        if r.method not in ("GET", "HEAD") and not (r.method == "POST" and "token" in r.path)
    ]


def dm_files(world: World, user: str, ext: str = ".csv") -> list[dict[str, Any]]:
    """The files shared in `user`'s DM with the bot whose names end in `ext`."""
    dm = next((cid for cid, uid in world.slack.ims.items() if uid == user), None)
    return [
        f
        for f in world.slack.files
        if dm is not None and f["channel"] == dm and str(f["name"]).endswith(ext)
    ]


async def test_an_admin_gets_the_summary_of_every_step(make_world: MakeWorld) -> None:
    """An admin's `plan contoso` is answered with the preview's line for each of the five
    steps and a note that the inventory is in their DM."""
    world = await make_world(users=12)
    reply = await world.command("plan contoso", user=ADMIN)
    assert "Preview of closing contoso" in reply, reply
    for n, name in enumerate(steps.names(), start=1):
        assert f"{n}. {steps.info(name).title}" in reply, (name, reply)
    assert "user x11" in reply  # everyone but the retained administrator
    assert messages.plan_file_sent(0).split("(")[0] in reply
    assert len(dm_files(world, ADMIN)) == 1


async def test_the_command_is_acknowledged_at_once_with_what_it_is_doing(
    make_world: MakeWorld,
) -> None:
    """The slash command's immediate answer (within Slack's 3 s) says the tenant is being read;
    the preview follows at the response_url."""
    world = await make_world(users=12)
    result = await world.slack.slash_command(user_id=ADMIN, text="plan contoso")
    assert result.status == 200 and result.ack is not None
    assert "Reading contoso from Microsoft" in str(result.ack.get("text"))
    final = await world.slack.wait_for(lambda _: result.responses[0] if result.responses else None)
    assert "Preview of closing contoso" in final["text"]


async def test_an_approver_named_by_email_gets_the_preview(make_world: MakeWorld) -> None:
    """An approver configured by email (resolved through Slack) may preview the tenant, and the
    file goes to that approver's DM, not the admin's."""
    world = await make_world(users=12, approvers=("blake@msp.example", *APPROVERS[1:]))
    reply = await world.command("plan contoso", user=APPROVERS[0])
    assert "Preview of closing contoso" in reply, reply
    assert len(dm_files(world, APPROVERS[0])) == 1 and dm_files(world, ADMIN) == []


async def test_another_user_is_refused_and_nothing_is_read(make_world: MakeWorld) -> None:
    """Someone neither admin nor approver is refused with the reason; Microsoft is not asked
    and no DM is opened."""
    world = await make_world(users=12)
    before = len(world.microsoft.requests)
    result = await world.slack.slash_command(user_id=OUTSIDER, text="plan contoso")
    assert result.ack is None  # no "Reading contoso" before a refusal
    reply = await world.slack.wait_for(lambda _: result.responses and result.responses[0])
    assert reply["text"] == messages.plan_readers()
    assert len(world.microsoft.requests) == before
    assert world.slack.ims == {} and world.slack.files == []


async def test_an_unknown_tenant_is_refused_naming_tenants_only_to_admins(
    make_world: MakeWorld,
) -> None:
    """`plan fabrikam` is refused as an unknown tenant; an admin hears the configured names,
    anyone else does not."""
    world = await make_world(users=12)
    assert "Configured tenants: contoso" in await world.command("plan fabrikam", user=ADMIN)
    outsider = await world.command("plan fabrikam", user=OUTSIDER)
    assert "Unknown tenant" in outsider and "contoso" not in outsider


async def test_a_preview_writes_nothing_but_its_audit_line(make_world: MakeWorld) -> None:
    """After a preview Microsoft saw no write, nothing was posted in any channel but the
    asker's DM, no closure exists, and the only database trace is one plan_previewed row."""
    world = await make_world(users=12)
    await world.command("plan contoso", user=ADMIN)
    assert graph_writes(world) == []
    dm = next(iter(world.slack.ims))
    assert {m.channel for m in world.slack.messages} == {dm}
    assert not [c for c in world.slack.calls if c["method"] in ("chat.postMessage", "chat.update")]
    assert world.service is not None
    db = world.service.db
    assert db.execute("SELECT COUNT(*) FROM closures").fetchone()[0] == 0
    rows = db.execute("SELECT tenant, closure_id, actor, action FROM audit").fetchall()
    assert rows == [("contoso", None, ADMIN, "plan_previewed")]


async def test_the_file_in_the_dm_lists_every_item(make_world: MakeWorld) -> None:
    """The CSV shared in the asker's DM has one row per item of every step, and step 1's rows
    are exactly the tenant's users but the retained administrator."""
    world = await make_world(users=12)
    await world.command("plan contoso", user=ADMIN)
    (shared,) = dm_files(world, ADMIN)
    assert shared["name"].startswith("contoso-plan-") and shared["name"].endswith(".csv")
    content = shared["content"]
    text = content.decode() if isinstance(content, bytes) else str(content)
    rows = list(csv.DictReader(io.StringIO(text)))
    users = {r["id"] for r in rows if r["step"] == "delete_users"}
    expected = {
        uid
        for uid, u in world.tenant.users.items()
        if u.get("userPrincipalName") != world.tenant.retained_upn
    }
    assert users == expected and len(users) == 11
    assert all(r["kind"] and r["name"] and r["what happens"] for r in rows)


async def test_a_refused_dm_still_answers_the_summary_and_says_why(
    make_world: MakeWorld,
) -> None:
    """When Slack refuses to open the DM, the ephemeral answer still has the preview and says
    the file could not be sent, with Slack's error and the fix."""
    world = await make_world(users=12)
    world.slack.fail_next("conversations.open", error="missing_scope")
    reply = await world.command("plan contoso", user=ADMIN)
    assert "Preview of closing contoso" in reply
    assert "could not be sent" in reply and "missing_scope" in reply
    assert "reinstall the app" in reply and world.slack.files == []


async def test_a_refused_upload_still_answers_the_summary(make_world: MakeWorld) -> None:
    """When Slack refuses to share the uploaded file, the answer keeps the preview and names
    the error; the audit line records that the file was not sent."""
    world = await make_world(users=12)
    world.slack.fail_next("files.completeUploadExternal", error="not_in_channel")
    reply = await world.command("plan contoso", user=ADMIN)
    assert "Preview of closing contoso" in reply and "`not_in_channel`" in reply
    assert world.service is not None
    (detail,) = world.service.db.execute("SELECT detail FROM audit").fetchone()
    assert '"file_sent": false' in detail and '"slack_error": "not_in_channel"' in detail


def test_a_long_summary_is_cut_at_whole_lines_and_points_to_the_file() -> None:
    """Lines beyond the limit are left out whole, the answer says how many, and text from
    outside cannot mention or format."""
    lines = ["<!channel> & friends", *[f"line {n}" for n in range(100)]]
    text, cut = messages.plan_summary(lines, limit=120)
    assert cut and "&lt;!channel&gt; &amp; friends" in text
    assert "more line(s)" in text and "line 99" not in text
    assert messages.plan_summary(["a", "b"]) == ("```a\nb```", False)


async def _open(sim: SlackSimulator, **args: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sim.api_url}conversations.open",
            data=args,
            headers={"Authorization": f"Bearer {sim.bot_token}"},
        ) as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return body


async def test_the_simulator_opens_one_dm_per_member_as_slack_does() -> None:
    """conversations.open gives a D channel for a member, the same one again with no_op and
    already_open, the IM object with return_im; a deactivated member is user_disabled."""
    users = [SimUser("U0ONE", "one", "one@example.com"), SimUser("U0TWO", "two", "two@x.com")]
    async with SlackSimulator(users=users) as sim:
        first = await _open(sim, users="U0ONE")
        assert first["ok"] and first["channel"]["id"].startswith("D") and "no_op" not in first
        again = await _open(sim, users="U0ONE", return_im="true")
        assert again["no_op"] and again["already_open"]
        assert again["channel"]["id"] == first["channel"]["id"]
        assert again["channel"]["is_im"] and again["channel"]["user"] == "U0ONE"
        sim.deactivate("U0TWO")
        assert (await _open(sim, users="U0TWO"))["error"] == "user_disabled"
        assert (await _open(sim))["error"] == "users_list_not_supplied"


async def test_the_simulator_refuses_a_dm_without_im_write() -> None:
    """Without the im:write scope conversations.open is missing_scope, naming im:write."""
    users = [SimUser("U0ONE", "one", "one@example.com")]
    async with SlackSimulator(users=users, bot_scopes=frozenset({"chat:write"})) as sim:
        body = await _open(sim, users="U0ONE")
        assert body["error"] == "missing_scope" and body["needed"] == "im:write"


async def test_a_summary_too_long_for_the_answer_is_sent_whole_in_the_dm(
    make_world: MakeWorld,
) -> None:
    """When the preview's lines do not all fit the ephemeral answer, the answer says how many
    were left out and the DM also holds the whole text."""
    world = await make_world(users=12)
    reply = await world.command("plan contoso", user=ADMIN)
    assert "more line(s): every line is in the file" in reply
    (whole,) = dm_files(world, ADMIN, ".txt")
    content = whole["content"]
    text = content.decode() if isinstance(content, bytes) else str(content)
    assert text.startswith("Preview of closing contoso") and "5. " in text
    assert len(text) > messages.PLAN_SUMMARY_LIMIT
