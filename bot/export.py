"""The audit export: the trail written to files off the event loop, then streamed from disk to
Slack's external upload (files.getUploadURLExternal, a POST of the bytes, then
files.completeUploadExternal), so a 50,000-row trail never sits in memory or stalls the loop.
The list of what a closure changed (bot.summary) is shared the same way."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.auditlog import FIELDS, csv_fields, fields_of
from storage.audit import AuditRow


class UploadError(Exception):
    """Slack did not take the file's bytes; str() says what it answered."""


@dataclass(frozen=True)
class ExportFile:
    path: Path
    name: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def write_files(rows: Sequence[AuditRow], directory: Path, stamp: str) -> list[ExportFile]:
    """The trail as CSV and JSON files in `directory`, written row by row (run it in a thread)."""
    csv_path, json_path = directory / f"{stamp}.csv", directory / f"{stamp}.json"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_fields(row))
    with json_path.open("w", encoding="utf-8") as out:
        out.write("[")
        for n, row in enumerate(rows):
            out.write(",\n" if n else "\n")
            out.write(json.dumps(fields_of(row), indent=2, sort_keys=True))
        out.write("\n]" if rows else "]")
    return [ExportFile(csv_path, csv_path.name), ExportFile(json_path, json_path.name)]


async def post_files(
    client: AsyncWebClient,
    rows: Sequence[AuditRow],
    *,
    stamp: str,
    channel: str,
    thread_ts: str,
    comment: str,
) -> None:
    """Write the trail's files off the loop, stream each to its upload URL, then share both in
    the thread. Raises SlackApiError, UploadError or an aiohttp error; the files are removed."""
    await share_written(
        client,
        lambda tmp: write_files(rows, tmp, stamp),
        channel=channel,
        thread_ts=thread_ts,
        comment=comment,
    )


async def share_written(
    client: AsyncWebClient,
    write: Callable[[Path], list[ExportFile]],
    *,
    channel: str,
    thread_ts: str,
    comment: str,
) -> None:
    """Run `write` in a thread (it writes files into the directory it is given), stream each
    file to its upload URL, then share them all in the thread with `comment`. Raises
    SlackApiError, UploadError or an aiohttp error; the files are removed."""
    with tempfile.TemporaryDirectory(prefix="close-account-export-") as tmp:
        files = await asyncio.to_thread(write, Path(tmp))
        uploaded: list[dict[str, str | None]] = []
        for f in files:
            issued = await client.files_getUploadURLExternal(filename=f.name, length=f.size)
            await _stream(client, str(issued["upload_url"]), f)
            uploaded.append({"id": str(issued["file_id"]), "title": f.name})
        await client.files_completeUploadExternal(
            files=uploaded, channel_id=channel, thread_ts=thread_ts, initial_comment=comment
        )


async def _stream(client: AsyncWebClient, url: str, f: ExportFile) -> None:
    """POST the file's bytes from disk, a chunk at a time (aiohttp streams a file object)."""
    session = client.session or aiohttp.ClientSession()
    try:
        with f.path.open("rb") as body:
            headers = {"Content-Length": str(os.fstat(body.fileno()).st_size)}
            async with session.post(
                url,
                data=body,
                headers=headers,
                ssl=client.ssl if client.ssl is not None else True,
                proxy=client.proxy,
            ) as resp:
                if resp.status != 200:
                    raise UploadError(f"the upload of {f.name} was answered {resp.status}")
    finally:
        if session is not client.session:
            await session.close()
