"""The Slack simulator takes uploads past aiohttp's 1 MiB default body limit, as Slack does."""

from __future__ import annotations

import io

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from simulator.slack.server import SimUser, SlackSimulator

ALICE = SimUser("U0ALICE", "alice", "alice@contoso.example")


async def test_a_two_megabyte_file_is_uploaded() -> None:
    """A 2 MB file (a 20,000-user plan) is taken whole at its upload URL, not refused 413."""
    content = b"x" * 2_000_000
    async with SlackSimulator(users=[ALICE]) as sim:
        client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
        url = await client.files_getUploadURLExternal(filename="plan.txt", length=len(content))
        async with (
            aiohttp.ClientSession() as http,
            http.post(str(url["upload_url"]), data=io.BytesIO(content)) as resp,
        ):
            status = resp.status
        done = await client.files_completeUploadExternal(
            files=[{"id": str(url["file_id"])}], channel_id="C0PROGRESS"
        )
        assert status == 200 and done["ok"]
        [uploaded] = sim.files
    assert uploaded["length"] == 2_000_000 and uploaded["content"] == content
