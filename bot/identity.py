"""Who people are in Slack: emails resolved to user IDs (and kept), deactivated accounts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot.settings import TenantSettings
from storage import identities

log = logging.getLogger("close_account_bot.identity")
ACTIVE_TTL = 60.0  # seconds a users.info answer is trusted


def is_email(ref: str) -> bool:
    return "@" in ref


@dataclass(frozen=True)
class Ping:
    """Whom an admin-center checklist pings: the retained administrator's Slack user, or, when
    there is none, why nobody is pinged. `account` is the retained account as configured."""

    account: str | None
    user_id: str | None = None
    why_not: str | None = None


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

    async def retained_admin(self, tenant: TenantSettings | None) -> Ping:
        """The Slack user of `tenant`'s retained administrator: `retain_slack_user` (an ID or an
        email) if configured, else the first retained account's email, through
        users.lookupByEmail (resolved once and kept, like the approvers' emails)."""
        account = tenant.retain[0] if tenant is not None and tenant.retain else None
        ref = tenant.retain_slack_user if tenant is not None else None
        if ref is None and account is not None and is_email(account):
            ref = account
        if ref is None:
            why = "the retained account is an object ID and `retain_slack_user` is not set"
            return Ping(account, why_not=why)
        user_id = self.user_id(ref)
        try:
            if user_id is None:
                problems = await self.resolve([ref])
                user_id = self.user_id(ref)
                if user_id is None:
                    error = problems[0].rpartition(": ")[2] if problems else "not found"
                    return Ping(account, why_not=f"no Slack user has the email {ref} ({error})")
            active = await self.active(user_id)
        except (SlackApiError, aiohttp.ClientError, OSError) as exc:
            error = (
                exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            )
            if user_id is None:  # Slack not answering never stops a checklist
                return Ping(account, why_not=f"Slack could not look up {ref} just now ({error})")
            log.warning("users.info %s: %s; pinging anyway", user_id, error)
            active = True
        if not active:
            return Ping(account, why_not=f"the Slack account for {ref} is deactivated")
        return Ping(account, user_id=user_id)
