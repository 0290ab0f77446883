"""Files Slack refuses are said in the thread, not only in the log: the request's inventory (with
`close-account-bot plan ... --format csv` to print it) and the list of what a closure changed
(audited, tried a few times at most, with `close-account-bot audit --deleted` to print it); a
stopped step's long checklist is capped in the summary so it stays one Slack message."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages, summary
from bot.summary import CHECKLIST_SHOWN, SHARE_TRIES, Approval, _Line
from bot.world import World
from statemachine.plan import Item, Plan
from storage.closures import ClosureRow
from tests.test_summary import approve, changed_files, summaries


def texts(world: World, *words: str) -> list[str]:
    """The texts of the messages that hold every one of `words`."""
    return [m.text for m in world.slack.messages if all(w in m.text for w in words)]


def audit_rows(world: World, action: str) -> list[dict[str, object]]:
    assert world.service is not None
    return [r for r in world.service.db["audit"].rows if r["action"] == action]


async def test_a_refused_inventory_file_is_said_in_the_thread(world: World) -> None:
    """Slack refusing the request's file (not_in_channel at files.completeUploadExternal, the
    last call of files_upload_v2) puts one line in the thread with its error and the plan
    command that prints the file; the refusal is audited."""
    world.slack.fail_next("files.completeUploadExternal", error="not_in_channel")
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    await world.slack.wait_for(lambda _: texts(world, "could not be attached"))
    [line] = texts(world, "could not be attached")
    assert "`not_in_channel`" in line and "step 1/5" in line
    assert f"close-account-bot plan --config CONFIG --tenant {world.tenant.name} --format csv" in (
        line
    )
    status = world.status()
    assert status is not None
    said = next(m for m in world.slack.messages if m.text == line)
    assert said.thread_ts == status.ts
    assert len(audit_rows(world, "plan_file_refused")) == 1


async def test_an_unreachable_slack_during_the_upload_is_said_too(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network error while uploading the inventory (not a Slack answer) is audited and said
    like a refusal instead of ending the request's phase with an error."""

    async def reset(*_: object, **__: object) -> None:
        raise aiohttp.ClientConnectionError("connection reset")

    monkeypatch.setattr(AsyncWebClient, "files_upload_v2", reset)
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    await world.slack.wait_for(lambda _: texts(world, "could not be attached"))
    [line] = texts(world, "could not be attached")
    assert "ClientConnectionError" in line
    [row] = audit_rows(world, "plan_file_refused")
    assert "ClientConnectionError" in str(row["detail"])
    assert not audit_rows(world, "failed")


async def test_a_refused_changed_list_is_audited_said_and_tried_a_few_times(
    world: World,
) -> None:
    """Slack refusing the list of what a closure changed is audited with its error, said once in
    the thread with `audit --deleted`, and tried SHARE_TRIES times at most however often the
    thread is flushed."""
    await world.command(world.tenant.name)
    await approve(world, "delete_users")
    await world.wait_request("cancel_subscriptions")
    world.slack.fail_next("files.completeUploadExternal", error="not_in_channel", count=20)
    await world.command(f"abort {world.tenant.name}")
    await world.slack.wait_for(lambda _: texts(world, "could not be shared"))
    [line] = texts(world, "could not be shared")
    assert "`not_in_channel`" in line
    assert f"close-account-bot audit --config CONFIG --tenant {world.tenant.name} --deleted" in (
        line
    )
    assert world.service is not None
    closure_id = str(world.service.db["closures"].rows.__next__()["id"])
    for _ in range(SHARE_TRIES + 3):
        await world.service.core.outbox.flush(closure_id)
    refused = audit_rows(world, summary.REFUSED)
    assert len(refused) == SHARE_TRIES
    assert all("not_in_channel" in str(r["detail"]) for r in refused)
    assert changed_files(world) == [] and len(summaries(world)) == 1
    assert len(texts(world, "could not be shared")) == 1


def closure() -> ClosureRow:
    return ClosureRow(
        id="c1",
        tenant="contoso",
        tenant_id="t1",
        requester="U1",
        state="aborted",
        failed_phase=None,
        reason=None,
        channel="C1",
        status_ts="1.0",
        status_sending_at=None,
        status_state=None,
        created_at=0.0,
        updated_at=0.0,
        display_name=None,
        changes=(),
        sync_action=False,
        rollback_requester=None,
    )


def test_a_stopped_steps_long_checklist_is_capped_in_the_summary(tmp_path: Path) -> None:
    """A stopped step with 2,000 checklist lines shows CHECKLIST_SHOWN of them and how many
    more; the summary stays far below chat.postMessage's 40,000 characters."""
    from storage.db import open_db

    db = open_db(f"{tmp_path}/t.db")
    step = "cancel_subscriptions"
    checklist = tuple(f"Cancel subscription {n} {'x' * 150}" for n in range(2000))
    plan = Plan(step, "t1", (Item("subscription", "s1", "E5"),), checklist=checklist)
    approved = [Approval(step, plan, (("U1", 0.0),), 0.0, None)]
    line = _Line(step, "stopped", {"subscription": 1}, 0, 1, [("U1", 0.0)])
    left = summary._left(closure(), "aborted", [line], db, approved)
    name = messages.step_name(step)
    shown = [x for x in left if x.startswith(f"{name}: Cancel subscription")]
    assert len(shown) == CHECKLIST_SHOWN
    assert messages.checklist_more(name, 2000 - CHECKLIST_SHOWN) in left
    text = messages.summary_text(
        tenant="contoso",
        tenant_id="t1",
        end="aborted",
        reason=None,
        started_at=0.0,
        ended_at=1.0,
        lines=[line.as_tuple()],
        left=left,
        changed=1,
    )
    assert len(text) < 10_000
