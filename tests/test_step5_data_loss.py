"""Step 5's approval request (the point of no return) shows the data that dies with the tenant
and Microsoft's backup advice, so it is said even when step 1 had nothing to ask."""

from __future__ import annotations

from bot import messages
from bot.messages.dataloss import human_size, step_five_text
from simulator.microsoft import reports as sim_reports
from simulator.slack.render import render_message
from tests.conftest import MakeWorld
from tests.test_data_loss import ADVICE
from tests.test_request_content import ready_for_step4


async def test_step_5_request_shows_the_data_that_dies_when_step_1_had_nothing_to_do(
    make_world: MakeWorld,
) -> None:
    """With only the retained admin left, step 1 asks no one, and step 5's request gives the
    usage figures, Microsoft's backup sentence and that approving step 5 confirms the backup."""
    world = await make_world(users=4)
    ready_for_step4(world.tenant)
    world.script_approvers(skip=("delete_directory",))
    world.script_admin()
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_directory", timeout=90)
    assert world.requests("delete_users") == []  # step 1 asked no one
    assert any(messages.nothing_to_do("delete_users") in m.text for m in world.slack.messages)
    text = render_message(request)
    flat = " ".join(text.split())
    sites = sim_reports.sites_of(world.tenant)
    size = human_size(sum(s.storage_bytes for s in sites))
    assert f"{len(sites):,} SharePoint sites · {size}" in flat, flat
    assert "Data that dies with the tenant" in flat and ADVICE in flat
    assert "Approving step 5 confirms the data is backed up." in flat
    assert "Approving this step confirms" not in flat


def test_step_5_text_needs_the_figures() -> None:
    """A step 5 plan without usage figures (made before this release) adds no data lines."""
    assert step_five_text({"custom_domains": []}) is None
    text = step_five_text({"period": "D7", "data": {"period": "D7"}})
    assert text is not None and "size unknown" in text and "step 5" in text.lower()
