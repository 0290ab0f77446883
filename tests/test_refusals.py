"""Bad input gets a clear one-line answer and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.world import ADMIN, APPROVERS, OUTSIDER, World
from storage import closures as closures_db


def nothing_changed(world: World) -> None:
    assert world.service is not None
    assert closures_db.all_closures(world.service.db) == []
    assert world.slack.messages == []
    assert world.microsoft.requests == [] or all(
        r.method == "GET" or r.path.endswith("/token") for r in world.microsoft.requests
    )


async def test_unknown_tenant_is_refused(world: World) -> None:
    """Starting an unconfigured tenant names the configured ones and starts nothing."""
    reply = await world.command("fabrikam")
    assert "Unknown tenant `fabrikam`" in reply and world.tenant.name in reply
    nothing_changed(world)


async def test_only_admins_may_start(world: World) -> None:
    """An approver or a bystander cannot start a closure."""
    for user in (APPROVERS[0], OUTSIDER):
        reply = await world.command(world.tenant.name, user=user)
        assert "Only the configured admins" in reply
    nothing_changed(world)


@pytest.mark.parametrize("text", ["", "drop everything", "abort", "retry a b", "`rm -rf`"])
async def test_garbage_gets_usage(world: World, text: str) -> None:
    """Text that is not a command gets the usage line."""
    reply = await world.command(text)
    assert "Usage:" in reply
    nothing_changed(world)


async def test_only_admins_may_abort_or_retry(world: World) -> None:
    """abort and retry by a non-admin are refused and change nothing."""
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    for text in (f"abort {world.tenant.name}", f"retry {world.tenant.name}"):
        assert "Only the configured admins" in await world.command(text, user=APPROVERS[0])
    assert world.state() == "delete_users.awaiting_approval"


async def test_second_start_is_refused_while_one_is_open(world: World) -> None:
    """One open closure per tenant: a second start says which state the open one is in."""
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    reply = await world.command(world.tenant.name)
    assert "already open" in reply
    assert world.service is not None
    assert len(closures_db.all_closures(world.service.db)) == 1


async def test_abort_stops_the_closure(world: World) -> None:
    """An admin's abort ends the closure; approvals after it do nothing."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    assert "aborted" in await world.command(f"abort {world.tenant.name} wrong tenant")
    assert await world.wait_state("aborted") == "aborted"
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    assert world.state() == "aborted"
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]


async def test_status_list_help_answer_anyone(world: World) -> None:
    """status, list and help are answered for anyone, ephemerally."""
    assert "No open closures" in await world.command("list", user=OUTSIDER)
    assert "never closed" in await world.command("status", user=OUTSIDER)
    assert "Usage" in await world.command("help", user=OUTSIDER)
    await world.command(world.tenant.name, user=ADMIN)
    await world.wait_request("delete_users")
    assert "awaiting_approval" in await world.command(f"status {world.tenant.name}", user=OUTSIDER)
    assert world.slack.ephemerals and all(
        e["response_type"] == "ephemeral" for e in world.slack.ephemerals
    )


