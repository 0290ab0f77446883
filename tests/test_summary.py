"""The closure's record at its end: a summary in the thread (each step's counts, approvers and
times, the duration, what is left for the admin) and the CSV of every object it changed, shared
once per end and exported by `close-account-bot audit --deleted` (issue 13 items 5 and 7)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from bot.__main__ import main
from bot.summary import FIELDS, queue_summary
from bot.world import APPROVERS, World
from simulator.slack.server import SimMessage
from storage import closures as closures_db
from tests.conftest import MakeWorld
from tests.test_faults import run_to_closed


def summaries(world: World) -> list[SimMessage]:
    return [m for m in world.slack.messages if "Summary of the closure" in m.text]


def changed_files(world: World) -> list[dict[str, Any]]:
    return [f for f in world.slack.files if str(f["name"]).startswith("changed-")]


async def wait_record(world: World, count: int = 1) -> tuple[SimMessage, list[dict[str, str]]]:
    """The `count`-th summary and the rows of the `count`-th changed-objects file."""
    await world.slack.wait_for(lambda _: len(changed_files(world)) >= count, timeout=30)
    content = changed_files(world)[count - 1]["content"]
    text = content.decode() if isinstance(content, bytes) else str(content)
    return summaries(world)[count - 1], list(csv.DictReader(io.StringIO(text)))


async def approve(world: World, step: str) -> None:
    request = await world.wait_request(step)
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])


def deleted_user_ids(world: World) -> set[str]:
    return {
        r.path.rsplit("/", 1)[-1]
        for r in world.microsoft.requests
        if r.method == "DELETE" and "/users/" in r.path and r.status == 204
    }


async def test_a_closed_closure_summarises_every_step_with_counts_and_approvers(
    make_world: MakeWorld,
) -> None:
    """Closed: the summary names each step as done with its counts, who approved it and when
    (UTC), the duration; the file lists every deleted user once, with its approvers."""
    world = await make_world(users=12)
    await run_to_closed(world)
    summary, rows = await wait_record(world)
    text = summary.text
    assert "closed" in text.split("\n")[0]
    for n in range(1, 6):
        assert f"• Step {n} (" in text
    assert "Step 1 (Delete users): done, 11 of 11 changes (Users: 11)" in text
    assert f"<@{APPROVERS[0]}> (" in text and " UTC)" in text and "took " in text
    assert "Nothing is left for the admin." in text
    users = [r for r in rows if r["kind"] == "user"]
    assert {r["id"] for r in users} == deleted_user_ids(world)
    assert len(users) == 11
    assert all(APPROVERS[0] in r["approved_by"] and r["executed_at"] for r in users)
    assert all(r["status"] == "done" and r["step"] == "delete_users" for r in users)
    # The summary is the last word in the thread before the file, after "closed".
    closed = next(m for m in world.slack.messages if ":checkered_flag: Tenant" in m.text)
    assert float(summary.ts) > float(closed.ts)


async def test_an_abort_midway_says_what_was_done_and_what_is_left(world: World) -> None:
    """Aborted while step 2 waits on the admin: step 1 done, step 2 stopped with its checklist
    left for the admin, steps 3 to 5 not reached, and the rollback offered."""
    await world.command(world.tenant.name)
    await approve(world, "delete_users")
    await approve(world, "cancel_subscriptions")
    await world.wait_state("cancel_subscriptions.waiting_external")
    await world.command(f"abort {world.tenant.name} out of budget")
    summary, rows = await wait_record(world)
    text = summary.text
    assert "aborted" in text.split("\n")[0] and "Why:" in text and "out of budget" in text
    assert "Step 1 (Delete users): done" in text
    assert "Step 2 (Cancel all active subscriptions): stopped after" in text
    for n in (3, 4, 5):
        assert f"Step {n} (" in text and "not reached" in text.split(f"Step {n} (")[1]
    left = text.split("*Left for the admin:*")[1]
    assert "Step 2: " in left and "Not done: Step 3, Step 4, Step 5." in left
    assert f"/close-account rollback {world.tenant.name}" in left
    assert {r["id"] for r in rows if r["kind"] == "user"} == deleted_user_ids(world)
    assert {r["status"] for r in rows if r["step"] == "cancel_subscriptions"} != {"done"}


async def test_a_rollback_gets_its_own_summary(world: World) -> None:
    """Aborted, then rolled back: a second summary for the rolled-back end, with the rollback's
    restores and approvers, and a second file listing the restored users too."""
    await world.command(world.tenant.name)
    await approve(world, "delete_users")
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    await world.command(f"abort {world.tenant.name}")
    await wait_record(world)
    await world.command(f"rollback {world.tenant.name}")
    await approve(world, "rollback")
    assert await world.wait_state("rolled_back") == "rolled_back"
    summary, rows = await wait_record(world, 2)
    assert "rolled back" in summary.text.split("\n")[0]
    assert "The rollback (Roll back what the closure changed): done" in summary.text
    restored = {r["id"] for r in rows if r["kind"] == "restore_user"}
    assert restored == deleted_user_ids(world) and restored
    assert len(summaries(world)) == 2


async def test_a_restart_posts_no_second_summary(make_world: MakeWorld) -> None:
    """After a restart, a closed closure's summary and file are not posted again; queueing the
    summary a second time for the same end yields nothing."""
    world = await make_world(users=6)
    await run_to_closed(world)
    await wait_record(world)
    await world.stop_bot()
    await world.start_bot()
    assert world.service is not None
    await world.service.runner.idle()
    assert len(summaries(world)) == 1 and len(changed_files(world)) == 1
    db = world.service.db
    row = closures_db.latest_closure_for(db, world.tenant.name)
    assert row is not None and row.state == "closed"
    assert queue_summary(db, row, at=row.updated_at) == []


async def test_audit_deleted_exports_the_same_list(
    make_world: MakeWorld, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`close-account-bot audit --deleted` prints the list the thread got, as CSV; `--format`
    is unchanged."""
    world = await make_world(users=8)
    await run_to_closed(world)
    _, rows = await wait_record(world)
    for key, value in world.environ.items():  # the CLI reads the secrets the config names
        monkeypatch.setenv(key, value)
    argv = ["audit", "--config", str(world.config_path), "--tenant", world.tenant.name]
    assert main([*argv, "--deleted"]) == 0
    out = capsys.readouterr().out
    assert list(csv.DictReader(io.StringIO(out))) == rows
    assert out.split("\r\n")[0] == ",".join(FIELDS)
    assert main([*argv, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("id,time,at,tenant")


async def test_a_closure_aborted_before_its_thread_existed_queues_no_summary(world: World) -> None:
    """Slack refused the first status message: the unstarted closure ends with no summary
    waiting for a thread that will never exist (nothing for a restart to retry)."""
    world.slack.kick_bot(world.channel)
    await world.command(world.tenant.name)
    assert world.service is not None
    db = world.service.db
    row = closures_db.latest_closure_for(db, world.tenant.name)
    assert row is not None and row.state == "aborted"
    assert closures_db.needing_slack(db) == []
    assert (
        db.execute("SELECT COUNT(*) FROM outbox WHERE closure_id = ?", [row.id]).fetchone()[0] == 0
    )
