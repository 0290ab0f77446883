"""The simulated Slack workspace's state: users, channels, messages, reactions, files, Home tabs.

No I/O: the HTTP server (slack.py) and the Web API handlers (slack_webapi.py) read and change it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

JSON = dict[str, Any]
T = TypeVar("T")
Subscriber = Callable[[str, "SimMessage"], None]

SLACKBOT = "USLACKBOT"
TOMBSTONE_TEXT = "This message was deleted."


@dataclass
class SimUser:
    """A member of the workspace; `deleted` is Slack's word for deactivated."""

    id: str
    name: str
    email: str
    deleted: bool = False
    is_bot: bool = False


@dataclass
class SimMessage:
    """A channel message or thread reply, with every version it has had and its reactions."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[JSON] | None = None
    metadata: JSON | None = None
    thread_ts: str | None = None  # None for a top-level message, the parent's ts for a reply
    versions: list[JSON] = field(default_factory=list)  # {text, blocks, metadata}, oldest first
    edited: bool = False
    edited_ts: str | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)  # name -> user IDs, in order
    files: list[JSON] = field(default_factory=list)
    reply_broadcast: bool = False
    bot_id: str | None = None  # the posting app's bot ID when `user` is another app's bot user
    app_id: str | None = None
    tombstone: bool = False  # a deleted thread parent, kept as "This message was deleted."


class Workspace:
    """Everything a Slack workspace holds, and a change signal that wakes `wait_for`."""

    def __init__(
        self,
        *,
        bot_token: str,
        signing_secret: str,
        team_id: str,
        users: list[SimUser] | None,
        channels: dict[str, str] | None,
        bot_scopes: frozenset[str],
        clock: Callable[[], float],
    ) -> None:
        self.bot_token = bot_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.team_domain = "sim-workspace"
        self.bot_user_id = "U0BOT"
        self.bot_id = "B0BOT"
        self.app_id = "A0SIM"
        self.bot_name = "close-account-bot"
        self.bot_scopes = bot_scopes
        self.clock = clock
        self.base_url = ""  # "http://127.0.0.1:PORT", set once the server listens
        self._subscribers: list[tuple[Subscriber, frozenset[str]]] = []
        self._changed = asyncio.Event()
        self.users: dict[str, SimUser] = {}
        self.add_user(SimUser(self.bot_user_id, self.bot_name, "", is_bot=True))
        for user in users or []:
            self.add_user(user)
        self.channels: dict[str, str] = dict(
            channels if channels is not None else {"C0PROGRESS": "closures"}
        )
        self.messages: list[SimMessage] = []
        self.ephemerals: list[JSON] = []
        self.calls: list[JSON] = []
        self.files: list[JSON] = []
        self.home_views: dict[str, JSON] = {}  # user ID -> the Home tab view published for them
        self.pending_uploads: dict[str, JSON] = {}  # upload URL key -> file not yet completed
        self.deleted: list[SimMessage] = []  # messages deleted, as they were, oldest first
        self.bot_removed: set[str] = set()  # channels the bot was removed from
        self.private_channels: set[str] = set()
        # 1:1 direct messages the bot opened (conversations.open): DM channel ID -> member.
        self.ims: dict[str, str] = {}
        self.apps: dict[str, JSON] = {}  # another app's bot user ID -> its bot_profile
        self._by_key: dict[tuple[str, str], SimMessage] = {}
        self._last_us = 0

    # -- users -------------------------------------------------------------------------------

    def add_user(self, user: SimUser) -> None:
        """Adds (or replaces) a workspace member; the workspace keeps its own copy."""
        self.users[user.id] = replace(user)
        self.notify()

    def deactivate(self, user_id: str) -> None:
        """Deactivates a member, as an admin would: users.info then says `deleted: true`."""
        self.users[user_id].deleted = True
        self.notify()

    def user_name(self, user_id: str) -> str:
        user = self.users.get(user_id)
        return user.name if user else user_id

    def channel_id(self, ref: str) -> str | None:
        """Resolves a channel ID or name ("C0PROGRESS", "closures", "#closures")."""
        if ref in self.channels or ref in self.ims:
            return ref
        name = ref.removeprefix("#")
        return next((cid for cid, cname in self.channels.items() if cname == name), None)

    def open_im(self, user_id: str) -> tuple[str, bool]:
        """The bot's direct message with `user_id`, opened if need be; True if it was open."""
        found = next((cid for cid, uid in self.ims.items() if uid == user_id), None)
        if found is not None:
            return found, True
        channel = "D" + user_id.removeprefix("U")
        self.ims[channel] = user_id
        self.notify()
        return channel, False

    # -- messages ----------------------------------------------------------------------------

    def next_ts(self) -> str:
        """A message timestamp from the clock, strictly greater than every earlier one."""
        now_us = int(self.clock() * 1_000_000) // 100 * 100
        self._last_us = max(now_us, self._last_us + 100)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def message(self, channel: str, ts: str) -> SimMessage | None:
        return self._by_key.get((channel, ts))

    def replies(self, channel: str, parent_ts: str) -> list[SimMessage]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts == parent_ts]

    def post(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        blocks: list[JSON] | None = None,
        metadata: JSON | None = None,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        files: list[JSON] | None = None,
        bot_id: str | None = None,
        app_id: str | None = None,
    ) -> SimMessage:
        """Stores a new message (a reply if `thread_ts`) and tells subscribers."""
        if thread_ts is not None:
            parent = self.message(channel, thread_ts)
            if parent is not None and parent.thread_ts is not None:
                thread_ts = parent.thread_ts  # a reply's ts threads under its parent, as in Slack
        msg = SimMessage(
            channel=channel,
            ts=self.next_ts(),
            user=user,
            text=text,
            blocks=blocks,
            metadata=metadata,
            thread_ts=thread_ts,
            reply_broadcast=reply_broadcast and thread_ts is not None,
            files=list(files or []),
            bot_id=bot_id,
            app_id=app_id,
        )
        msg.versions.append({"text": text, "blocks": blocks, "metadata": metadata})
        self.messages.append(msg)
        self._by_key[(channel, msg.ts)] = msg
        self._publish("posted", msg)
        return msg

    def say(
        self, user_id: str, channel: str, text: str, thread_ts: str | None = None
    ) -> SimMessage:
        """A person posts a plain message (or thread reply), as typed in the Slack client."""
        if user_id not in self.users or self.users[user_id].deleted:
            raise ValueError(f"{user_id} is not an active member of the workspace")
        if channel not in self.channels:
            raise ValueError(f"no channel {channel}")
        return self.post(channel=channel, user=user_id, text=text, thread_ts=thread_ts)

    def edit(
        self, msg: SimMessage, *, text: str, blocks: list[JSON] | None, metadata: JSON | None
    ) -> None:
        """Replaces a message's content, keeping the old version in `versions`."""
        msg.text, msg.blocks, msg.metadata, msg.edited = text, blocks, metadata, True
        msg.edited_ts = self.next_ts()
        msg.versions.append({"text": text, "blocks": blocks, "metadata": metadata})
        self._publish("updated", msg)

    def add_reaction(self, msg: SimMessage, name: str, user_id: str) -> bool:
        """Adds a reaction; False if this user already had it."""
        users = msg.reactions.setdefault(name, [])
        if user_id in users:
            return False
        users.append(user_id)
        self._publish("reacted", msg)
        return True

    def remove_reaction(self, msg: SimMessage, name: str, user_id: str) -> bool:
        """Removes a reaction; False if this user did not have it."""
        users = msg.reactions.get(name, [])
        if user_id not in users:
            return False
        users.remove(user_id)
        if not users:
            del msg.reactions[name]
        self._publish("reacted", msg)
        return True

    def delete(self, msg: SimMessage) -> None:
        """Deletes a message. A thread parent with replies stays as a tombstone, as Slack shows
        it: subtype `tombstone`, user USLACKBOT, "This message was deleted.", `hidden: true`
        (the message_changed event Slack sends for a deleted parent carries that message; the
        method reference does not describe it). Any other message is gone: every method then
        answers as for a ts that never existed."""
        reactions = {name: list(users) for name, users in msg.reactions.items()}
        self.deleted.append(replace(msg, versions=list(msg.versions), reactions=reactions))
        if msg.thread_ts is None and self.replies(msg.channel, msg.ts):
            msg.user, msg.text, msg.tombstone = SLACKBOT, TOMBSTONE_TEXT, True
            msg.blocks = msg.metadata = msg.bot_id = msg.app_id = None
            msg.reactions, msg.files, msg.edited = {}, [], False
        else:
            self.messages.remove(msg)
            del self._by_key[(msg.channel, msg.ts)]
        self._publish("deleted", msg)

    def delete_message(self, channel: str, ts: str, *, by: str = "U0ADMIN") -> SimMessage:
        """Someone other than the bot deletes a message: a workspace admin (`by` a user ID),
        another app, or a retention policy (`by="retention"`). Slack lets admins delete any
        message, and a retention policy deletes messages older than it keeps (Slack help: "Customize
        message and file retention policies")."""
        msg = self.message(channel, ts)
        if msg is None or msg.tombstone:
            raise ValueError(f"no message {ts} in {channel}")
        self.delete(msg)
        return msg

    def bot_in(self, channel: str) -> bool:
        return channel not in self.bot_removed

    def kick_bot(self, channel: str, *, private: bool | None = None) -> None:
        """A member removes the bot from a channel (`/remove @bot`); `private` marks the
        channel private (the bot then cannot see it at all) or public."""
        if channel not in self.channels:
            raise ValueError(f"no channel {channel}")
        if private is not None:
            (self.private_channels.add if private else self.private_channels.discard)(channel)
        self.bot_removed.add(channel)
        self.notify()

    def invite_bot(self, channel: str) -> None:
        """A member adds the bot back to a channel (`/invite @bot`)."""
        self.bot_removed.discard(channel)
        self.notify()

    def post_as_app(
        self,
        app_id: str,
        channel: str,
        thread_ts: str | None,
        text: str,
        metadata: JSON | None = None,
        *,
        bot_id: str | None = None,
        user: str | None = None,
        name: str = "other-app",
        blocks: list[JSON] | None = None,
    ) -> SimMessage:
        """Another app installed in the workspace posts (with its own bot token): the message
        carries that app's `user`, `bot_id`, `app_id` and `bot_profile`, and whatever metadata
        it chose, even the bot's own event types, so tests can plant look-alikes."""
        if channel not in self.channels:
            raise ValueError(f"no channel {channel}")
        if app_id == self.app_id:
            raise ValueError("that is the bot's own app; post through the Web API")
        bot_id = bot_id or "B" + app_id[1:]
        user = user or "U" + app_id[1:]
        if user == self.bot_user_id or bot_id == self.bot_id:
            raise ValueError("another app has its own bot user and bot ID")
        if user not in self.users:
            self.add_user(SimUser(user, name, "", is_bot=True))
        self.apps[user] = {
            "id": bot_id,
            "app_id": app_id,
            "name": name,
            "team_id": self.team_id,
            "deleted": False,
        }
        return self.post(
            channel=channel,
            user=user,
            text=text,
            blocks=blocks,
            metadata=metadata,
            thread_ts=thread_ts,
            bot_id=bot_id,
            app_id=app_id,
        )

    def thread(self, channel: str, thread_ts: str) -> list[SimMessage]:
        """The parent message (if it exists) followed by its replies, oldest first."""
        parent = self.message(channel, thread_ts)
        return ([parent] if parent else []) + self.replies(channel, thread_ts)

    def find(
        self,
        *,
        event_type: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> list[SimMessage]:
        """Messages whose metadata event_type (and channel, and thread) match, in order posted."""
        return [
            m
            for m in self.messages
            if (event_type is None or (m.metadata or {}).get("event_type") == event_type)
            and (channel is None or m.channel == channel)
            and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    # -- change signal -----------------------------------------------------------------------

    def subscribe(
        self, callback: Subscriber, *, reactions: bool = False, deletions: bool = False
    ) -> None:
        """Calls `callback("posted"|"updated", message)` on every change to a channel message;
        with `reactions=True` also `("reacted", message)` when a reaction is added or removed,
        with `deletions=True` also `("deleted", message)` when a message is deleted."""
        kinds = {"posted", "updated"} | ({"reacted"} if reactions else set())
        self._subscribers.append(
            (callback, frozenset(kinds | ({"deleted"} if deletions else set())))
        )

    def _publish(self, kind: str, msg: SimMessage) -> None:
        for callback, kinds in self._subscribers:
            if kind in kinds:
                callback(kind, msg)
        self.notify()

    def notify(self) -> None:
        """Wakes every `wait_for`; called after each change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[Any], T | bool | None],
        timeout: float = 10.0,  # noqa: ASYNC109 - the simulator's documented API, as asyncio.wait_for
    ) -> T:
        """Returns the predicate's first truthy result, re-checked after every change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    result = predicate(self)
                    if result:
                        return cast(T, result)
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(self._timeout_report(predicate, timeout)) from None

    def _timeout_report(self, predicate: Callable[..., object], timeout: float) -> str:
        try:
            what = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            what = getattr(predicate, "__qualname__", repr(predicate))
        lines = [f"wait_for timed out after {timeout}s waiting for: {what}"]
        lines.append(f"{len(self.messages)} messages; the last ones:")
        for m in self.messages[-5:]:
            event_type = (m.metadata or {}).get("event_type")
            first = (m.text or "").splitlines()[0][:80] if m.text else ""
            where = f"{m.channel} thread {m.thread_ts}" if m.thread_ts else m.channel
            lines.append(f"  {m.ts} {where} {m.user} [{event_type}] {first!r}")
        lines.append("last Web API calls:")
        for c in self.calls[-5:]:
            lines.append(f"  {c['method']} ok={c['ok']} error={c.get('error')}")
        for e in self.ephemerals[-3:]:
            lines.append(f"  ephemeral to {e.get('user')}: {str(e.get('text'))[:80]!r}")
        return "\n".join(lines)
