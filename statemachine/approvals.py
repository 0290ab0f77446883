"""Approval rules as pure functions: who counts, quorum, veto, expiry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

APPROVE_REACTION = "white_check_mark"
VETO_REACTION = "x"
VoteKind = Literal["approve", "veto"]


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


def reaction_kind(reaction: str) -> VoteKind | None:
    """The vote a reaction stands for; skin-tone variants count as the base reaction."""
    base = reaction.split("::", 1)[0]
    if base == APPROVE_REACTION:
        return "approve"
    if base == VETO_REACTION:
        return "veto"
    return None


def eligible_approvers(approvers: Iterable[str], requester: str) -> tuple[str, ...]:
    """Rule 1: only configured approvers count, and never the closure's requester."""
    return tuple(a for a in dict.fromkeys(approvers) if a != requester)


def refusal(user: str, *, approvers: Sequence[str], requester: str) -> str | None:
    """Why a reaction by `user` does not count, or None when it does."""
    if user == requester:
        return "the requester of a closure never counts as an approver"
    if user not in approvers:
        return "not a configured approver for this tenant"
    return None


def tally(
    votes: Iterable[Vote],
    *,
    approvers: Sequence[str],
    requester: str,
    quorum: int,
    plan_hash: str,
) -> Tally:
    """Rule 2: distinct eligible approvals for this exact plan hash; any eligible veto stops."""
    eligible = set(eligible_approvers(approvers, requester))
    approvals: dict[str, None] = {}
    vetoes: dict[str, None] = {}
    for vote in votes:
        if vote.plan_hash != plan_hash or vote.approver not in eligible:
            continue
        (approvals if vote.kind == "approve" else vetoes)[vote.approver] = None
    return Tally(tuple(approvals), tuple(vetoes), quorum)


def expired(expires_at: float, now: float) -> bool:
    return now >= expires_at
