"""Every approval shows everything (issue 13 item 3): each request's full inventory as a CSV in
the thread (kind, ID, name, what happens to it), names as people know them (no deleted-user
prefix), step 5's applications and service principals with the bot's own last, and step 4's
reason for each setting it changes."""

from __future__ import annotations

import csv
import io

from bot import messages
from bot.microsoft.steps.delete_directory import MICROSOFT_TENANT
from bot.world import APPROVERS, World
from simulator.microsoft.graph_data import SimTenant
from simulator.slack.server import SimMessage
from tests.conftest import MakeWorld


def inventory(world: World, request: SimMessage) -> list[dict[str, str]]:
    """The rows of the request's inventory file, found in the closure's thread by name."""
    assert request.metadata is not None
    plan_hash = request.metadata["event_payload"]["plan_hash"]
    step = request.metadata["event_payload"]["step"]
    [found] = [f for f in world.slack.files if f["name"] == f"plan-{step}-{plan_hash[:12]}.csv"]
    status = world.status()
    assert status is not None and found["thread_ts"] == status.ts
    return list(csv.DictReader(io.StringIO(found["content"].decode())))


def request_text(request: SimMessage) -> str:
    """The request's mrkdwn as sent, section by section (no wrapping, entities as they are)."""
    texts = []
    for block in request.blocks or []:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts += [e["text"] for e in block["elements"]]
    return "\n".join(texts)


def ready_for_step4(tenant: SimTenant) -> None:
    """Steps 1-3 done as Microsoft sees them: only the retained admin left, nothing billed."""
    for user_id, user in list(tenant.users.items()):
        if user is not tenant.retained_user:
            tenant.soft_delete_user(user_id)
    for sub in tenant.subscriptions:
        sub["status"] = "Deleted"


def test_a_deleted_users_prefix_is_removed_and_nothing_else() -> None:
    """Microsoft's prefix (the object ID without dashes) comes off a deleted user's name; a name
    that does not start with the user's own ID is left as it is."""
    user_id = "007d1dbe-5b1a-4c2e-9f3d-2a6b8c0e4f11"
    prefixed = "007d1dbe5b1a4c2e9f3d2a6b8c0e4f11lena.kowalski172@contoso.com"
    assert messages.unprefixed_upn(prefixed, user_id) == "lena.kowalski172@contoso.com"
    assert messages.unprefixed_upn("lena@contoso.com", user_id) == "lena@contoso.com"
    other = "11111111111111111111111111111111lena@contoso.com"
    assert messages.unprefixed_upn(other, user_id) == other


async def test_a_short_plans_request_has_its_inventory_file(make_world: MakeWorld) -> None:
    """Ten users (a request far below its 50 blocks): the thread still gets the CSV with every
    item once, its kind, ID, name and what happens to it, and the request points to it."""
    world = await make_world(users=10)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    rows = inventory(world, request)
    kept = world.tenant.retained_user
    assert kept is not None
    expected = {uid for uid in world.tenant.users if uid != kept["id"]}
    assert {r["id"] for r in rows} == expected and len(rows) == len(expected)
    assert list(rows[0]) == ["kind", "id", "name", "action", "why", "detail"]
    assert all(r["action"].startswith("deleted (restorable for 30 days") for r in rows)
    names = {world.tenant.users[r["id"]]["userPrincipalName"] for r in rows}
    assert {r["name"] for r in rows} == names
    assert f"`plan-delete_users-{request.metadata['event_payload']['plan_hash'][:12]}.csv`" in (
        request_text(request)
    )


async def test_step_5_names_deleted_users_without_microsofts_prefix(
    make_world: MakeWorld,
) -> None:
    """Step 5's request and its file name each soft-deleted user by the name people know; the
    object-ID prefix Microsoft gives deleted users shows nowhere, the ID stays in its column."""
    world = await make_world(users=6)
    ready_for_step4(world.tenant)
    world.script_approvers(skip=("delete_directory",))
    world.script_admin()
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_directory", timeout=90)
    text = request_text(request)
    names = {r["id"]: r["name"] for r in inventory(world, request) if r["kind"] == "deleted_user"}
    assert len(names) == len(world.tenant.deleted_users) == 5
    for user_id, user in world.tenant.deleted_users.items():
        prefixed = str(user["userPrincipalName"])
        known = prefixed[len(user_id.replace("-", "")) :]
        assert prefixed.startswith(user_id.replace("-", "")) and "@" in known
        assert prefixed not in text and f"`{known}` `{user_id}`" in text
        assert names[user_id] == known


