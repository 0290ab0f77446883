"""The one list of steps: each step's name, title, order, quorum key and whether it is reversible.

The machine's states, the status checklist, the config's `quorum_by_step` keys and the step
numbers people read all derive from this list; the bot looks each step's implementation up by
name (`bot.microsoft.steps`). Adding a step is one line here and one module there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    """What the closure knows of a step: nothing here does I/O."""

    name: str
    title: str
    verb: str  # what happens to the step's items, as its approval request says it
    reversible: bool = True  # False: once it acts, nothing can be rolled back (point of no return)
    quorum_key: str = ""  # its key in the config's `quorum_by_step`; the name unless given

    @property
    def key(self) -> str:
        return self.quorum_key or self.name


ROLLBACK_STEP = StepInfo("rollback", "Roll back what the closure changed", "will be restored")
ROLLBACK = ROLLBACK_STEP.name

RUNBOOK: tuple[StepInfo, ...] = (
    StepInfo(
        "delete_users",
        "Delete users",
        "will be deleted (soft delete: restorable for 30 days until step 5)",
    ),
    StepInfo(
        "cancel_subscriptions",
        "Cancel all active subscriptions",
        "must be cancelled (checklist follows after approval)",
    ),
    StepInfo(
        "delete_disabled_subscriptions",
        "Delete all disabled subscriptions",
        "must be deleted (checklist follows after approval)",
    ),
    StepInfo("disable_mfa", "Disable multi-factor authentication", "will be turned off"),
    StepInfo(
        "delete_directory",
        "Delete the directory in Microsoft Entra ID",
        "will be removed for good",
        reversible=False,
    ),
)

_steps: tuple[StepInfo, ...] = RUNBOOK


def steps() -> tuple[StepInfo, ...]:
    """The closure's steps, in order (the rollback is not one of them)."""
    return _steps


def names() -> tuple[str, ...]:
    return tuple(s.name for s in _steps)


def info(name: str) -> StepInfo:
    """A step of the list, or the rollback; KeyError for anything else."""
    if name == ROLLBACK:
        return ROLLBACK_STEP
    for step in _steps:
        if step.name == name:
            return step
    raise KeyError(name)


def is_step(name: str | None) -> bool:
    """Whether `name` is one of the closure's steps (the rollback is not)."""
    return any(s.name == name for s in _steps)


def number(name: str) -> int:
    """1 for the first step; ValueError for the rollback or an unknown name."""
    return names().index(name) + 1


def first() -> str:
    return _steps[0].name


def last() -> str:
    return _steps[-1].name


def following(name: str) -> str | None:
    """The step after `name`; None after the last step and after the rollback."""
    if name == ROLLBACK:
        return None
    index = names().index(name)
    return _steps[index + 1].name if index + 1 < len(_steps) else None


def quorum_keys() -> tuple[str, ...]:
    """The keys `quorum_by_step` may set: each step's, then the rollback's."""
    return tuple(dict.fromkeys([*(s.key for s in _steps), ROLLBACK_STEP.key]))


def point_of_no_return() -> str | None:
    """The first irreversible step: once it starts acting, a rollback is refused."""
    return next((s.name for s in _steps if not s.reversible), None)


@contextlib.contextmanager
def registered(*replacement: StepInfo) -> Iterator[None]:
    """Run with `replacement` as the list of steps (a test's toy step), then restore it."""
    global _steps
    before = _steps
    _steps = tuple(replacement)
    try:
        yield
    finally:
        _steps = before
