"""What the bot learns from Microsoft during step 2 and Microsoft does not show again (when an
Azure subscription was cancelled, what Partner Center refused) survives a restart mid-wait."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

from bot.microsoft.learned import Learned
from bot.world import World
from simulator.microsoft.azure import handle as azure_handle
from storage.db import open_db
from tests.conftest import MakeWorld

TWO_DAYS = 2 * 86400
WHEN = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC")


def _backdate(world: World, seconds: float) -> None:
    """The bot is down while days pass: move every kept cancellation time back, and the
    simulated Azure's own cancellation times with them."""
    conn = sqlite3.connect(world.settings().storage_path)
    try:
        with conn:
            conn.execute("UPDATE azure_cancellations SET at = at - ?", [seconds])
    finally:
        conn.close()
    estate = world.tenant.azure
    for sid in estate.cancelled_at:
        estate.cancelled_at[sid] -= dt.timedelta(seconds=seconds)


def _times(line: str) -> list[dt.datetime]:
    return [
        dt.datetime.strptime(m, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC) for m in WHEN.findall(line)
    ]


async def test_azure_cancellation_times_survive_a_restart(make_world: MakeWorld) -> None:
    """After a restart during step 2's wait, step 3's checklist still counts 3 days from when
    the bot cancelled a pay-as-you-go subscription two days before the restart; one someone
    else cancelled before the bot looked is said to have an unknown time, with the latest day
    from when the bot first saw it cancelled; ARM listing them Deleted ends the wait."""
    world = await make_world(users=10, tenant={"azure_subscriptions": 2})
    estate = world.tenant.azure
    mine, theirs = (s["subscriptionId"] for s in estate.subscriptions)
    estate.set_offer(theirs, "EnterpriseAgreement_2014-09-01")
    path = ["subscriptions", theirs, "providers", "Microsoft.Subscription", "cancel"]
    assert azure_handle(estate, "POST", path, {"api-version": "2021-10-01"})[0] == 200
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    assert {s["state"] for s in estate.subscriptions} == {"Disabled"}
    await world.stop_bot()
    _backdate(world, TWO_DAYS)
    await world.start_bot()
    world.script_admin()  # works the Microsoft 365 checklist only after the restart
    await world.wait_state("delete_disabled_subscriptions.waiting_external", timeout=60)
    checklist = next(
        m
        for m in world.slack.messages
        if "checklist" in m.text.split("\n")[0] and "Delete the Azure subscription" in m.text
    )
    line = next(x for x in checklist.text.split("\n") if mine in x)
    assert "on or after" in line and "(3 days after cancelling)" in line
    allowed = estate.deletable_from(mine)
    assert allowed is not None
    assert abs((_times(line)[0] - allowed).total_seconds()) < 600  # not 3 days from now
    assert allowed - dt.datetime.now(dt.UTC) < dt.timedelta(days=1, minutes=10)
    line = next(x for x in checklist.text.split("\n") if theirs in x)
    assert "does not show" in line and "7 days after it was cancelled" in line
    first_seen, latest = _times(line)
    assert latest - first_seen == dt.timedelta(days=7)
    assert dt.datetime.now(dt.UTC) - first_seen > dt.timedelta(days=1, hours=23)
    really = estate.deletable_from(theirs)
    assert really is not None and really <= latest + dt.timedelta(minutes=1)  # never too early
    world.tenant.advance(7 * 86400)  # Microsoft's own clock decides when Delete is offered
    estate.delete(mine)
    estate.delete(theirs)
    await world.wait_state("disable_mfa.awaiting_approval", "disable_mfa.executing", timeout=60)


