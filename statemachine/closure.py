"""The closure model and the one `transitions` machine that moves every closure.

Callbacks here do no I/O: the runner does the Graph and Slack work, then fires the trigger
that records its outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from statemachine import steps
from statemachine.approvals import Tally
from statemachine.steps import ROLLBACK

PHASES: tuple[str, ...] = (
    "planning",
    "awaiting_approval",
    "executing",
    "waiting_external",
    "verifying",
    "blocked",
    "rejected",
    "failed",
)
# The states a closure ends in: listed here once.
FINAL_STATES: tuple[str, ...] = ("closed", "aborted", "rolled_back")
# Phases of the point-of-no-return step before it acts: until its approval starts it, a rollback
# is possible.
BEFORE_POINT_OF_NO_RETURN: tuple[str, ...] = (
    "planning",
    "awaiting_approval",
    "blocked",
    "rejected",
)
# Phases in which a failure can happen and to which `retry` returns.
RESUMABLE_PHASES: tuple[str, ...] = (
    "planning",
    "awaiting_approval",
    "executing",
    "waiting_external",
    "verifying",
)
# Phases that wait on people (or nothing) rather than on the runner.
IDLE_PHASES: tuple[str, ...] = ("awaiting_approval", "blocked", "rejected", "failed")


def state_name(step: str, phase: str) -> str:
    return f"{step}.{phase}"


def split_state(state: str) -> tuple[str | None, str]:
    """('delete_users', 'planning') for a running state; (None, 'closed') for a final one."""
    if "." in state:
        step, phase = state.split(".", 1)
        return step, phase
    return None, state


def initial_state() -> str:
    return state_name(steps.first(), "planning")


def all_states() -> list[str]:
    return [state_name(s, p) for s in (*steps.names(), ROLLBACK) for p in PHASES] + list(
        FINAL_STATES
    )


def rollback_sources() -> list[str]:
    """States from which a rollback may start: anything before the point of no return, and
    aborted. A failure in that step before it acted is still before it; the runner checks the
    recorded start of the step as well."""
    sources: list[str] = []
    for name in steps.names():
        if name == steps.point_of_no_return():
            sources += [state_name(name, p) for p in (*BEFORE_POINT_OF_NO_RETURN, "failed")]
            break
        sources += [state_name(name, p) for p in PHASES]
    return [*sources, "aborted"]


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def next_state_after(step: str) -> str:
    if step == ROLLBACK:
        return "rolled_back"
    following = steps.following(step)
    return state_name(following, "planning") if following is not None else "closed"


@dataclass
class Closure:
    """One closure of one tenant. `tally` is set by the runner before `approve` or `veto`."""

    id: str
    tenant: str
    tenant_id: str
    requester: str
    state: str = field(default_factory=initial_state)
    failed_phase: str | None = None
    tally: Tally | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> str | None:
        return split_state(self.state)[0]

    @property
    def phase(self) -> str:
        return split_state(self.state)[1]

    # --- guards and callbacks: pure, no I/O -------------------------------------------------
    def quorum_met(self) -> bool:
        return self.tally is not None and self.tally.met and not self.tally.vetoed

    def vetoed(self) -> bool:
        return self.tally is not None and self.tally.vetoed

    def remember_phase(self) -> None:
        self.failed_phase = self.phase

    def failed_in(self, phase: str) -> bool:
        return self.failed_phase == phase

    def forget_failure(self) -> None:
        self.failed_phase = None


def _transitions() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(trigger: str, source: str | list[str], dest: str, **kw: Any) -> None:
        out.append({"trigger": trigger, "source": source, "dest": dest, **kw})

    for step in (*steps.names(), ROLLBACK):

        def s(phase: str, step: str = step) -> str:
            return state_name(step, phase)

        add("plan_ready", s("planning"), s("awaiting_approval"))
        add("nothing_to_do", s("planning"), s("verifying"))
        add("block", s("planning"), s("blocked"))
        add("approve", s("awaiting_approval"), s("executing"), conditions="quorum_met")
        add("veto", s("awaiting_approval"), s("rejected"), conditions="vetoed")
        add("replan", s("awaiting_approval"), s("planning"))
        add("executed", s("executing"), s("verifying"))
        add("hand_off", s("executing"), s("waiting_external"))
        add("external_done", s("waiting_external"), s("verifying"))
        add("not_yet", s("verifying"), s("waiting_external"))
        add("verified", s("verifying"), next_state_after(step))
        # A preparatory action (turning directory sync off) verified: plan the step itself.
        add("again", s("verifying"), s("planning"))
        add("fail", [s(p) for p in RESUMABLE_PHASES], s("failed"), before="remember_phase")
        add("retry", [s("blocked"), s("rejected")], s("planning"))
        for phase in RESUMABLE_PHASES:
            add(
                "retry",
                s("failed"),
                s(phase),
                conditions=f"failed_in_{phase}",
                after="forget_failure",
            )
    add("abort", [st for st in all_states() if not is_final(st)], "aborted")
    add("start_rollback", rollback_sources(), state_name(ROLLBACK, "planning"))
    return out


for _phase in RESUMABLE_PHASES:
    # transitions conditions are attribute names on the model; one per resumable phase.
    setattr(
        Closure,
        f"failed_in_{_phase}",
        (lambda phase: lambda self: self.failed_phase == phase)(_phase),
    )


def build_machine(graph: bool = False) -> Machine:
    """The one machine for every closure; models are added with `attach`."""
    kwargs: dict[str, Any] = {
        "model": None,
        "states": all_states(),
        "transitions": _transitions(),
        "initial": initial_state(),
        "auto_transitions": False,
        "send_event": False,
        "ignore_invalid_triggers": False,
    }
    if graph:
        from transitions.extensions import GraphMachine

        return GraphMachine(graph_engine="mermaid", title="close-account-bot closure", **kwargs)
    return Machine(**kwargs)


_machines: dict[tuple[steps.StepInfo, ...], Machine] = {}


def machine() -> Machine:
    """The one machine for the current list of steps (built once per list)."""
    key = steps.steps()
    built = _machines.get(key)
    if built is None:
        built = _machines[key] = build_machine()
    return built


def attach(closure: Closure) -> Closure:
    machine().add_model(closure, initial=closure.state)
    return closure


def detach(closure: Closure) -> None:
    machine().remove_model(closure)


def can_fire(closure: Closure, trigger: str) -> bool:
    """Whether `trigger` has a transition out of the closure's state (guards not evaluated)."""
    event = machine().events.get(trigger)
    return event is not None and closure.state in event.transitions


def fire(closure: Closure, trigger: str) -> bool:
    """Fire `trigger` on an attached closure; False when a guard said no."""
    result: bool = getattr(closure, "trigger")(trigger)  # noqa: B009 - attached by transitions
    return result


def mermaid() -> str:
    """The state machine as a Mermaid stateDiagram-v2, drawn by transitions itself."""
    machine = build_machine(graph=True)
    holder = Closure(id="diagram", tenant="", tenant_id="", requester="")
    machine.add_model(holder, initial=holder.state)
    text: str = holder.get_graph().draw(None)  # type: ignore[attr-defined]
    return text
