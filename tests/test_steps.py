"""The list of steps and the step registry: adding a step is one module and one line in the list."""

from __future__ import annotations

from pathlib import Path

from bot.microsoft import steps as registry
from bot.microsoft.steps.base import Progress, Step, StepContext
from bot.microsoft.tenant import StepError, facts
from bot.world import APPROVERS, World
from simulator.slack.server import render_message
from statemachine import steps
from statemachine.closure import all_states, next_state_after
from statemachine.plan import Item, Plan

TOY = steps.StepInfo("archive_notes", "Archive the notes", "will be archived")


class ArchiveNotes(Step):
    """A toy step: its inventory is a list of notes, executing archives them."""

    name = TOY.name

    def __init__(self) -> None:
        self.notes = ["minutes", "budget", "roadmap"]
        self.archived: list[str] = []

    async def plan(self, ctx: StepContext) -> Plan:
        items = tuple(Item("note", n, n) for n in self.notes if n not in self.archived)
        return Plan(self.name, ctx.tenant.tenant_id, items, facts=facts(dict(ctx.org)))

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        for index in range(start, len(plan.items)):
            await progress(index, len(plan.items))
            self.archived.append(plan.items[index].id)
            await progress(index + 1, len(plan.items))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        left = [n for n in self.notes if n not in self.archived]
        if left:
            raise StepError(f"not archived: {', '.join(left)}")
        return []


def test_every_listed_step_has_its_module() -> None:
    """Each step of the list (and the rollback) resolves to an implementation of its name."""
    for name in (*steps.names(), steps.ROLLBACK):
        assert registry.implementation(name).name == name


def test_the_machine_follows_the_list() -> None:
    """A registered step gets every phase as a state, and the closure closes after it."""
    with steps.registered(TOY):
        assert "archive_notes.awaiting_approval" in all_states()
        assert next_state_after("archive_notes") == "closed"
        assert steps.quorum_keys() == ("archive_notes", "rollback")
    assert "archive_notes.planning" not in all_states()


async def test_a_toy_step_is_planned_approved_executed_and_verified(tmp_path: Path) -> None:
    """A step registered with one line runs like the real ones: its plan is put to the
    approvers, nothing happens before the quorum, then it executes and is verified."""
    toy = ArchiveNotes()
    with steps.registered(TOY), registry.registered(toy):
        world = await World.create(users=5, directory=tmp_path)
        try:
            await world.command(world.tenant.name)
            request = await world.wait_request("archive_notes")
            assert "Approve step 1/1: Archive the notes" in render_message(request)
            await world.vote(request, APPROVERS[0])
            await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
            assert toy.archived == []
            await world.vote(request, APPROVERS[1])
            assert await world.wait_state("closed") == "closed"
            assert "1. Archive the notes — done" in world.status_text()
        finally:
            await world.close()
    assert toy.archived == ["minutes", "budget", "roadmap"]
