"""Every approval rule as a pure function: who counts, the tally, vetoes, withdrawals, expiry,
reconciling stored votes with the reactions Slack shows, and the point of no return.

The bot reads votes and reactions, calls these, and stores what they decide; it re-implements
none of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from statemachine.steps import ROLLBACK

APPROVE_REACTION = "white_check_mark"
VETO_REACTION = "x"
VoteKind = Literal["approve", "veto"]
# Emoji people reach for to say no that are not the veto: each gets a one-time hint.
VETO_LOOKALIKES = frozenset(
    {
        "no_entry",
        "no_entry_sign",
        "-1",
        "thumbsdown",
        "heavy_multiplication_x",
        "negative_squared_cross_mark",
        "octagonal_sign",
    }
)


@dataclass(frozen=True)
class Vote:
    approver: str
    kind: VoteKind
    plan_hash: str


@dataclass(frozen=True)
class Tally:
    approvals: tuple[str, ...]
    vetoes: tuple[str, ...]
    quorum: int

    @property
    def met(self) -> bool:
        return len(self.approvals) >= self.quorum

    @property
    def vetoed(self) -> bool:
        return bool(self.vetoes)

    @property
    def missing(self) -> int:
        return max(0, self.quorum - len(self.approvals))


class Refusal(StrEnum):
    """Why a reaction does not count (the words are `bot.messages`')."""

    REQUESTER = "requester"  # rule 1: a requester never counts
    NOT_APPROVER = "not_approver"  # rule 1: only the tenant's approvers count
    DEACTIVATED = "deactivated"  # the Slack account is deactivated
    FINISHED = "finished"  # the request is approved, rejected, void or expired
    EXPIRED = "expired"  # rule 4: past its expiry, a request takes no votes
    VETO_STANDS = "veto_stands"  # a veto stands until its x is removed


class Decision(StrEnum):
    """What an open request's votes decide now."""

    VETO = "veto"
    EXPIRE = "expire"
    APPROVE = "approve"
    WAIT = "wait"


def reaction_kind(reaction: str) -> VoteKind | None:
    """The vote a reaction stands for; skin-tone variants count as the base reaction."""
    base = reaction.split("::", 1)[0]
    if base == APPROVE_REACTION:
        return "approve"
    if base == VETO_REACTION:
        return "veto"
    return None


def looks_like_veto(reaction: str) -> bool:
    """An emoji that looks like a no but does not veto (skin tones count as the base)."""
    return reaction.split("::", 1)[0] in VETO_LOOKALIKES


# --- who counts (rule 1) -------------------------------------------------------------------


def requesters(closure_requester: str, action_requester: str | None = None) -> tuple[str, ...]:
    """Who asked for what is being approved: the closure's requester, and the requester of the
    action under approval (a rollback) when there is one. None of them counts."""
    return tuple(dict.fromkeys(r for r in (closure_requester, action_requester) if r))


def action_requester(
    *,
    rolling_back: bool,
    rollback_requester: str | None,
    preparing: bool,
    preparation_requester: str | None,
) -> str | None:
    """Who asked for the action under approval, when it is not the closure itself: the
    rollback's requester, or whoever asked the bot to turn directory sync off."""
    if rolling_back:
        return rollback_requester
    return preparation_requester if preparing else None


def eligible_approvers(approvers: Iterable[str], requesters: Collection[str]) -> tuple[str, ...]:
    """Rule 1: only configured approvers count, and never a requester."""
    return tuple(a for a in dict.fromkeys(approvers) if a not in requesters)


def voter_refusal(
    user: str, *, approvers: Collection[str], requesters: Collection[str]
) -> Refusal | None:
    """Why a reaction by `user` does not count whatever the request, or None when it may."""
    if user in requesters:
        return Refusal.REQUESTER
    if user not in approvers:
        return Refusal.NOT_APPROVER
    return None


def vote_refusal(
    *,
    status: str,
    expired: bool,
    added: bool,
    kind: VoteKind,
    previous: VoteKind | None,
) -> Refusal | None:
    """Why the request does not take this reaction now: it is finished (a withdrawal after the
    step started changes nothing), expired, or an approval while the voter's veto stands."""
    if status != "open":
        return Refusal.FINISHED
    if added and expired:
        return Refusal.EXPIRED
    if added and kind == "approve" and previous == "veto":
        return Refusal.VETO_STANDS
    return None


# --- counting (rules 2 and 4) --------------------------------------------------------------


def tally(
    votes: Iterable[Vote],
    *,
    approvers: Sequence[str],
    requesters: Collection[str],
    quorum: int,
    plan_hash: str,
) -> Tally:
    """Rule 2: distinct eligible approvals for this exact plan hash; any eligible veto stops."""
    eligible = set(eligible_approvers(approvers, requesters))
    approvals: dict[str, None] = {}
    vetoes: dict[str, None] = {}
    for vote in votes:
        if vote.plan_hash != plan_hash or vote.approver not in eligible:
            continue
        (approvals if vote.kind == "approve" else vetoes)[vote.approver] = None
    return Tally(tuple(approvals), tuple(vetoes), quorum)


def expired(expires_at: float, now: float) -> bool:
    return now >= expires_at


def decide(tally: Tally, *, expires_at: float, now: float) -> Decision:
    """A veto stops the step; expiry wins over a late quorum; else the quorum approves."""
    if tally.vetoed:
        return Decision.VETO
    if expired(expires_at, now):
        return Decision.EXPIRE
    if tally.met:
        return Decision.APPROVE
    return Decision.WAIT


def enough_approvers(eligible: Collection[str], quorum: int) -> bool:
    """Whether a quorum can be reached at all with these eligible approvers."""
    return len(eligible) >= quorum


# --- the reactions Slack shows -------------------------------------------------------------


def standing(kinds: Collection[VoteKind]) -> VoteKind:
    """One approver's reactions as one vote: a veto stands until its x is removed."""
    return "veto" if "veto" in kinds else "approve"


@dataclass(frozen=True)
class Reconciliation:
    """What to change so the stored votes match the reactions on the request message."""

    withdrawn: tuple[tuple[str, VoteKind], ...]  # stored votes whose reaction is gone
    cast: tuple[tuple[str, VoteKind], ...]  # reactions Slack shows that were never stored

    def __bool__(self) -> bool:
        return bool(self.withdrawn or self.cast)


def reconcile(
    stored: Mapping[str, VoteKind],
    present: Collection[tuple[str, VoteKind]],
    eligible: Iterable[str],
) -> Reconciliation:
    """Slack may not have delivered a reaction (the bot was down, retries ran out): a stored
    vote whose reaction is gone is withdrawn, and an eligible approver's reaction that is not
    stored is cast, a veto standing over an approval."""
    withdrawn = tuple((a, k) for a, k in stored.items() if (a, k) not in present)
    cast = []
    for approver in eligible:
        kind = standing({k for u, k in present if u == approver})
        if stored.get(approver) != kind and (approver, kind) in present:
            cast.append((approver, kind))
    return Reconciliation(withdrawn, tuple(cast))


# --- the point of no return ----------------------------------------------------------------


def rollback_possible(step: str | None, phase: str, *, irreversible_started: bool) -> bool | None:
    """Whether `rollback` may still run: until the irreversible step starts acting. None where
    it is not worth saying (closed, rolled back, rolling back)."""
    if phase in ("closed", "rolled_back") or step == ROLLBACK:
        return None
    return not irreversible_started
