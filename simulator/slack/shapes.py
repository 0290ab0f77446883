"""Slack's JSON shapes of the workspace's objects (message, user, channel, permalink), as the
Web API returns them.
"""

from __future__ import annotations

from simulator.slack.state import JSON, SimMessage, SimUser, Workspace


def message_json(ws: Workspace, msg: SimMessage, *, metadata: bool) -> JSON:
    """A message as conversations.history / replies return it."""
    out: JSON = {"type": "message", "user": msg.user, "text": msg.text, "ts": msg.ts}
    if msg.tombstone:
        # A deleted thread parent: Slack keeps its place in the thread and nothing else.
        out |= {"subtype": "tombstone", "hidden": True}
    else:
        out["team"] = ws.team_id
    # An app's message (posted with its bot token) names its bot user, bot and app; another
    # app's looks exactly like the bot's own but for the IDs (docs.slack.dev, "bot_profile"
    # in the message object reference; no `subtype: bot_message`, which is for legacy
    # integrations and webhooks).
    if msg.user == ws.bot_user_id:
        out["bot_id"] = ws.bot_id
        out["app_id"] = ws.app_id
        out["bot_profile"] = {
            "id": ws.bot_id,
            "app_id": ws.app_id,
            "name": ws.bot_name,
            "team_id": ws.team_id,
            "deleted": False,
        }
    elif msg.bot_id is not None:
        out["bot_id"] = msg.bot_id
        out["app_id"] = msg.app_id
        out["bot_profile"] = dict(ws.apps.get(msg.user) or {"id": msg.bot_id})
    if msg.blocks:
        out["blocks"] = msg.blocks
    if metadata and msg.metadata:
        out["metadata"] = msg.metadata
    if msg.edited:
        out["edited"] = {"user": msg.user, "ts": msg.edited_ts}
    if msg.thread_ts is not None:
        out["thread_ts"] = msg.thread_ts
        parent = ws.message(msg.channel, msg.thread_ts)
        if parent is not None:
            out["parent_user_id"] = parent.user
        if msg.reply_broadcast:
            out["subtype"] = "thread_broadcast"
    else:
        replies = ws.replies(msg.channel, msg.ts)
        if replies:
            reply_users = list(dict.fromkeys(r.user for r in replies))
            out |= {
                "thread_ts": msg.ts,
                "reply_count": len(replies),
                "reply_users": reply_users,
                "reply_users_count": len(reply_users),
                "latest_reply": replies[-1].ts,
            }
    if msg.reactions:
        out["reactions"] = [
            {"name": name, "users": list(users), "count": len(users)}
            for name, users in msg.reactions.items()
        ]
    if msg.files:
        out["files"] = msg.files
    return out


def user_json(ws: Workspace, user: SimUser) -> JSON:
    """A user object; the email only with users:read.email, as in Slack."""
    profile: JSON = {
        "real_name": user.name,
        "display_name": user.name,
        "real_name_normalized": user.name,
        "display_name_normalized": user.name,
        "team": ws.team_id,
    }
    if "users:read.email" in ws.bot_scopes and user.email:
        profile["email"] = user.email
    if user.is_bot:
        profile["bot_id"] = ws.bot_id if user.id == ws.bot_user_id else None
    return {
        "id": user.id,
        "team_id": ws.team_id,
        "name": user.name,
        "deleted": user.deleted,
        "real_name": user.name,
        "tz": "Etc/UTC",
        "tz_label": "Coordinated Universal Time",
        "tz_offset": 0,
        "profile": profile,
        "is_admin": False,
        "is_owner": False,
        "is_primary_owner": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_bot": user.is_bot,
        "is_app_user": False,
        "updated": 1_700_000_000,
    }


def permalink(ws: Workspace, msg: SimMessage) -> str:
    link = f"{ws.base_url}/archives/{msg.channel}/p{msg.ts.replace('.', '')}"
    if msg.thread_ts is not None:
        link += f"?thread_ts={msg.thread_ts}&cid={msg.channel}"
    return link


def channel_json(ws: Workspace, channel: str) -> JSON:
    """A channel as conversations.info returns it (`is_member` false once the bot is removed)."""
    if channel in ws.ims:
        return im_json(ws, channel)
    name = ws.channels[channel]
    private = channel in ws.private_channels
    return {
        "id": channel,
        "name": name,
        "name_normalized": name,
        # Private channels made since March 2021 are channels too: is_group is for old G IDs
        # (docs.slack.dev, the conversation object reference).
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": private,
        "is_archived": False,
        "is_general": False,
        "is_shared": False,
        "is_ext_shared": False,
        "is_org_shared": False,
        "is_member": ws.bot_in(channel),
        "created": 1_700_000_000,
        "creator": ws.bot_user_id,
        "topic": {"value": "", "creator": "", "last_set": 0},
        "purpose": {"value": "", "creator": "", "last_set": 0},
    }


def im_json(ws: Workspace, channel: str) -> JSON:
    """A 1:1 direct message with the bot, as conversations.open returns it with return_im
    (slackapi/java-slack-sdk, json-logs/samples/api/conversations.open.json: id, created,
    is_archived, is_im, is_org_shared, user, last_read, latest, unread counts, priority)."""
    in_it = [m for m in ws.messages if m.channel == channel]
    return {
        "id": channel,
        "created": 1_700_000_000,
        "is_archived": False,
        "is_im": True,
        "is_org_shared": False,
        "user": ws.ims[channel],
        "last_read": "0000000000.000000",
        "latest": message_json(ws, in_it[-1], metadata=False) if in_it else None,
        "unread_count": 0,
        "unread_count_display": 0,
        "is_open": True,
        "priority": 0,
    }
