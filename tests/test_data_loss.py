"""What data dies, before step 1 (issue 13 item 4) and who is kept (item 3): step 1's request
shows Microsoft's usage reports (mailboxes, OneDrive, SharePoint: how many, how much), Microsoft's
advice to back up first and that approving confirms the backup, and names the retained accounts;
the reports' download never gets the Graph token; a missing Reports.Read.All or a failing report
makes the size unknown with the reason and the closure goes on; the figures never change the plan
hash; `check` lists the permission as optional."""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
from typing import Any, cast

import aiohttp
import pytest

from bot.doctor import permission_lines
from bot.messages.dataloss import human_size, step_one_plain, step_one_text
from bot.microsoft.reports import parse
from bot.microsoft.steps.base import StepContext
from bot.microsoft.steps.delete_users import STEP
from bot.microsoft.tenant import organization
from bot.world import World
from simulator.microsoft import reports as sim_reports
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES
from simulator.slack.render import render_message
from statemachine.plan import Plan
from tests.conftest import MakeWorld
from tests.test_check import run_check

ADVICE = "Before you start this process, make sure to back up any data that you want to preserve."


async def step_1_request(world: World) -> str:
    """Start the closure and return step 1's approval request as a person reads it."""
    await world.command(world.tenant.name)
    return render_message(await world.wait_request("delete_users"))


def expected_figures(world: World) -> dict[str, tuple[int, int]]:
    """(count, bytes) per report, from the simulator's own seeded figures."""
    members = [u for u in world.tenant.users.values() if u.get("userType") != "Guest"]
    uses = [sim_reports.usage_of(u) for u in members]
    sites = sim_reports.sites_of(world.tenant)
    return {
        "mailboxes": (len(members), sum(u.mailbox_bytes for u in uses)),
        "OneDrive accounts": (len(members), sum(u.onedrive_bytes for u in uses)),
        "SharePoint sites": (len(sites), sum(s.storage_bytes for s in sites)),
    }


async def plan_step_1(world: World) -> Plan:
    assert world.service is not None
    tenant = next(iter(world.service.core.tenants.values()))
    session = cast(aiohttp.ClientSession, None)  # step 1's plan reads Graph only
    return await STEP.plan(StepContext(tenant, session, None, org=await organization(tenant)))


async def test_step_1_request_shows_what_dies_the_advice_and_who_is_kept(
    make_world: MakeWorld,
) -> None:
    """With Reports.Read.All (the test world's default), step 1's request gives each report's
    count and human size, Microsoft's backup sentence, that approving confirms the backup, and
    the retained account by UPN and display name."""
    world = await make_world(users=12)
    text = await step_1_request(world)
    for label, (count, size) in expected_figures(world).items():
        assert f"{count:,} {label} · {human_size(size)}" in text, label
    assert ADVICE in " ".join(text.split())
    assert "Approving this step confirms the data is backed up." in text
    admin = next(
        u
        for u in world.tenant.users.values()
        if u["userPrincipalName"] == world.tenant.retained_upn
    )
    assert f"`{admin['userPrincipalName']}` ({admin['displayName']})" in text
    assert "size unknown" not in text


async def test_the_download_never_gets_the_graph_token_and_a_bom_is_read(
    make_world: MakeWorld,
) -> None:
    """The report's 302 is followed by hand: the download (on the Graph host itself in the
    simulator, where a client following redirects would resend the token) comes with no
    Authorization header, and a CSV starting with a UTF-8 BOM still gives its refresh date."""
    world = await make_world(users=6, start=False)
    world.microsoft.reports.byte_order_mark = True
    await world.start_bot()
    text = await step_1_request(world)
    seen = world.microsoft.reports.download_authorizations
    assert len(seen) == 3 and seen == [None, None, None]
    refreshed = (world.tenant.now().date() - dt.timedelta(days=1)).isoformat()
    assert f"as of {refreshed}" in text


def test_a_bom_does_not_change_the_figures() -> None:
    """parse() reads the same count, bytes and refresh date with or without a UTF-8 BOM, and
    skips deleted rows."""
    csv = (
        b"Report Refresh Date,User Principal Name,Is Deleted,Storage Used (Byte)\r\n"
        b"2024-05-01,a@x.com,False,1000\r\n"
        b"2024-05-01,b@x.com,False,24\r\n"
        b"2024-05-01,c@x.com,True,999999\r\n"
    )
    plain, with_bom = parse(csv), parse(codecs.BOM_UTF8 + csv)
    assert plain == with_bom
    assert (with_bom.count, with_bom.bytes, with_bom.refreshed) == (2, 1024, "2024-05-01")


