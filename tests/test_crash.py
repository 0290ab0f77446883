"""Crash anywhere: the bot, SIGKILLed at deterministic points of a closure, resumes and finishes it.

The harness (tests/crashkit.py) runs `python -m bot run` in a subprocess against the simulators
of a `World`, kills it at each point in turn and restarts it on the same database. A point is
"the nth event of a kind while the closure is in a step", seen from the simulators: a Graph
request (or $batch sub-request) arriving at Microsoft, a request Microsoft answered, a Slack Web
API call Slack carried out (each before the answer leaves, so the bot never sees it). `catalogue`
lists every kind, in the order a closure reaches them; the seeded test picks 20+ of them over
all five steps, and each kind the bot does not survive today is pinned by its own xfail test.

The invariants (crashkit.check_invariants) after a run: the status message shows `closed`, the
thread says so and the tenant is deleted; every point was reached; every user deleted exactly
once (one DELETE answered 204 per user; a repeat answered 404 is fine); no destructive Graph
request (DELETE/PATCH, $batch sub-requests included) for a step before that step's quorum-
completing reaction was on the request; every acknowledged vote in the audit trail as a `vote`
with its event ID (or read back from the reactions), and every vote Slack gave up delivering
counted all the same; every delivery not answered 200 cut short by a kill; the audited
transitions form one unbroken chain from delete_users.planning to closed through every state the
status message showed; no two approval requests for the same step and plan unless the first
expired or was vetoed; every approved request marked approved; one status message per closure;
no bot reply repeated (crashkit.RECURS says which may be).

A reaction that reaches the bot before it has recorded its request's ts waits for the posts
under way (People.reaction); one it still cannot match after a crash is read back from the
message's reactions (reconcile_votes). The scripted approvers react once the bot has recorded
the request, as people (seconds later) do, so that the kill points around a vote are reached.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.world import APPROVERS, World
from statemachine.steps import names as step_names
from tests import crashkit
from tests.conftest import MakeWorld
from tests.crashkit import (
    CrashHarness,
    Event,
    KillPoint,
    answered,
    graph,
    posted,
    slack_call,
)

SEED = 20240611
USERS = 60  # 59 to delete: three $batch requests of 20, 20 and 19
MICROSOFT = {"time_scale": 20}  # Graph's throttling windows 20x shorter: step 4 without waits


@dataclass(frozen=True)
class Family:
    """A kind of kill point in one step; `choices` are the (occurrence, drop) pairs a run
    surely reaches."""

    key: str
    step: str
    choices: list[tuple[int, bool]]
    make: Callable[[tuple[int, bool]], KillPoint]
    required: bool = False  # always in the seeded selection


def _status_edit(fragment: str) -> Callable[[Event], bool]:
    def match(e: Event) -> bool:
        metadata = e.args.get("metadata")
        return (
            e.source == "slack"
            and e.method == "chat.update"
            and isinstance(metadata, dict)
            and metadata.get("event_type") == "close_account_status"
            and fragment in str(e.args.get("blocks"))
        )

    return match


def _request_marked(e: Event) -> bool:
    metadata = e.args.get("metadata")
    return (
        e.source == "slack"
        and e.method == "chat.update"
        and isinstance(metadata, dict)
        and metadata.get("event_type") == "close_account_approval"
    )


def _in(state: str, match: Callable[[Event], bool]) -> Callable[[Event], bool]:
    return lambda e: e.state == state and match(e)


def catalogue(world: World) -> list[Family]:
    """Every kind of kill point, in the order a closure reaches them."""
    own = world.tenant.bot_application
    assert own is not None
    own_path = f"/v1.0/applications/{own['id']}"
    openid = f"/{world.tenant.tenant_id}/v2.0/.well-known/openid-configuration"
    families: list[Family] = []

    def add(
        key: str,
        step: str,
        match: Callable[[Event], bool],
        nths: range = range(1, 2),
        *,
        drops: tuple[bool, ...] = (False,),
        required: bool = False,
        seen_in: str | None = None,
    ) -> None:
        """`seen_in`: the step the database shows when the event happens, if not `step`."""
        no = step_names().index(step) + 1

        def make(choice: tuple[int, bool]) -> KillPoint:
            nth, drop = choice
            name = f"step {no}: {key}" + (" (never sent)" if drop and len(drops) > 1 else "")
            return KillPoint(name, seen_in or step, match, nth, drop)

        choices = [(n, d) for n in nths for d in drops]
        families.append(Family(key, step, choices, make, required))

    for no, step in enumerate(step_names(), start=1):
        if step == "delete_users":
            add("status message posted", step, posted("close_account_status"))
            add("planning reads users", step, _in(f"{step}.planning", graph("GET", "/v1.0/users")))
        add("approval request posted", step, posted("close_account_approval"))
        add(
            "first vote stored",
            step,
            _status_edit("Approvals: 1/"),
            required=step == "cancel_subscriptions",
        )
        add(
            "voter's account checked",
            step,
            _in(f"{step}.awaiting_approval", slack_call("users.info", user=APPROVERS[1])),
        )
        add(
            "right after the quorum-completing vote",
            step,
            _in(f"{step}.awaiting_approval", graph("GET", "/v1.0/organization")),
            required=step in ("delete_users", "disable_mfa"),
        )
        add("'approved' reply posted", step, posted(text=f"Step {no} approved by"))
        add("request marked approved", step, _request_marked)
        if step == "delete_users":
            add(
                "between user-delete batches",
                step,
                graph("POST", "/v1.0/$batch", batch=False),
                range(2, 4),
                drops=(True,),
                required=True,
            )
            add(
                "mid user-delete batch",
                step,
                graph("DELETE", "/v1.0/users/", batch=True),
                range(1, 20),
                required=True,
            )
            add(
                "verifying reads users",
                step,
                _in(f"{step}.verifying", graph("GET", "/v1.0/users")),
            )
        if step in ("cancel_subscriptions", "delete_disabled_subscriptions"):
            add("checklist posted", step, posted(text="checklist for a Global Administrator"))
            add(
                "waiting on the checklist",
                step,
                _in(f"{step}.waiting_external", graph("GET", "/v1.0/directory/subscriptions")),
                range(1, crashkit.ADMIN_POLLS),
                required=True,
            )
            add("Microsoft shows it done", step, posted(text=f"Microsoft shows step {no} done"))
        if step == "disable_mfa":
            add("MFA change", step, graph("PATCH", "/"), range(1, 5), drops=(True, False))
            add("changes reported", step, posted(text="changes made through Graph"))
        if step == "delete_directory":
            add(
                "mid purge",
                step,
                graph("DELETE", "/v1.0/directory/deletedItems/", batch=True),
                range(1, 60),
                required=True,
            )
            add(
                "own application delete never sent",
                step,
                graph("DELETE", own_path, batch=False),
                drops=(True,),
                required=True,
            )
            add(
                "own application deleted, answer lost",
                step,
                answered("DELETE", own_path),
            )
            add("checklist posted", step, posted(text="checklist for a Global Administrator"))
            add(
                "polling the authority",
                step,
                _in(
                    f"{step}.waiting_external",
                    lambda e: e.source == "microsoft" and e.method == "GET" and e.path == openid,
                ),
                range(1, 6),
                required=True,
            )
        # The step's last reply goes out after the transition: the database is a step further.
        after = step_names()[no] if no < len(step_names()) else "closed"
        add("'verified' reply posted", step, posted(text=f"Step {no} ("), seen_in=after)
        if step == "delete_directory":
            add("'closed' reply posted", step, posted(text=":checkered_flag:"), seen_in=after)
    return families


@dataclass(frozen=True)
class Bug:
    """Kill points (family keys, in `steps`) at which the bot does not survive today."""

    keys: tuple[str, ...]
    steps: tuple[str, ...]
    reason: str

    def covers(self, family: Family) -> bool:
        return family.key in self.keys and family.step in self.steps


# Each bug is pinned by an xfail test at its first key and step, and the seeded run leaves its
# points out so that it guards everything else. Fix a bug, delete its entry: the points join the
# seeded pool again.
KNOWN_BUGS: dict[str, Bug] = {}


async def run_closure(
    world: World, points: list[KillPoint], *, stall: float = 15.0, grace: float = 5.0
) -> tuple[CrashHarness, dict[str, list[str]]]:
    harness = CrashHarness(world, points, stall=stall)
    try:
        await harness.run(grace=grace)
    finally:
        await harness.stop()
    return harness, crashkit.check_invariants(harness)


def seeded_points(families: list[Family], rng: random.Random, extra: int = 3) -> list[KillPoint]:
    """Per step: the required families and `extra` others, in closure order, each at a random
    occurrence; known-bug families are left out (they have their own tests)."""
    points = []
    for step in step_names():
        pool = [
            f
            for f in families
            if f.step == step and not any(bug.covers(f) for bug in KNOWN_BUGS.values())
        ]
        optional = [f for f in pool if not f.required]
        picked = set(map(id, rng.sample(optional, min(extra, len(optional)))))
        points += [f.make(rng.choice(f.choices)) for f in pool if f.required or id(f) in picked]
    return points


async def test_crash_anywhere(make_world: MakeWorld) -> None:
    """Killed at 20+ seeded points spread over all five steps, the bot finishes the closure
    with every invariant intact."""
    world = await make_world(users=USERS, start=False, microsoft=MICROSOFT)
    points = seeded_points(catalogue(world), random.Random(SEED))
    assert len(points) >= 20
    assert {p.name.split(":")[0] for p in points} == {f"step {n}" for n in range(1, 6)}
    harness, invariants = await run_closure(world, points)
    if any(invariants.values()):
        pytest.fail(crashkit.report(harness, invariants), pytrace=False)


# Kill points that once broke a restart (each fixed): pinned one by one so they stay fixed.
FORMER_BUGS = [
    ("status message posted", "delete_users"),
    ("voter's account checked", "delete_users"),
    ("'approved' reply posted", "delete_users"),
    ("own application deleted, answer lost", "delete_directory"),
    ("'closed' reply posted", "delete_directory"),
]


@pytest.mark.parametrize(("key", "step"), FORMER_BUGS, ids=[k for k, _ in FORMER_BUGS])
async def test_crash_at_a_former_bug(make_world: MakeWorld, key: str, step: str) -> None:
    """Killed once at a point that used to break the restart, the bot now finishes the
    closure with every invariant intact."""
    world = await make_world(users=10, start=False, microsoft=MICROSOFT)
    family = next(f for f in catalogue(world) if (f.key, f.step) == (key, step))
    harness, invariants = await run_closure(
        world, [family.make(family.choices[0])], stall=5.0, grace=3.0
    )
    if any(invariants.values()):
        pytest.fail(crashkit.report(harness, invariants), pytrace=False)


async def test_a_bot_killed_while_resuming_is_never_marked_up(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot killed between its healthz answer and the harness marking it up stays down for
    Slack's redeliveries (they would all fail at once against its dead port)."""
    world = await make_world(users=10, start=False, microsoft=MICROSOFT)
    keys = ("voter's account checked", "right after the quorum-completing vote")
    families = {f.key: f for f in catalogue(world) if f.step == "delete_users"}
    harness = CrashHarness(world, [families[k].make(families[k].choices[0]) for k in keys])
    ready = CrashHarness._ready

    async def ready_then_die(self: CrashHarness, proc: Any, port: int) -> bool:
        # The second bot resumes into the quorum (it reads the vote back from the reactions)
        # and is killed there: its healthz answer is held until then.
        up = await ready(self, proc, port)
        if self.incarnation == 2:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), crashkit.READY_TIMEOUT)
        return up

    marked_dead: list[int] = []

    class Up(asyncio.Event):
        def set(self) -> None:
            if harness._killed_by_us:
                marked_dead.append(harness.incarnation)
            super().set()

    monkeypatch.setattr(CrashHarness, "_ready", ready_then_die)
    harness._up = Up()
    try:
        await harness.run(grace=3.0)
    finally:
        await harness.stop()
    assert [k.incarnation for k in harness.kills] == [1, 2]
    assert marked_dead == []
    invariants = crashkit.check_invariants(harness)
    if any(invariants.values()):
        pytest.fail(crashkit.report(harness, invariants), pytrace=False)
