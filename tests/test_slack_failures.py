"""Slack's failures as the bot meets them (issue 12): only the bot's own messages are the bot's,
every permanent Slack error is said aloud and recovered where it can be, and bursts are paced."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from bot import auditlog
from bot.home import closure_blocks, home_closure
from bot.outbox import Post
from bot.slackapi import Pace
from bot.world import ADMIN, APPROVERS, World
from statemachine.closure import split_state
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage import outbox as outbox_db
from tests.conftest import MakeWorld


def actions_of(world: World) -> list[str]:
    assert world.service is not None
    return [row.action for row in audit.trail(world.service.db, world.tenant.name)]


# -- only the bot's own messages --------------------------------------------------------------


async def test_a_lookalike_thread_post_is_not_taken_for_the_bots(world: World) -> None:
    """A post whose send a crash may have cut is not adopted from another app's copy of its
    metadata: the bot posts it itself and audits the look-alike."""
    assert world.service is not None
    core = world.service.core
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    row = closures_db.open_closure_for(core.db, world.tenant.name)
    assert row is not None and row.status_ts is not None
    post_id = core.outbox.enqueue(row.id, Post("the bot's own words"))
    outbox_db.mark_sending(core.db, post_id, 1.0)  # as if a crash cut the send
    [queued] = [p for p in outbox_db.pending(core.db, row.id) if p.id == post_id]
    metadata = {
        "event_type": "close_account_event",
        "event_payload": {
            "closure_id": row.id,
            "post_id": post_id,
            "queued_at": round(queued.created_at * 1000),
        },
    }
    fake = world.slack.post_as_app(
        "A0OTHER", world.channel, row.status_ts, "planted", metadata, name="mimic"
    )
    await core.outbox.flush(row.id)
    sent = [m for m in world.slack.find(event_type="close_account_event") if m.ts != fake.ts]
    assert [m.text for m in sent if m.metadata == metadata] == ["the bot's own words"]
    assert "lookalike_ignored" in actions_of(world)


async def test_a_lookalike_status_message_is_not_adopted(make_world: MakeWorld) -> None:
    """After a crash mid-post of the status message, another app's message with the status
    metadata is ignored: the bot posts its own status message."""
    world = await make_world(users=5)
    assert world.service is not None
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    db = world.service.db
    row = closures_db.open_closure_for(db, world.tenant.name)
    assert row is not None and row.status_ts is not None
    await world.stop_bot()
    real = world.slack.message(world.channel, row.status_ts)
    assert real is not None and real.metadata is not None
    fake = world.slack.post_as_app("A0OTHER", world.channel, None, "planted", real.metadata)
    world.slack.delete_message(world.channel, row.status_ts)
    with contextlib.closing(sqlite3.connect(world.directory / "close-account.db")) as conn:
        conn.execute(
            "UPDATE closures SET status_ts = NULL, status_sending_at = 1 WHERE id = ?", [row.id]
        )
        conn.commit()
    await world.start_bot()
    assert world.service is not None
    own = await world.slack.wait_for(
        lambda _: next((m for m in world.find_status_messages() if m.user != fake.user), None)
    )
    assert own.ts != fake.ts and own.text != "planted"
    assert fake.text == "planted" and not fake.edited
    assert "lookalike_ignored" in actions_of(world)


# -- permanent errors, said aloud -------------------------------------------------------------


async def test_a_refused_first_status_post_answers_the_admin(world: World) -> None:
    """With the bot removed from the progress channel, start answers with Slack's error and the
    fix, and leaves no open closure: once the bot is invited back, start works."""
    world.slack.kick_bot(world.channel)
    reply = await world.command(world.tenant.name)
    assert "not_in_channel" in reply and "/invite" in reply
    assert world.service is not None
    assert closures_db.open_closure_for(world.service.db, world.tenant.name) is None
    world.slack.invite_bot(world.channel)
    reply = await world.command(world.tenant.name)
    assert "not_in_channel" not in reply
    await world.wait_request("delete_users")


async def test_a_refused_thread_post_gets_a_stand_in_and_blocks_nothing(world: World) -> None:
    """A post Slack refuses for its blocks is replaced by a short plain-text stand-in; one
    refused in both forms is recorded, the requester is told, and the next post still goes."""
    assert world.service is not None
    core = world.service.core
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    row = closures_db.open_closure_for(core.db, world.tenant.name)
    assert row is not None
    bad_blocks = [{"type": "no_such_block"}]
    core.outbox.enqueue(row.id, Post("first words", blocks=bad_blocks))
    await core.outbox.flush(row.id)
    assert any("first words" in m.text and "invalid_blocks" in m.text for m in world.slack.messages)
    lost = core.outbox.enqueue(row.id, Post("second words", blocks=bad_blocks))
    core.outbox.enqueue(row.id, Post("third words"))
    world.slack.fail_next("chat.postMessage", error="msg_too_long", count=1)
    world.slack.fail_next("chat.postMessage", error="invalid_blocks", count=1)
    await core.outbox.flush(row.id)
    assert [p.id for p in outbox_db.refused(core.db, row.id)] == [lost]
    assert not outbox_db.pending(core.db, row.id)
    assert any(m.text == "third words" for m in world.slack.messages)
    assert any(e.get("user") == ADMIN for e in world.slack.ephemerals)
    assert actions_of(world).count("post_refused") == 2


async def test_a_closure_that_cannot_talk_to_slack_says_so_in_the_home_tab(world: World) -> None:
    """With the bot removed from the channel, the closure's Home tab entry names the error and
    the fix; once invited back, a restart brings Slack up to date and the line goes."""
    assert world.service is not None
    core = world.service.core
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    world.slack.kick_bot(world.channel)
    await world.command(f"abort {world.tenant.name} testing")
    await core.runner.idle()
    row = closures_db.latest_closure_for(core.db, world.tenant.name)
    assert row is not None and row.state == "aborted"
    shown = await home_closure(core.home, row)
    text = str(closure_blocks(shown, now=row.updated_at))
    assert "cannot talk to Slack" in text and "/invite" in text
    world.slack.invite_bot(world.channel)
    await world.stop_bot()
    await world.start_bot()
    await world.wait_state("aborted")
    assert world.service is not None
    await world.service.core.runner.idle()
    assert outbox_db.trouble(world.service.db, row.id) is None


async def test_a_deleted_request_is_posted_again_without_its_votes(world: World) -> None:
    """A request deleted in Slack while the bot was down is posted again as a new request with
    a fresh expiry; the vote on the vanished message does not count until cast again."""
    await world.command(world.tenant.name)
    first = await world.wait_request("delete_users")
    await world.vote(first, APPROVERS[0])
    await world.stop_bot()
    world.slack.delete_message(world.channel, first.ts, by="retention")
    await world.start_bot()
    second = await world.wait_request("delete_users", count=1)
    assert second.ts != first.ts
    assert world.service is not None
    db = world.service.db
    row = closures_db.open_closure_for(db, world.tenant.name)
    assert row is not None
    reqs = requests_db.requests_of(db, row.id)
    assert [r.status for r in reqs] == ["void", "open"]
    assert reqs[1].expires_at > reqs[0].expires_at
    assert requests_db.votes_for(db, reqs[1].id) == []
    assert any("was deleted in Slack" in m.text for m in world.slack.messages)
    assert split_state(row.state)[1] == "awaiting_approval"


async def test_a_request_deleted_while_waiting_is_posted_again(world: World) -> None:
    """A request an admin deletes while the bot runs and no vote comes is noticed within a few
    polls (one reactions.get per poll_interval): voided and posted again with a fresh expiry."""
    await world.command(world.tenant.name)
    first = await world.wait_request("delete_users")
    await world.slack.wait_for(  # the bot has read the request back once: it is waiting
        lambda s: any(
            c["method"] == "reactions.get" and c["ok"] and c["args"].get("timestamp") == first.ts
            for c in s.calls
        )
    )
    world.slack.delete_message(world.channel, first.ts, by="U0ADMIN1")
    second = await world.wait_request("delete_users", count=1, timeout=5.0)
    assert second.ts != first.ts
    assert world.service is not None
    db = world.service.db
    row = closures_db.open_closure_for(db, world.tenant.name)
    assert row is not None
    reqs = requests_db.requests_of(db, row.id)
    assert [r.status for r in reqs] == ["void", "open"]
    assert reqs[1].expires_at > reqs[0].expires_at


async def test_a_deleted_status_message_is_posted_again(world: World) -> None:
    """When the status message's edit answers message_not_found, a new status message is
    posted in its place (same metadata, its ts stored) and `status_reposted` is audited."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    assert world.service is not None
    db = world.service.db
    row = closures_db.open_closure_for(db, world.tenant.name)
    assert row is not None and row.status_ts is not None
    old = row.status_ts
    world.slack.delete_message(world.channel, old, by="U0ADMIN1")
    await world.vote(request, APPROVERS[0])  # the status message shows the vote: an edit
    status = await world.slack.wait_for(
        lambda _: (s := world.status()) is not None and s.ts != old and s, timeout=5.0
    )
    assert status.metadata is not None
    assert status.metadata["event_payload"]["closure_id"] == row.id
    await world.until(lambda: "status_reposted" in actions_of(world))  # stored after the post
    fresh = closures_db.get_closure(db, row.id)
    assert fresh is not None and fresh.status_ts == status.ts
    assert "status_reposted" in actions_of(world)


