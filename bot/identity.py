"""Who people are in Slack: emails resolved to user IDs (and kept), deactivated accounts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from storage import identities

log = logging.getLogger("close_account_bot.identity")
ACTIVE_TTL = 60.0  # seconds a users.info answer is trusted


def is_email(ref: str) -> bool:
    return "@" in ref


class Directory:
    def __init__(self, client: AsyncWebClient, db: Database, clock: Callable[[], float]) -> None:
        self.client = client
        self.db = db
        self.clock = clock
        self._ids = identities.known(db)
        self._active: dict[str, tuple[bool, float]] = {}
        self._asking: dict[str, asyncio.Task[bool]] = {}

    async def resolve(self, refs: Iterable[str]) -> list[str]:
        """Resolve every email through users.lookupByEmail; returns what could not be."""
        problems = []
        for ref in dict.fromkeys(refs):
            if not is_email(ref):
                continue
            try:
                resp = await self.client.users_lookupByEmail(email=ref)
            except SlackApiError as exc:
                error = exc.response.get("error")
                if ref.lower() in self._ids:
                    log.warning("cannot re-resolve %s (%s); using the kept user ID", ref, error)
                else:
                    problems.append(f"{ref}: {error}")
                continue
            user = resp.get("user") or {}
            user_id = str(user.get("id", ""))
            if user_id:
                identities.remember(self.db, ref, user_id, self.clock())
                self._ids[ref.lower()] = user_id
        return problems

    def user_id(self, ref: str) -> str | None:
        return self._ids.get(ref.lower()) if is_email(ref) else ref

    def ids(self, refs: Iterable[str]) -> tuple[str, ...]:
        """The Slack user IDs for `refs`; unresolved emails are left out (they cannot vote)."""
        out = (self.user_id(r) for r in refs)
        return tuple(dict.fromkeys(u for u in out if u))

    async def active(self, user_id: str, *, fresh: bool = False) -> bool:
        """False for a deactivated (or unknown) Slack account; cached for a minute unless fresh."""
        cached = self._active.get(user_id)
        now = self.clock()
        if cached is not None and now - cached[1] < ACTIVE_TTL and not fresh:
            return cached[0]
        # One users.info call per user at a time: closures resumed together share it.
        asking = self._asking.get(user_id)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(user_id))
            self._asking[user_id] = asking
            asking.add_done_callback(lambda _: self._asking.pop(user_id, None))
        return await asyncio.shield(asking)

    async def _ask(self, user_id: str) -> bool:
        now = self.clock()
        try:
            resp = await self.client.users_info(user=user_id)
            user = resp.get("user") or {}
            ok = not user.get("deleted", False) and not user.get("is_bot", False)
        except SlackApiError as exc:
            if exc.response.get("error") != "user_not_found":
                raise
            ok = False
        self._active[user_id] = (ok, now)
        return ok

    def known_inactive(self, user_id: str) -> bool:
        """What the last users.info answer said, without asking again (for use under a lock)."""
        cached = self._active.get(user_id)
        return cached is not None and not cached[0]

    async def active_ids(self, refs: Iterable[str]) -> tuple[str, ...]:
        return tuple([u for u in self.ids(refs) if await self.active(u)])