async def test_without_reports_read_all_the_size_is_unknown_and_the_closure_goes_on(
    make_world: MakeWorld,
) -> None:
    """Without Reports.Read.All (the least-privileged set only) the request says the size is
    unknown and why (the permission, Microsoft's 403), still asks for the backup, and step 1
    is approved and done: step 2's request follows."""
    world = await make_world(users=5, tenant={"app_roles": DEFAULT_APP_ROLES})
    world.script_approvers()
    text = await step_1_request(world)
    flat = " ".join(text.split())
    assert "size unknown" in flat and "Reports.Read.All" in flat and "403" in flat
    assert "Approving this step confirms the data is backed up." in flat
    await world.wait_request("cancel_subscriptions", timeout=60)
    assert len(world.tenant.users) == 1


async def test_a_failing_report_is_unknown_with_its_reason_the_others_shown(
    make_world: MakeWorld,
) -> None:
    """A report Microsoft keeps answering 503 is 'size unknown' with Microsoft's answer; the
    other two reports are still counted, and the request is posted."""
    world = await make_world(users=5, start=False)
    world.microsoft.faults.error(503, 10, path_prefix="/v1.0/reports/getOneDrive")
    await world.start_bot()
    flat = " ".join((await step_1_request(world)).split())
    assert "OneDrive accounts: size unknown: Microsoft answered 503" in flat
    count, size = expected_figures(world)["mailboxes"]
    assert f"{count:,} mailboxes · {human_size(size)}" in flat


async def test_the_plan_hash_ignores_usage_figures(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Usage that drifts (other bytes in every mailbox and OneDrive) changes the plan's facts
    but not its hash, so it never voids an approval."""
    world = await make_world(users=6)
    before = await plan_step_1(world)

    def bigger(user: dict[str, Any]) -> sim_reports.Usage:
        use = sim_reports.Usage(1, 1, 1, 1, 1)
        return dataclasses.replace(use, mailbox_bytes=7 * 1024**3, onedrive_bytes=3 * 1024**3)

    monkeypatch.setattr(sim_reports, "usage_of", bigger)
    after = await plan_step_1(world)
    assert before.facts["data"] != after.facts["data"]
    assert after.facts["data"]["mailboxes"]["bytes"] == 6 * 7 * 1024**3
    assert before.hash == after.hash


async def test_check_lists_reports_read_all_as_optional(make_world: MakeWorld) -> None:
    """`check` without Reports.Read.All passes (exit 0) and says on an ok line that the
    optional data-loss figures' permission is not granted, naming it."""
    world = await make_world(start=False, tenant={"app_roles": DEFAULT_APP_ROLES})
    result = await run_check(world)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "data-loss figures" in ln)
    assert "(optional)" in line and " ok " in f" {line} " and "not granted" in line
    assert "Reports.Read.All" in line


def test_permission_lines_with_reports_read_all_say_granted() -> None:
    """With Reports.Read.All the optional line says granted; without it the line is still ok."""
    granted = permission_lines("t", set(DEFAULT_APP_ROLES) | {"Reports.Read.All"})
    missing = permission_lines("t", set(DEFAULT_APP_ROLES))
    pick = [next(ln for ln in lines if "data-loss" in ln.check) for lines in (granted, missing)]
    assert pick[0].ok and pick[0].detail == "granted"
    assert pick[1].ok and "Reports.Read.All" in pick[1].detail


def test_human_sizes_and_a_plan_without_figures() -> None:
    """Sizes read in 1024s with one decimal; a step 1 plan stored before these facts existed
    adds nothing to its request."""
    assert [human_size(n) for n in (0, 1023, 1024, 5 * 1024**3 // 2, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KB",
        "2.5 GB",
        "3.0 TB",
    ]
    assert step_one_text({"display_name": "Contoso"}) is None


def test_the_plain_text_for_previews_has_the_same_figures_without_markup() -> None:
    """step_one_plain (for `plan` previews) says the kept account, the figures, the advice and
    the confirmation with no mrkdwn: names as they are, no asterisks or backticks."""
    facts = {
        "retained": [{"entry": "a@x.com", "upn": "a@x.com", "name": "Ann <Admin>", "id": "1"}],
        "data": {
            "period": "D7",
            "mailboxes": {"count": 3, "bytes": 3 * 1024**2, "refreshed": "2024-05-01"},
            "onedrive": {"unknown": "Microsoft answered 503 serviceUnavailable"},
            "sharepoint": {"count": 1, "bytes": 5},
        },
    }
    text = "\n".join(step_one_plain(facts))
    assert "a@x.com (Ann <Admin>)" in text and "3 mailboxes · 3.0 MB" in text
    assert "OneDrive accounts: size unknown: Microsoft answered 503" in text
    assert ADVICE in text and "confirms the data is backed up" in text
    assert "*" not in text and "`" not in text and "&lt;" not in text
