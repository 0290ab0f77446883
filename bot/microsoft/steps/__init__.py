"""The step registry: each step of `statemachine.steps` is implemented by the module of its name
in this package (its `STEP`), plus the rollback. `implementation` is the one look-up."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from bot.microsoft.steps.base import Step
from statemachine import steps

_overrides: dict[str, Step] = {}
_loaded: dict[str, Step] = {}


def implementation(name: str) -> Step:
    """The implementation of step `name` (or of the rollback)."""
    if name in _overrides:
        return _overrides[name]
    loaded = _loaded.get(name)
    if loaded is not None:
        return loaded
    step: Step
    if name == steps.ROLLBACK:
        from bot.microsoft.steps.rollback import Rollback

        step = Rollback(implementation)
    else:
        module = importlib.import_module(f"{__name__}.{name}")
        found = getattr(module, "STEP", None)
        if found is None or getattr(found, "name", None) != name:
            raise LookupError(f"{module.__name__}.STEP does not implement step {name!r}")
        step = found
    _loaded[name] = step
    return step


@contextlib.contextmanager
def registered(step: Step) -> Iterator[None]:
    """Use `step` for its name while the block runs (a test's toy step)."""
    before = _overrides.get(step.name)
    _overrides[step.name] = step
    try:
        yield
    finally:
        if before is None:
            del _overrides[step.name]
        else:
            _overrides[step.name] = before