async def test_partner_refusal_survives_a_restart(make_world: MakeWorld) -> None:
    """After a restart during step 2's wait, the lines the bot still waits on keep naming the
    partner and Partner Center's refusal (code 900117), and the refused item is never reported
    done."""
    world = await make_world(users=10, partner=True)
    tenant = world.tenant
    partner_subs = [
        s for s in tenant.subscriptions if s.get("ownerTenantId") not in (None, tenant.tenant_id)
    ]
    assert partner_subs
    for sub in partner_subs:
        tenant.partner_center.set_terms(
            tenant, sub["id"], kind="new_commerce", term_start=tenant.now() - dt.timedelta(days=9)
        )
    owner = str(partner_subs[0]["ownerTenantId"])
    world.script_approvers()
    await world.command(tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    await world.slack.wait_for(
        lambda _: "900117" in "\n".join(m.text for m in world.slack.messages), timeout=30
    )
    await world.stop_bot()
    await world.start_bot()
    mark = len(world.slack.messages)
    direct = next(
        s
        for s in tenant.subscriptions
        if s.get("ownerTenantId") in (None, tenant.tenant_id) and s["status"] == "Enabled"
    )
    tenant.cancel_subscription(direct["id"])  # the admin works the checklist after the restart
    seen = await world.slack.wait_for(
        lambda _: next(
            (
                m
                for m in world.slack.messages[mark:]
                if any("done:" in x and direct["id"] in x for x in m.text.split("\n"))
            ),
            None,
        ),
        timeout=30,
    )
    for sub in partner_subs:
        line = next(x for x in seen.text.split("\n") if sub["id"] in x)
        assert "waiting on" in line and "900117" in line and owner in line
    after = [x for m in world.slack.messages[mark:] for x in m.text.split("\n")]
    assert not [x for x in after if "done:" in x and "900117" in x]


def test_learned_facts_are_kept_in_the_database(tmp_path: Path) -> None:
    """Through a reopened database the first cancellation time stands, a reactivation forgets
    it, the latest refusal replaces the one before and an acceptance clears it."""
    clock = [1_000.0]
    db = open_db(tmp_path / "bot.db")
    learned = Learned(db, clock=lambda: clock[0])
    assert learned.cancelled("t", "s1", by_bot=True).at == 1_000.0
    learned.refused("t", "s2", "partner", status=0, code="900117", reason="window passed")
    learned.refused("t", "s2", "partner", status=0, code="800002", reason="partial body")
    learned.refused("t", "s3", "arm", status=403, code="AuthorizationFailed", reason="no")
    db.conn.close()
    clock[0] = 5_000.0
    db = open_db(tmp_path / "bot.db")
    try:
        again = Learned(db, clock=lambda: clock[0])
        kept = again.cancelled("t", "s1", by_bot=False)
        assert (kept.at, kept.by_bot) == (1_000.0, True)
        assert again.refusals("t", "partner")["s2"].code == "800002"
        assert list(again.refusals("t", "arm")) == ["s3"]
        again.accepted("t", "s2", "partner")
        again.reactivated("t", "s1")
        assert again.refusals("t", "partner") == {}
        assert again.cancellation("t", "s1") is None
        assert again.cancelled("t", "s1", by_bot=True).at == 5_000.0
    finally:
        db.conn.close()


async def test_arm_refusal_survives_a_restart(make_world: MakeWorld) -> None:
    """After a restart during step 2's wait, the line for an Azure subscription ARM refused to
    cancel (403: the app is only a Reader) still gives ARM's answer and asks for the Owner
    role, instead of a generic line."""
    world = await make_world(users=10, tenant={"azure_subscriptions": 1})
    tenant = world.tenant
    sid = tenant.azure.subscriptions[0]["subscriptionId"]
    tenant.azure.readers.add(sid)
    world.script_approvers()
    await world.command(tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    await world.slack.wait_for(
        lambda _: "403 AuthorizationFailed" in "\n".join(m.text for m in world.slack.messages),
        timeout=30,
    )
    await world.stop_bot()
    await world.start_bot()
    mark = len(world.slack.messages)
    direct = next(
        s
        for s in tenant.subscriptions
        if s.get("ownerTenantId") in (None, tenant.tenant_id) and s["status"] == "Enabled"
    )
    tenant.cancel_subscription(direct["id"])  # the admin works the checklist after the restart
    seen = await world.slack.wait_for(
        lambda _: next(
            (
                m
                for m in world.slack.messages[mark:]
                if any("done:" in x and direct["id"] in x for x in m.text.split("\n"))
            ),
            None,
        ),
        timeout=30,
    )
    line = next(x for x in seen.text.split("\n") if sid in x)
    assert "waiting on" in line and "403 AuthorizationFailed" in line and "Owner role" in line
    assert tenant.azure.subscriptions[0]["state"] == "Enabled"
