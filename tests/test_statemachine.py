"""The closure state machine and the approval rules, with no server involved."""

from __future__ import annotations

import pytest
from transitions import MachineError

from statemachine import approvals as rules
from statemachine.closure import (
    PHASES,
    Closure,
    all_states,
    attach,
    can_fire,
    fire,
    mermaid,
    next_state_after,
)
from statemachine.plan import Blocker, Item, Plan, diff, plan_hash
from statemachine.steps import names as step_names


def closure(state: str = "delete_users.planning") -> Closure:
    return attach(Closure(id="c1", tenant="contoso", tenant_id="t", requester="U0REQ", state=state))


def tally(*votes: tuple[str, str], quorum: int = 2, plan: str = "h") -> rules.Tally:
    return rules.tally(
        [rules.Vote(u, k, plan) for u, k in votes],  # type: ignore[arg-type]
        approvers=["U1", "U2", "U3", "U0REQ"],
        requesters=("U0REQ",),
        quorum=quorum,
        plan_hash="h",
    )


def test_state_names_are_the_contracts() -> None:
    """Every <step>.<phase> of the contract exists, plus closed and aborted."""
    states = set(all_states())
    for step in step_names():
        for phase in PHASES:
            assert f"{step}.{phase}" in states
    assert {"closed", "aborted"} <= states


def test_approve_needs_quorum() -> None:
    """`approve` leaves awaiting_approval only when the tally meets the quorum."""
    c = closure("delete_users.awaiting_approval")
    c.tally = tally(("U1", "approve"))
    assert fire(c, "approve") is False
    assert c.state == "delete_users.awaiting_approval"
    c.tally = tally(("U1", "approve"), ("U2", "approve"))
    assert fire(c, "approve") is True
    assert c.state == "delete_users.executing"


def test_veto_beats_quorum() -> None:
    """A veto stops a step even when the quorum of approvals is there."""
    c = closure("disable_mfa.awaiting_approval")
    c.tally = tally(("U1", "approve"), ("U2", "approve"), ("U3", "veto"))
    assert fire(c, "approve") is False
    assert fire(c, "veto") is True
    assert c.state == "disable_mfa.rejected"


def test_requester_and_strangers_never_count() -> None:
    """The requester (even when listed as approver) and non-approvers add nothing."""
    t = tally(("U0REQ", "approve"), ("U9", "approve"), ("U1", "approve"))
    assert t.approvals == ("U1",)
    assert not t.met
    assert rules.voter_refusal("U0REQ", approvers=["U0REQ"], requesters=("U0REQ",)) is not None
    assert rules.voter_refusal("U9", approvers=["U1"], requesters=("U0REQ",)) is not None


def test_votes_for_another_plan_do_not_count() -> None:
    """Approvals bind to the plan hash they were cast on."""
    t = rules.tally(
        [rules.Vote("U1", "approve", "old"), rules.Vote("U2", "approve", "new")],
        approvers=["U1", "U2"],
        requesters=("R",),
        quorum=2,
        plan_hash="new",
    )
    assert t.approvals == ("U2",)


def test_failed_retry_resumes_the_failed_phase() -> None:
    """`retry` from failed returns to the phase that failed, not to planning."""
    c = closure("delete_users.executing")
    fire(c, "fail")
    assert (c.state, c.failed_phase) == ("delete_users.failed", "executing")
    fire(c, "retry")
    assert (c.state, c.failed_phase) == ("delete_users.executing", None)


def test_verified_moves_to_next_step_and_finally_closed() -> None:
    """Verifying a step plans the next; verifying step 5 closes the closure."""
    assert next_state_after("delete_users") == "cancel_subscriptions.planning"
    c = closure("delete_directory.verifying")
    fire(c, "verified")
    assert c.state == "closed"


def test_no_transition_out_of_final_states() -> None:
    """Nothing moves a closed or aborted closure."""
    c = closure("delete_users.blocked")
    fire(c, "abort")
    assert c.state == "aborted"
    assert not can_fire(c, "retry")
    with pytest.raises(MachineError):
        fire(c, "retry")


def test_no_skipping_approval() -> None:
    """There is no way from planning to executing without awaiting_approval."""
    c = closure()
    with pytest.raises(MachineError):
        fire(c, "executed")
    assert not can_fire(c, "approve")


def test_mermaid_is_transitions_output() -> None:
    """The diagram is a stateDiagram-v2 with every state."""
    text = mermaid()
    assert "stateDiagram-v2" in text
    assert "delete_directory.waiting_external" in text
    assert "closed" in text


def test_plan_hash_changes_only_with_the_inventory() -> None:
    """Order does not change the hash; an added item does."""
    a = Item("user", "1", "a@x")
    b = Item("user", "2", "b@x")
    assert plan_hash("s", "t", [a, b]) == plan_hash("s", "t", [b, a])
    assert plan_hash("s", "t", [a]) != plan_hash("s", "t", [a, b])
    old, new = Plan("s", "t", (a,)), Plan("s", "t", (a, b))
    change = diff(old, new)
    assert change.added == (b,) and not change.removed


def test_plan_round_trips_through_dict() -> None:
    """A stored plan reads back with the same hash."""
    plan = Plan(
        "s", "t", (Item("user", "1", "a", {"userType": "Guest"}),), (Blocker("c", "x"),), ("do",)
    )
    assert Plan.from_dict(plan.as_dict()).hash == plan.hash
    assert Plan.from_dict(plan.as_dict()).blockers == plan.blockers


def test_durations_read_well_in_slack() -> None:
    """Poll intervals and ETAs are shown in the unit a person expects."""
    from bot.messages import duration

    assert [duration(s) for s in (0.2, 45, 300, 7200)] == ["200ms", "45s", "5m", "2h00m"]
