"""A step's plan: the inventory it acts on, its hash (which binds approvals), and diffs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Item:
    """One thing a step will change: a user, a subscription, a policy..."""

    kind: str
    id: str
    name: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "detail": dict(self.detail)}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Item:
        return Item(str(data["kind"]), str(data["id"]), str(data["name"]), data.get("detail", {}))


@dataclass(frozen=True)
class Blocker:
    """A precondition Microsoft requires that is not met: a code to act on, a text to read."""

    code: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Blocker:
        return Blocker(str(data["code"]), str(data["text"]))


@dataclass(frozen=True)
class Plan:
    """What a step will do. `blockers` stop it; `checklist` is what a person must do."""

    step: str
    tenant_id: str
    items: tuple[Item, ...]
    blockers: tuple[Blocker, ...] = ()
    checklist: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return plan_hash(self.step, self.tenant_id, self.items)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.kind] = out.get(item.kind, 0) + 1
        return out

    def of_kind(self, *kinds: str) -> list[Item]:
        return [i for i in self.items if i.kind in kinds]

    def blocker_codes(self) -> tuple[str, ...]:
        return tuple(b.code for b in self.blockers)

    def blocker_texts(self) -> tuple[str, ...]:
        return tuple(b.text for b in self.blockers)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tenant_id": self.tenant_id,
            "hash": self.hash,
            "items": [i.as_dict() for i in self.items],
            "blockers": [b.as_dict() for b in self.blockers],
            "checklist": list(self.checklist),
            "facts": dict(self.facts),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Plan:
        return Plan(
            step=str(data["step"]),
            tenant_id=str(data["tenant_id"]),
            items=tuple(Item.from_dict(i) for i in data["items"]),
            blockers=tuple(Blocker.from_dict(b) for b in data.get("blockers", ())),
            checklist=tuple(data.get("checklist", ())),
            facts=data.get("facts", {}),
        )


def plan_hash(step: str, tenant_id: str, items: Sequence[Item]) -> str:
    """SHA-256 over the canonical inventory: it changes only if the inventory did."""
    inventory = sorted(
        ([i.kind, i.id, i.name, dict(i.detail)] for i in items), key=lambda x: (x[0], x[1])
    )
    canonical = json.dumps(
        {"step": step, "tenant_id": tenant_id, "items": inventory},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[Item, ...]
    removed: tuple[Item, ...]
    changed: tuple[Item, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def still_to_do(approved: Plan, fresh: Plan) -> Plan:
    """The approved plan less what the step's fresh plan no longer lists: what Microsoft shows
    done already (deleted, cancelled, turned off) is not written again, and nothing the
    approvals did not cover is added."""
    left = {(item.kind, item.id) for item in fresh.items}
    return replace(approved, items=tuple(i for i in approved.items if (i.kind, i.id) in left))


def diff(old: Plan, new: Plan) -> PlanDiff:
    before = {(i.kind, i.id): i for i in old.items}
    after = {(i.kind, i.id): i for i in new.items}
    return PlanDiff(
        added=tuple(after[k] for k in after.keys() - before.keys()),
        removed=tuple(before[k] for k in before.keys() - after.keys()),
        changed=tuple(after[k] for k in after.keys() & before.keys() if after[k] != before[k]),
    )
