"""Fixtures: the simulated Slack workspace and Microsoft tenant with the real bot between them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.world import World

MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(tmp_path: Path) -> AsyncIterator[MakeWorld]:
    """Build a World (both simulators + the bot on 127.0.0.1); closed after the test."""
    worlds: list[World] = []

    async def make(**kwargs: Any) -> World:
        kwargs.setdefault("users", 40)
        kwargs.setdefault("directory", tmp_path)
        world = await World.create(**kwargs)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        await world.close()


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()