async def test_bad_signature_and_stale_timestamp_are_401(world: World) -> None:
    """Requests Slack did not sign, or signed too long ago, get 401 and change nothing."""
    body = f"command=/close-account&text={world.tenant.name}&user_id={ADMIN}"
    bad = await world.slack.deliver(
        body.encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Signature": "v0=" + "0" * 64},
        sign=False,
    )
    assert bad.status == 401
    import time

    stale = await world.slack.deliver(
        body.encode(),
        content_type="application/x-www-form-urlencoded",
        timestamp=int(time.time()) - 6 * 60,
    )
    assert stale.status == 401
    unsigned = await world.slack.deliver(
        body.encode(), content_type="application/x-www-form-urlencoded", sign=False
    )
    assert unsigned.status == 401
    nothing_changed(world)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    """A config error exits 2 with one line naming the file and key, and no traceback."""
    config = tmp_path / "bot.toml"
    config.write_text('[slack]\nprogress_channel = "C0X"\nadmins = []\n')
    result = run_cli(
        "audit",
        "--config",
        str(config),
        "--tenant",
        "contoso",
        env={"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "xoxb-x"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and "slack.admins" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """A missing config file is one line, exit 2."""
    result = run_cli("check", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_diagram_prints_mermaid() -> None:
    """`diagram` prints transitions' Mermaid stateDiagram-v2."""
    result = run_cli("diagram")
    assert result.returncode == 0
    assert "stateDiagram-v2" in result.stdout and "delete_users.awaiting_approval" in result.stdout


async def test_audit_posts_csv_and_json_in_the_thread(world: World) -> None:
    """`audit <tenant>` by an approver posts the trail as CSV and JSON files in the thread."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    reply = await world.command(f"audit {world.tenant.name}", user=APPROVERS[1])
    assert "Posted the audit trail" in reply
    exported = [f for f in world.slack.files if not f["name"].startswith("plan-")]
    names = sorted(f["name"] for f in exported)
    assert names[0].endswith(".csv") and names[1].endswith(".json")
    status = world.status()
    assert status is not None and all(f["thread_ts"] == status.ts for f in exported)
    csv_text = next(f for f in exported if f["name"].endswith(".csv"))["content"]
    assert b"vote" in csv_text and APPROVERS[0].encode() in csv_text


async def test_audit_is_refused_to_outsiders(world: World) -> None:
    """Someone who is neither admin nor approver cannot read the audit trail."""
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    reply = await world.command(f"audit {world.tenant.name}", user=OUTSIDER)
    assert "Only the admins and this tenant's approvers" in reply
    assert [f["name"] for f in world.slack.files if not f["name"].startswith("plan-")] == []


@pytest.mark.parametrize(
    "args", [("run",), ("demo", "--users", "x"), ("bogus",), ("audit", "--config", "x.toml")]
)
def test_argument_errors_are_one_line_exit_2(args: tuple[str, ...]) -> None:
    """Bad arguments exit 2 with one line and no usage dump or traceback."""
    result = run_cli(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


async def test_refused_reactions_cannot_flood_the_thread(world: World) -> None:
    """Forty refused reactions by one member get one ephemeral answer, no thread post, and a
    veto cast meanwhile is acted on."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    posts_before = len(world.slack.messages)
    for _ in range(20):
        await world.vote(request, OUTSIDER)
        await world.slack.react(
            user_id=OUTSIDER,
            channel=request.channel,
            ts=request.ts,
            name="white_check_mark",
            remove=True,
        )
    await world.vote(request, APPROVERS[0], "x")
    assert await world.wait_state("delete_users.rejected") == "delete_users.rejected"
    answers = [e for e in world.slack.ephemerals if e.get("source") == "chat.postEphemeral"]
    assert [e["user"] for e in answers] == [OUTSIDER]
    assert "does not count" in answers[0]["text"]
    new_posts = world.slack.messages[posts_before:]
    assert not [m for m in new_posts if "does not count" in m.text]


async def test_a_veto_looking_emoji_gets_a_one_time_hint(world: World) -> None:
    """:no_entry: or :-1: on a request changes nothing but tells that person, once, to react
    :x: to veto."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    for name in ("no_entry", "-1", "thumbsdown"):
        await world.vote(request, APPROVERS[0], name)
    await world.vote(request, APPROVERS[1], "no_entry_sign")

    def hints() -> list[dict[str, object]]:
        return [e for e in world.slack.ephemerals if "React :x: to veto" in str(e["text"])]

    await world.slack.wait_for(lambda _: len(hints()) >= 2)
    await world.vote(request, APPROVERS[2])  # a later event, processed after the hints
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert sorted(e["user"] for e in hints()) == sorted(APPROVERS[:2])
    assert world.state() == "delete_users.awaiting_approval"
