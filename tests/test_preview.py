"""`close-account-bot plan`: a preview of every step read from Microsoft, writing nothing."""

from __future__ import annotations

import csv
import io
import json

from bot import messages
from statemachine import steps
from statemachine.plan import Item
from tests.conftest import MakeWorld
from tests.test_run_process import run_env
from tests.test_startup_errors import cli

USER = Item("user", "id", "name")


async def test_plan_previews_every_step_and_writes_nothing(make_world: MakeWorld) -> None:
    """The text preview names each of the five steps with what it would do; Microsoft saw only
    reads, Slack saw nothing, and no database was created."""
    world = await make_world(users=12, start=False)
    args = ("plan", "--config", str(world.config_path), "--tenant", "contoso")
    result = await cli(*args, env=run_env(world))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Preview of closing contoso")
    for n in range(1, 6):
        assert any(line.startswith(f"{n}. ") for line in lines), (n, lines)
    assert "user x11" in result.stdout  # everyone but the retained administrator
    assert "Approving this step confirms the data is backed up." in result.stdout
    methods = {r.method for r in world.microsoft.requests}
    assert methods <= {"GET", "POST"} and not [
        r for r in world.microsoft.requests if r.method == "POST" and "token" not in r.path
    ]
    assert world.slack.calls == [] and world.slack.messages == []
    assert not (world.directory / "close-account.db").exists()


async def test_plan_as_csv_lists_the_whole_inventory(make_world: MakeWorld) -> None:
    """--format csv has one row per item with its kind, ID, name and what happens to it; the
    users row count is every user but the retained one."""
    world = await make_world(users=12, start=False)
    args = ("plan", "--config", str(world.config_path), "--tenant", "contoso", "--format", "csv")
    result = await cli(*args, env=run_env(world))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    users = [r for r in rows if r["step"] == "delete_users"]
    assert len(users) == 11 and all(r["id"] and r["name"] for r in users)
    assert {r["what happens"] for r in users} == {messages.item_action("delete_users", USER)}
    json_args = (*args[:-1], "json")
    parsed = json.loads((await cli(*json_args, env=run_env(world))).stdout)
    assert [p["step"] for p in parsed] == list(steps.names())
    assert parsed[0]["facts"]["data"]  # step 1's data-loss figures, as a request shows them


async def test_plan_shows_what_data_dies_before_step_one(make_world: MakeWorld) -> None:
    """The text preview carries step 1's kept account and the mailbox count the usage reports
    give, so the preview says what data dies before anyone starts."""
    world = await make_world(users=12, start=False)
    args = ("plan", "--config", str(world.config_path), "--tenant", "contoso")
    result = await cli(*args, env=run_env(world))
    assert result.returncode == 0, result.stderr
    step_one = result.stdout.split("\n2. ")[0]
    assert "Kept (not deleted):" in step_one and "admin@" in step_one
    assert "mailboxes" in step_one and "back up" in step_one


async def test_plan_for_an_unknown_tenant_is_one_line(make_world: MakeWorld) -> None:
    """An unknown --tenant is one line naming the config and the tenant, exit 2."""
    world = await make_world(start=False)
    args = ("plan", "--config", str(world.config_path), "--tenant", "fabrikam")
    result = await cli(*args, env=run_env(world))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "fabrikam" in result.stderr
