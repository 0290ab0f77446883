"""The approval rules of `statemachine.approvals`, pinned one by one with no server involved."""

from __future__ import annotations

from pathlib import Path

from statemachine import approvals as rules
from statemachine.approvals import Decision, Refusal, Vote
from storage import closures as closures_db
from storage.db import open_db

APPROVERS = ("U1", "U2", "U3", "U0REQ")


def tally(*votes: Vote, quorum: int = 2, requesters: tuple[str, ...] = ("U0REQ",)) -> rules.Tally:
    return rules.tally(
        votes, approvers=APPROVERS, requesters=requesters, quorum=quorum, plan_hash="h"
    )


def test_a_rollbacks_requesters_are_the_closures_and_the_rollbacks() -> None:
    """Rule 1 for an action: neither the closure's requester nor the action's counts."""
    assert rules.requesters("U0REQ") == ("U0REQ",)
    assert rules.requesters("U0REQ", "U1") == ("U0REQ", "U1")
    assert rules.requesters("U0REQ", "U0REQ") == ("U0REQ",)
    assert rules.eligible_approvers(APPROVERS, rules.requesters("U0REQ", "U1")) == ("U2", "U3")


def test_a_requester_listed_as_approver_is_refused_as_the_requester() -> None:
    """The requester's reaction is refused for being the requester, a stranger's for not
    being an approver, an approver's not at all."""
    requesters = ("U0REQ",)
    assert rules.voter_refusal("U0REQ", approvers=APPROVERS, requesters=requesters) is (
        Refusal.REQUESTER
    )
    assert rules.voter_refusal("U9", approvers=APPROVERS, requesters=requesters) is (
        Refusal.NOT_APPROVER
    )
    assert rules.voter_refusal("U1", approvers=APPROVERS, requesters=requesters) is None


def test_a_finished_request_takes_no_vote_and_no_withdrawal() -> None:
    """Once a request is approved (the step started), removing a reaction changes nothing."""
    for added in (True, False):
        refusal = rules.vote_refusal(
            status="approved", expired=False, added=added, kind="approve", previous="approve"
        )
        assert refusal is Refusal.FINISHED


def test_an_expired_request_takes_no_vote_but_a_withdrawal() -> None:
    """Rule 4: past its expiry a request takes no new vote; a withdrawal still applies."""
    assert (
        rules.vote_refusal(status="open", expired=True, added=True, kind="approve", previous=None)
        is Refusal.EXPIRED
    )
    assert (
        rules.vote_refusal(
            status="open", expired=True, added=False, kind="approve", previous="approve"
        )
        is None
    )


def test_a_veto_stands_until_removed() -> None:
    """An approver who vetoed cannot approve over the veto; removing the x is allowed."""
    assert (
        rules.vote_refusal(
            status="open", expired=False, added=True, kind="approve", previous="veto"
        )
        is Refusal.VETO_STANDS
    )
    assert (
        rules.vote_refusal(status="open", expired=False, added=False, kind="veto", previous="veto")
        is None
    )
    assert rules.standing({"approve", "veto"}) == "veto"
    assert rules.standing({"approve"}) == "approve"


def test_a_tally_counts_distinct_eligible_approvals() -> None:
    """Rule 2: the same approver twice is one approval; the requester adds nothing."""
    t = tally(Vote("U1", "approve", "h"), Vote("U1", "approve", "h"), Vote("U0REQ", "approve", "h"))
    assert t.approvals == ("U1",) and t.missing == 1 and not t.met


def test_a_veto_decides_before_a_met_quorum() -> None:
    """Rule 2: any eligible veto stops the step even with the quorum there."""
    t = tally(Vote("U1", "approve", "h"), Vote("U2", "approve", "h"), Vote("U3", "veto", "h"))
    assert rules.decide(t, expires_at=100.0, now=0.0) is Decision.VETO


def test_expiry_wins_over_a_late_quorum() -> None:
    """A quorum reached at or after the expiry does not approve: a fresh request follows."""
    t = tally(Vote("U1", "approve", "h"), Vote("U2", "approve", "h"))
    assert rules.decide(t, expires_at=100.0, now=100.0) is Decision.EXPIRE
    assert rules.decide(t, expires_at=100.0, now=99.0) is Decision.APPROVE
    assert rules.decide(tally(), expires_at=100.0, now=0.0) is Decision.WAIT