async def test_step_5_lists_every_app_and_service_principal_the_bots_own_last(
    make_world: MakeWorld,
) -> None:
    """Step 5's request names each app registration (with its service principal) and each
    enterprise application it deletes or disables, and the bot's own access comes last, in the
    request and in its file."""
    world = await make_world(users=4)
    ready_for_step4(world.tenant)
    world.script_approvers(skip=("delete_directory",))
    world.script_admin()
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_directory", timeout=90)
    text = request_text(request)
    tenant = world.tenant
    own_app = next(a for a in tenant.applications.values() if a["appId"] == tenant.client_id)
    apps = [a for a in tenant.applications.values() if a is not own_app]
    sps = [
        sp
        for sp in tenant.service_principals.values()
        if sp["appOwnerOrganizationId"] != MICROSOFT_TENANT
        and sp["appId"] not in {a["appId"] for a in tenant.applications.values()}
    ]
    assert apps and sps
    for obj in [*apps, *sps]:
        assert f"`{obj['displayName']}` `{obj['id']}`" in text
    for app in apps:
        sp = next(s for s in tenant.service_principals.values() if s["appId"] == app["appId"])
        assert f"with its service principal `{sp['id']}`" in text
    own_line = text.index(f"`{own_app['id']}`", text.index("The bot's own app registration"))
    assert all(own_line > text.index(f"`{obj['id']}`") for obj in [*apps, *sps])
    rows = inventory(world, request)
    assert rows[-1]["kind"] == "own_application" and rows[-1]["id"] == own_app["id"]
    assert {r["id"] for r in rows if r["kind"] == "service_principal"} == {s["id"] for s in sps}
    spared = next(r for r in rows if r["kind"] == "service_principal")
    assert spared["action"] == (
        "deleted, then purged from the recycle bin (disabled instead if Microsoft refuses the"
        " delete)"
    )


async def test_step_4_says_why_each_setting_changes(make_world: MakeWorld) -> None:
    """Step 4's request gives each setting's reason (security defaults, each conditional access
    policy and what it requires), quotes Microsoft's close-your-account page, and says the
    retained administrator keeps its per-user MFA; the file has the reason in its own column."""
    world = await make_world(users=4)
    ready_for_step4(world.tenant)
    world.tenant.security_defaults_enabled = True
    world.script_approvers(skip=("disable_mfa",))
    await world.command(world.tenant.name)
    request = await world.wait_request("disable_mfa", timeout=60)
    text = request_text(request)
    rows = inventory(world, request)
    policies = [r for r in rows if r["kind"] == "ca_policy"]
    assert policies and any(r["kind"] == "security_defaults" for r in rows)
    for row in rows:
        reason = row["why"]
        assert reason, row
        assert f"`{row['id']}`: {reason}" in text
    assert all(r["why"].startswith("it requires") for r in policies)
    assert messages.CLOSE_YOUR_ACCOUNT_MFA in text
    kept = world.tenant.retained_user
    assert kept is not None
    assert f"(`{kept['userPrincipalName']}`) keeps its per-user MFA" in text


async def test_a_refused_upload_never_holds_the_request_up(make_world: MakeWorld) -> None:
    """Slack refusing the inventory file is audited with its error; the request still lists its
    items and is approved and acted on as usual."""
    world = await make_world(users=6)
    world.slack.fail_next("files.getUploadURLExternal", error="not_in_channel")
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    assert world.slack.files == []
    assert "`" in request_text(request)  # the items are still listed in the request
    for approver in APPROVERS[:2]:
        await world.vote(request, approver)
    await world.slack.wait_for(
        lambda _: any("Step 1 approved" in m.text for m in world.slack.messages)
    )
    assert world.service is not None
    refused = [r for r in world.service.db["audit"].rows if r["action"] == "plan_file_refused"]
    assert len(refused) == 1 and "not_in_channel" in refused[0]["detail"]
