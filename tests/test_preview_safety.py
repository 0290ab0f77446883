"""`/close-account plan` is safe to ask at any time: it writes nothing the bot keeps of
Microsoft's answers, and only one preview of a tenant is read at a time."""

from __future__ import annotations

import asyncio
from typing import Any

from bot import messages
from bot.microsoft.learned import Learned
from bot.world import ADMIN, APPROVERS, World
from simulator.microsoft.azure import handle as azure_handle
from storage import learned as store
from storage.db import open_db
from storage.learned import Cancellation, Refusal
from tests.conftest import MakeWorld


def _kept(world: World) -> tuple[list[Any], list[Any]]:
    """Every row of azure_cancellations and cancel_refusals, in a stable order."""
    assert world.service is not None
    db = world.service.db
    return (
        db.execute("SELECT * FROM azure_cancellations ORDER BY subscription_id").fetchall(),
        db.execute("SELECT * FROM cancel_refusals ORDER BY subscription_id").fetchall(),
    )


async def test_a_preview_keeps_no_cancellation_time_and_forgets_none(
    make_world: MakeWorld,
) -> None:
    """A preview of a tenant with an Azure subscription someone else cancelled records no
    cancellation time for it, and one active again keeps the time a closure recorded: the
    database's azure_cancellations and cancel_refusals are unchanged."""
    world = await make_world(users=6, tenant={"azure_subscriptions": 2})
    estate = world.tenant.azure
    cancelled, active = (s["subscriptionId"] for s in estate.subscriptions)
    path = ["subscriptions", cancelled, "providers", "Microsoft.Subscription", "cancel"]
    assert azure_handle(estate, "POST", path, {"api-version": "2021-10-01"})[0] == 200
    assert world.service is not None
    db = world.service.db
    tid = world.tenant.tenant_id
    store.record_cancellation(db, Cancellation(tid, active, 1_000.0, True))
    store.record_refusal(db, Refusal(tid, active, "arm", 403, "AuthorizationFailed", "no", 9.0))
    before = _kept(world)
    reply = await world.command("plan contoso", user=ADMIN)
    assert "Preview of closing contoso" in reply, reply
    assert _kept(world) == before


def test_a_reader_sees_the_database_and_keeps_its_own_learning_in_memory() -> None:
    """A read-only Learned reads kept times and refusals, answers its own sightings and
    forgettings from memory, and leaves the database as it was."""
    db = open_db(":memory:")
    learned = Learned(db, clock=lambda: 1_000.0)
    learned.cancelled("t", "kept", by_bot=True)
    learned.refused("t", "kept", "arm", status=403, code="c", reason="r")
    reader = learned.reader()
    reader.clock = lambda: 5_000.0
    assert reader.cancellation("t", "kept") == Cancellation("t", "kept", 1_000.0, True)
    assert reader.cancelled("t", "new", by_bot=False).at == 5_000.0
    assert reader.cancellation("t", "new") is not None
    reader.reactivated("t", "kept")
    assert reader.cancellation("t", "kept") is None
    reader.accepted("t", "kept", "arm")
    assert reader.refusals("t", "arm") == {}
    assert learned.cancellation("t", "new") is None
    assert learned.cancellation("t", "kept") == Cancellation("t", "kept", 1_000.0, True)
    assert set(learned.refusals("t", "arm")) == {"kept"}
    assert learned.reader().cancellation("t", "new") is None  # each preview starts afresh


async def test_a_second_preview_of_the_same_tenant_waits_its_turn(make_world: MakeWorld) -> None:
    """While a preview of a tenant is being read, a second asker is told to try again in a
    moment and Microsoft is not read for them; once it is done, a preview may be asked again."""
    world = await make_world(users=6, approvers=APPROVERS)
    assert world.service is not None
    entered, release = asyncio.Event(), asyncio.Event()
    graph = world.service.core.tenants["contoso"].graph
    real_get = graph.get

    async def held_get(path: str, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await real_get(path, *args, **kwargs)

    graph.get = held_get  # type: ignore[method-assign]
    first = asyncio.create_task(world.command("plan contoso", user=ADMIN))
    await entered.wait()
    before = len(world.microsoft.requests)
    second = await world.command("plan contoso", user=APPROVERS[0])
    assert second == messages.plan_busy("contoso")
    assert len(world.microsoft.requests) == before
    release.set()
    assert "Preview of closing contoso" in await first
    graph.get = real_get  # type: ignore[method-assign]
    assert "Preview of closing contoso" in await world.command("plan contoso", user=APPROVERS[0])


def test_an_over_long_first_line_is_cut_too() -> None:
    """A first line longer than the limit is cut (never inside an escape) and the answer says
    the line is whole in the file; True, so the whole text is sent."""
    text, cut = messages.plan_summary(["&" * 200], limit=120)
    assert cut and "the line was cut" in text
    body = text.split("```")[1]
    assert len(body) <= 120 and body.endswith("&amp;…")
    text, cut = messages.plan_summary(["x" * 300, "next"], limit=120)
    assert cut and "1 more line(s)" in text and len(text.split("```")[1]) <= 120