def test_enough_approvers_needs_the_quorum() -> None:
    """A closure or rollback whose eligible approvers cannot reach the quorum is refused."""
    assert rules.enough_approvers(("U1", "U2"), 2)
    assert not rules.enough_approvers(("U1",), 2)


def test_reconciling_withdraws_what_slack_no_longer_shows() -> None:
    """A stored approval whose reaction is gone from the message is withdrawn."""
    change = rules.reconcile({"U1": "approve"}, set(), eligible=())
    assert change.withdrawn == (("U1", "approve"),) and change.cast == ()


def test_reconciling_casts_what_slack_shows_for_eligible_approvers_only() -> None:
    """A reaction never delivered counts if its author may vote; a veto stands over an
    approval by the same person; a stranger's reaction is left out."""
    present = {("U1", "approve"), ("U2", "approve"), ("U2", "veto"), ("U9", "approve")}
    change = rules.reconcile({}, present, eligible=("U1", "U2"))
    assert set(change.cast) == {("U1", "approve"), ("U2", "veto")}
    assert not change.withdrawn
    assert not rules.reconcile({"U1": "approve"}, {("U1", "approve")}, eligible=("U1",))


def test_rollback_is_possible_until_the_irreversible_step_acts() -> None:
    """The point of no return: once the irreversible step started, no rollback; nothing is
    said of a closed, rolled back or rolling-back closure."""
    assert rules.rollback_possible("disable_mfa", "executing", irreversible_started=False)
    assert rules.rollback_possible("delete_directory", "failed", irreversible_started=False)
    assert not rules.rollback_possible("delete_directory", "failed", irreversible_started=True)
    assert rules.rollback_possible(None, "aborted", irreversible_started=False)
    assert rules.rollback_possible(None, "closed", irreversible_started=True) is None
    assert rules.rollback_possible("rollback", "planning", irreversible_started=False) is None


def test_the_disable_sync_requester_never_approves_turning_sync_off() -> None:
    """Rule 1 for disable-sync: whoever asked the bot to turn sync off is a requester of that
    action (and only while it is under way), like a rollback's requester."""
    action = rules.action_requester(
        rolling_back=False, rollback_requester=None, preparing=True, preparation_requester="U1"
    )
    assert rules.requesters("U0REQ", action) == ("U0REQ", "U1")
    assert rules.voter_refusal("U1", approvers=APPROVERS, requesters=("U0REQ", "U1")) is (
        Refusal.REQUESTER
    )
    done = rules.action_requester(
        rolling_back=False, rollback_requester=None, preparing=False, preparation_requester="U1"
    )
    assert done is None
    rollback = rules.action_requester(
        rolling_back=True, rollback_requester="U2", preparing=True, preparation_requester="U1"
    )
    assert rollback == "U2"


def test_the_disable_sync_requester_is_stored_with_the_closure(tmp_path: Path) -> None:
    """The requester of disable-sync survives a restart: it is a column of the closure."""
    db = open_db(tmp_path / "bot.db")
    closures_db.create_closure(
        db,
        closure_id="c1",
        tenant="contoso",
        tenant_id="tid",
        requester="U0REQ",
        state="delete_users.blocked",
        channel="C1",
        at=0.0,
    )
    closures_db.save_closure(db, "c1", at=1.0, sync_action=True, sync_requester="U1")
    row = closures_db.get_closure(db, "c1")
    assert row is not None and row.sync_action and row.sync_requester == "U1"


def test_veto_lookalikes_are_recognised_but_do_not_veto() -> None:
    """:no_entry:, :-1: (any skin tone) and the like look like a no but are no vote."""
    for name in ("no_entry", "-1::skin-tone-3", "thumbsdown", "heavy_multiplication_x"):
        assert rules.looks_like_veto(name) and rules.reaction_kind(name) is None
    assert not rules.looks_like_veto("x") and not rules.looks_like_veto("tada")
