"""A backup taken while the bot runs, restored as deploy/README says: the bot resumes the
closure from the backup's state without sending a Graph write or a thread post twice, and
counts the votes Slack shows on the request, not the ones the backup remembers.

Each scenario runs once per module; its tests read what the simulators recorded and what the
backup and the restored database hold. The backup and the restore run deploy/README's own code
(the `python -c` backup and the restore script of the Docker recipe), with the paths changed.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from bot.world import ADMIN, APPROVERS, CHANNEL, OUTSIDER, World
from simulator.slack.server import SimMessage
from tests.conftest import MakeWorld

README = Path(__file__).resolve().parent.parent / "deploy" / "README.md"
BACKUP_NAME = "close-account-2025-11-28.db"  # the file name deploy/README restores
WRITES = frozenset({"DELETE", "PATCH", "PUT", "POST"})


# --- deploy/README's procedure, run as written ------------------------------------------------


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def backup(db: Path, backups: Path) -> Path:
    """deploy/README's online backup with sqlite3.Connection.backup, the bot running."""
    match = re.search(r"python -c '\n(.*?)\n' \"/backups/", _readme(), re.S)
    assert match, "deploy/README lost its Python backup snippet"
    code = match.group(1).replace("/data/close-account.db", str(db))
    backups.mkdir(exist_ok=True)
    dest = backups / BACKUP_NAME
    subprocess.run([sys.executable, "-c", code, str(dest)], check=True, timeout=60)
    return dest