async def test_abort_closes_the_open_request(world: World) -> None:
    """After abort the open request shows it was closed, and a reaction on it is no vote."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.command(f"abort {world.tenant.name} changed our minds")
    await world.slack.wait_for(lambda _: "closure was aborted" in request.text)
    await world.vote(request, APPROVERS[0])
    assert world.service is not None
    await world.service.core.background.finish()
    db = world.service.db
    row = closures_db.latest_closure_for(db, world.tenant.name)
    assert row is not None
    [req] = requests_db.requests_of(db, row.id)
    assert req.status == "void" and requests_db.votes_for(db, req.id) == []


async def test_the_audit_row_is_written_once_the_export_is_in_slack(world: World) -> None:
    """A failed upload answers the person with Slack's error and records no export; a
    successful one records it."""
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    world.slack.fail_next("files.getUploadURLExternal", error="not_in_channel")
    reply = await world.command(f"audit {world.tenant.name}")
    assert "could not be posted" in reply and "not_in_channel" in reply
    assert "audit_export" not in actions_of(world)
    reply = await world.command(f"audit {world.tenant.name}")
    assert "could not be posted" not in reply
    assert actions_of(world).count("audit_export") == 1


# -- pacing -----------------------------------------------------------------------------------


def test_a_burst_of_calls_is_spread_within_the_tier() -> None:
    """A hundred reactions.get at once: ten go now, the rest one per 1.2 s (50 a minute), so
    no minute holds more than the burst plus the tier's 50."""
    pace = Pace(per_minute=50, burst=10)
    waits = [pace.reserve(1000.0) for _ in range(100)]
    assert waits[:10] == pytest.approx([0.0] * 10)
    assert waits[10] == pytest.approx(1.2) and waits[-1] == pytest.approx(90 * 1.2)
    starts = [1000.0 + w for w in waits]
    assert max(sum(1 for s in starts if t <= s < t + 60 - 1e-6) for t in starts) <= 60
    assert pace.reserve(1000.0 + 300) == 0.0  # after a quiet spell, calls go at once again


async def test_the_exported_files_are_the_trail_as_the_cli_prints_it(world: World) -> None:
    """The files written row by row off the event loop and streamed to Slack hold exactly what
    `close-account-bot audit` prints: the same CSV, and JSON that parses to the same entries."""
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    assert "could not be posted" not in await world.command(f"audit {world.tenant.name}")
    assert world.service is not None
    rows = audit.trail(world.service.db, world.tenant.name)
    shared = {f["name"]: f["content"] for f in world.slack.files if "-audit-" in f["name"]}
    csv_file = next(c for n, c in shared.items() if str(n).endswith(".csv"))
    json_file = next(c for n, c in shared.items() if str(n).endswith(".json"))
    exported = [r for r in rows if r.action != "audit_export"]
    assert csv_file.decode() == auditlog.as_csv(exported)
    assert json.loads(json_file) == json.loads(auditlog.as_json(exported))