def restore(db: Path, backups: Path) -> None:
    """deploy/README's "Restoring" (the Docker recipe's script), the bot stopped: move the
    database and its -wal and -shm aside, put the backup in place, check it."""
    match = re.search(r"--entrypoint sh \\\n.*? -c '\n(.*?)\n\s*'\n", _readme(), re.S)
    assert match, "deploy/README lost its restore script"
    script = (
        match.group(1)
        .replace("/data", str(db.parent))
        .replace("/backups/", f"{backups}/")
        .replace("python -c", f"{sys.executable} -c")
    )
    done = subprocess.run(
        ["sh", "-c", script], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr
    assert not db.with_name(db.name + "-wal").exists()
    assert (db.stat().st_mode & 0o777) == 0o600


def query(db: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


def audit_after(db: Path, backup_file: Path) -> list[dict[str, Any]]:
    """The restored database's audit rows written after the restore (the backup ends at the
    last row it holds), with their detail decoded."""
    last = query(backup_file, "SELECT max(id) AS id FROM audit")[0]["id"]
    rows = query(db, "SELECT * FROM audit WHERE id > ? ORDER BY id", last)
    for row in rows:
        row["detail"] = json.loads(row["detail"])
    return rows


def thread(world: World) -> list[SimMessage]:
    """The bot's own replies in the closure's thread, oldest first."""
    status = world.status()
    assert status is not None
    return [
        m
        for m in world.slack.replies(status.channel, status.ts)
        if m.user == world.slack.bot_user_id
    ]


# --- scenario 1: a backup taken while step 1 deletes users -----------------------------------


@dataclass
class Executing:
    world: World
    backup: Path
    db: Path
    restored_at: int  # index into world.microsoft.requests where the restored bot begins


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def executing(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Executing]:
    """Backup while the bot deletes users (20 of 39 done); the bot goes on into step 3 (the
    rest of the users, step 2's approval and checklist); stop; restore; start; closed."""
    directory = tmp_path_factory.mktemp("restore-executing")
    world = await World.create(users=40, directory=directory)
    try:
        db = world.settings().storage_path
        world.microsoft.hold_writes(after=25)
        await world.command(world.tenant.name)
        request = await world.wait_request("delete_users")
        await world.vote(request, APPROVERS[0])
        await world.vote(request, APPROVERS[1])
        await world.microsoft.writes_held()
        backup_file = backup(db, directory / "backups")
        world.microsoft.release_writes()
        world.script_approvers()
        world.script_admin()
        await world.wait_state("delete_disabled_subscriptions.awaiting_approval")
        await world.stop_bot()
        restore(db, directory / "backups")
        restored_at = len(world.microsoft.requests)
        await world.start_bot()
        await world.wait_state("closed", timeout=60)
        await world.stop_bot()
        yield Executing(world, backup_file, db, restored_at)
    finally:
        await world.close()


def test_the_restored_bot_resumes_the_backups_state_and_closes(executing: Executing) -> None:
    """Started on the restored backup, the bot goes on from step 1's executing phase (where the
    backup left it, not where the lost database was) and closes the tenant."""
    held = query(executing.backup, "SELECT state FROM closures")
    assert [r["state"] for r in held] == ["delete_users.executing"]
    moves = [
        r["detail"] for r in audit_after(executing.db, executing.backup) if "to" in r["detail"]
    ]
    assert moves[0]["from"] == "delete_users.executing"
    assert moves[-1]["to"] == "closed"
    assert executing.world.state() == "closed"
    assert executing.world.tenant.deleted


def test_no_graph_write_is_sent_twice_for_the_same_object(executing: Executing) -> None:
    """Users the lost database deleted after the backup are not deleted again (not even as a
    DELETE answered 404): every write reaches Microsoft once per object over both runs."""
    step = query(executing.backup, "SELECT done, total FROM steps WHERE step = 'delete_users'")
    assert step[0]["done"] < step[0]["total"], "the backup should hold deletes still to do"
    records = executing.world.microsoft.requests
    writes = Counter(  # a DELETE answered 404 counts; a 429 or 5xx was not carried out
        (r.method, r.path)
        for r in records
        if r.method in WRITES
        and r.path.startswith(("/v1.0/", "/beta/", "/arm/"))
        and not r.path.endswith("/$batch")
        and r.status != 429
        and r.status < 500
    )
    assert writes, "the scenario made no Graph writes"
    assert [w for w, n in writes.items() if n > 1] == []
    after = [r for r in records[executing.restored_at :] if "/users/" in r.path]
    assert not [r for r in after if r.method == "DELETE"], "the restored bot deleted users again"


# --- scenario 2: a backup taken while votes come in and posts wait for Slack ------------------


@dataclass
class Voting:
    world: World
    backup: Path
    db: Path
    refusals: list[str]  # the two refusal posts queued in the backup, in order
    late_event: str  # the event ID of APPROVERS[2]'s vote after the restore


def _refusals(world: World) -> list[SimMessage]:
    return [m for m in thread(world) if "reaction does not count" in m.text]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def voting(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Voting]:
    """Step 1 waits on approvals. Before the backup: APPROVERS[0] approves; Slack fails two
    posts, so one refusal is being sent and a second is still queued. After it: the refusals
    go out, APPROVERS[0] withdraws, APPROVERS[2] approves and withdraws, APPROVERS[1] approves.
    Stop; restore; start; APPROVERS[2] approves again."""
    directory = tmp_path_factory.mktemp("restore-voting")
    world = await World.create(users=5, directory=directory)
    slack = world.slack
    try:
        db = world.settings().storage_path
        await world.command(world.tenant.name)
        request = await world.wait_request("delete_users")
        await world.vote(request, APPROVERS[0])
        await slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())

        def failed_posts() -> int:
            return sum(1 for c in slack.calls if c["method"] == "chat.postMessage" and not c["ok"])

        # A refusal is ephemeral; only when Slack refuses that does it become a thread post.
        slack.fail_next("chat.postEphemeral", error="user_not_in_channel", count=2)
        slack.fail_next("chat.postMessage", error="fatal_error", count=2)
        await world.vote(request, OUTSIDER)  # refused; its post fails
        await slack.wait_for(lambda _: failed_posts() == 1)
        await world.vote(request, ADMIN)  # refused; the first refusal fails again before it
        await slack.wait_for(lambda _: failed_posts() == 2)
        backup_file = backup(db, directory / "backups")

        react = slack.react
        await react(
            user_id=APPROVERS[0],
            channel=CHANNEL,
            ts=request.ts,
            name="white_check_mark",
            remove=True,
        )
        await slack.wait_for(lambda _: len(_refusals(world)) == 2)
        refusals = [m.text for m in _refusals(world)]
        await world.vote(request, APPROVERS[2])
        await react(
            user_id=APPROVERS[2],
            channel=CHANNEL,
            ts=request.ts,
            name="white_check_mark",
            remove=True,
        )
        await world.vote(request, APPROVERS[1])
        await world.stop_bot()
        assert world.state() == "delete_users.awaiting_approval"

        restore(db, directory / "backups")
        await world.start_bot()
        late = await react(
            user_id=APPROVERS[2], channel=CHANNEL, ts=request.ts, name="white_check_mark"
        )
        assert late.event_id is not None
        await world.wait_state("delete_users.verifying", "cancel_subscriptions.awaiting_approval")
        await world.stop_bot()
        yield Voting(world, backup_file, db, refusals, late.event_id)
    finally:
        await world.close()


def test_posts_queued_in_the_backup_are_not_sent_again(voting: Voting) -> None:
    """Both refusals queued in the backup (one mid-send, one not yet tried) went out after it;
    the restored bot finds them in the thread and posts neither again, nor any other reply."""
    held = query(voting.backup, "SELECT text, sending_at FROM outbox WHERE ts IS NULL ORDER BY id")
    assert [r["text"] for r in held] == voting.refusals
    assert [r["sending_at"] is not None for r in held] == [True, False]
    texts = Counter(m.text for m in thread(voting.world))
    assert [texts[t] for t in voting.refusals] == [1, 1]
    assert [t for t, n in texts.items() if n > 1] == []
    sent = query(voting.db, "SELECT text, ts FROM outbox WHERE text LIKE '%does not count%'")
    posted = {m.text: m.ts for m in _refusals(voting.world)}
    assert {r["text"]: r["ts"] for r in sent} == posted


def test_a_vote_withdrawn_after_the_backup_does_not_count(voting: Voting) -> None:
    """The backup holds APPROVERS[0]'s approval, withdrawn after it: the restored bot drops it
    (the reaction is gone from the request) and approves step 1 without it."""
    held = query(voting.backup, "SELECT approver FROM votes")
    assert [r["approver"] for r in held] == [APPROVERS[0]]
    rows = audit_after(voting.db, voting.backup)
    withdrawn = [r["actor"] for r in rows if r["action"] == "withdrawal_reconciled"]
    assert withdrawn == [APPROVERS[0]]
    approved = [r["detail"]["approvers"] for r in rows if r["action"] == "approve"]
    assert [sorted(a) for a in approved] == [[APPROVERS[1], APPROVERS[2]]]


def test_a_vote_added_after_the_backup_counts_only_as_slack_shows_it(voting: Voting) -> None:
    """APPROVERS[1]'s approval, stored only by the lost database, counts because the request
    still carries the reaction (read back with reactions.get); APPROVERS[2]'s approval and
    withdrawal after the backup leave nothing, so it counts only for its vote after the restore."""
    rows = audit_after(voting.db, voting.backup)
    counted = {(r["actor"], r["action"], r["event_id"]) for r in rows if "vote" in r["action"]}
    assert counted == {
        (APPROVERS[1], "vote_reconciled", None),
        (APPROVERS[2], "vote", voting.late_event),
    }
    votes = query(voting.db, "SELECT approver, event_id FROM votes ORDER BY approver")
    assert votes == [
        {"approver": APPROVERS[1], "event_id": None},
        {"approver": APPROVERS[2], "event_id": voting.late_event},
    ]


# --- the outbox finds only the bot's own messages ---------------------------------------------


async def test_a_copy_of_a_queued_post_by_someone_else_is_not_taken_for_it(
    make_world: MakeWorld,
) -> None:
    """A post whose send failed is looked up in the thread before it is sent again; another
    member's message carrying the same metadata and text is not the bot's post."""
    world = await make_world(users=5)
    slack = world.slack
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    slack.fail_next("chat.postEphemeral", error="user_not_in_channel")  # so a thread post
    slack.fail_next("chat.postMessage", error="fatal_error")
    await world.vote(request, OUTSIDER)  # refused; the refusal's post fails
    await slack.wait_for(
        lambda _: any(c["method"] == "chat.postMessage" and not c["ok"] for c in slack.calls)
    )
    db = world.settings().storage_path
    post = query(db, "SELECT * FROM outbox WHERE ts IS NULL")[0]
    assert post["sending_at"] is not None
    status = world.status()
    assert status is not None
    slack.post(
        channel=CHANNEL,
        user=OUTSIDER,
        text=post["text"],
        metadata={
            "event_type": "close_account_event",
            "event_payload": {
                "closure_id": post["closure_id"],
                "post_id": post["id"],
                "queued_at": round(post["created_at"] * 1000),
            },
        },
        thread_ts=status.ts,
    )
    await world.vote(request, APPROVERS[0])  # counted: the bot flushes, then edits the status
    await slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert [m.text for m in thread(world)].count(post["text"]) == 1
    assert query(db, "SELECT ts FROM outbox WHERE id = ?", post["id"])[0]["ts"] is not None


# --- Litestream, as deploy/README shows it ----------------------------------------------------


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_the_litestream_config_in_deploy_readme_names_the_bots_database() -> None:
    """Each litestream.yml deploy/README shows parses as YAML and replicates exactly the
    database its recipe configures: the systemd path, and the Docker volume's."""
    text = _readme()
    systemd = re.findall(r'path = "([^"]+)"', _section(text, "## With systemd"))
    docker = re.search(r'path = "([^"]+)"\s+# Docker', text)
    assert systemd and docker
    section = _section(text, "### Continuous replication with Litestream")
    configs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    paths = [[db["path"] for db in c["dbs"]] for c in configs]
    assert paths == [[systemd[0]], [docker.group(1)]]
    for config in configs:
        assert set(config["dbs"][0]["replica"]) >= {"url"}
