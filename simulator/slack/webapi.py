"""The Slack Web API methods the simulator implements, over the workspace state (no I/O).

`call(workspace, method, args)` checks scopes and required arguments, then runs the method.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.slack.blocks import (
    Invalid,
    check_blocks,
    check_metadata,
    check_view,
    parse_json_arg,
)
from simulator.slack.shapes import channel_json, im_json, message_json, permalink, user_json
from simulator.slack.state import JSON, SimMessage, Workspace

# Text limits count the `text` field as sent, in Unicode code points (Python's len): after the
# sender's own &amp;/&lt;/&gt; escaping, before Slack renders mrkdwn or expands <@U..> mentions.
# Slack does not say how it counts; code points as sent is what an app can check before sending.
#
# chat.postMessage: Slack documents truncating text beyond 40,000 characters (api.slack.com/
# changelog/2018-04-truncating-really-long-messages) and its reference lists no msg_too_long
# (../shared/reference/slack/methods/chat.postMessage.json). The simulator refuses instead of
# truncating, so a bot that would lose the end of a message finds out in tests.
MAX_POST_TEXT = 40_000
# chat.update: "msg_too_long: ... The `text` field cannot exceed 4,000 characters."
# (../shared/reference/slack/methods/chat.update.json); chat.postEphemeral lists msg_too_long
# without a number, so it gets chat.postMessage's 40,000.
MAX_UPDATE_TEXT = 4_000
# files: Slack accepts files up to 1 GB (Slack help, "Add files to Slack"); counted in decimal
# bytes, the stricter reading. files.getUploadURLExternal documents no error for a file over the
# limit but `file_upload_size_restricted` ("The size of provided file is too large"), and
# `snippet_too_large` for a snippet over 1MB
# (../shared/reference/slack/methods/files.getUploadURLExternal.json).
MAX_UPLOAD_BYTES = 1_000_000_000
MAX_SNIPPET_BYTES = 1_000_000
# reactions.get: "full: If true always return the complete reaction list."
# (../shared/reference/slack/methods/reactions.get.json). Without it Slack may shorten each
# reaction's `users` (its `count` stays the total); Slack does not say to how many. The
# simulator always shortens, to this many, so a bot reading votes without full=true is caught.
REACTIONS_SHORT_USERS = 2

Handler = Callable[[Workspace, JSON], JSON]


@dataclass(frozen=True)
class Method:
    handler: Handler
    scope: str | None  # the bot scope Slack requires (for public channels), None if none
    required: tuple[str, ...]


METHODS: dict[str, Method] = {}


def _method(
    name: str, *, scope: str | None, required: tuple[str, ...] = ()
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        METHODS[name] = Method(handler, scope, required)
        return handler

    return register


def call(ws: Workspace, name: str, args: JSON) -> JSON:
    """Runs one authenticated Web API call; raises `Invalid` for an `ok: false` answer."""
    method = METHODS.get(name)
    if method is None:
        raise Invalid("unknown_method")
    if method.scope is not None and method.scope not in ws.bot_scopes:
        raise Invalid(
            "missing_scope", needed=method.scope, provided=",".join(sorted(ws.bot_scopes))
        )
    missing = [arg for arg in method.required if args.get(arg) in (None, "")]
    if missing:
        raise Invalid(
            "invalid_arguments", [f"[ERROR] missing required field: {arg}" for arg in missing]
        )
    return {"ok": True, **method.handler(ws, args)}


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _str(args: JSON, name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid("invalid_arguments", [f"[ERROR] must provide a string: {name}"])
    return str(value)


def _int(args: JSON, name: str, default: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Invalid("invalid_arguments", [f"[ERROR] must provide an integer: {name}"]) from None


def _channel(
    ws: Workspace, args: JSON, name: str = "channel", *, outside: str | None = "channel_not_found"
) -> str:
    """The channel named by `args[name]`. Once the bot is removed from it, a private channel is
    channel_not_found to the bot (it can no longer see it), and a public one answers `outside`:
    the error the method's reference documents for a non-member (`not_in_channel` where it is
    listed, else `channel_not_found`), or None where a public channel stays readable."""
    ref = _str(args, name)
    channel = ws.channel_id(ref) if ref else None
    if channel is None:
        raise Invalid("channel_not_found")
    if not ws.bot_in(channel):
        if channel in ws.private_channels:
            raise Invalid("channel_not_found")
        if outside is not None:
            raise Invalid(outside)
    return channel


def _message(ws: Workspace, channel: str, ts: str | None) -> SimMessage:
    """The message at `ts`; a deleted one (gone, or a thread parent's tombstone) is not found."""
    msg = ws.message(channel, ts) if ts else None
    if msg is None or msg.tombstone:
        raise Invalid("message_not_found")
    return msg


def _content(args: JSON) -> tuple[str | None, list[JSON] | None]:
    """The text and blocks of a post; blocks are checked as Slack checks them."""
    text = _str(args, "text")
    raw_blocks = args.get("blocks")
    blocks = None if raw_blocks in (None, "") else check_blocks(raw_blocks)
    if _str(args, "markdown_text") is not None and (text is not None or blocks):
        raise Invalid("markdown_text_conflict")
    return text, blocks


# -- methods -------------------------------------------------------------------------------


@_method("auth.test", scope=None)
def auth_test(ws: Workspace, args: JSON) -> JSON:
    return {
        "url": f"https://{ws.team_domain}.slack.com/",
        "team": "Simulated Workspace",
        "user": ws.bot_name,
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        # A bot token's auth.test names its app too (slackapi/node-slack-sdk
        # packages/web-api/src/types/response/AuthTestResponse.ts: app_id, app_name).
        "app_id": ws.app_id,
        "is_enterprise_install": False,
    }


@_method("chat.postMessage", scope="chat:write", required=("channel",))
def chat_post_message(ws: Workspace, args: JSON) -> JSON:
    # not_in_channel: "Cannot post user messages to a channel they are not in"; with
    # chat:write.public a bot may post in any public channel (docs.slack.dev, chat:write.public).
    public_ok = "chat:write.public" in ws.bot_scopes
    channel = _channel(ws, args, outside=None if public_ok else "not_in_channel")
    text, blocks = _content(args)
    if text is None and not blocks and not args.get("attachments"):
        raise Invalid("no_text")
    if text is not None and len(text) > MAX_POST_TEXT:
        raise Invalid("msg_too_long")
    raw_metadata = args.get("metadata")
    metadata = None if raw_metadata in (None, "") else check_metadata(raw_metadata)
    msg = ws.post(
        channel=channel,
        user=ws.bot_user_id,
        text=text or "",
        blocks=blocks or None,
        metadata=metadata,
        thread_ts=_str(args, "thread_ts"),
        reply_broadcast=_bool(args.get("reply_broadcast")),
    )
    return {"channel": channel, "ts": msg.ts, "message": message_json(ws, msg, metadata=True)}


@_method("chat.update", scope="chat:write", required=("channel", "ts"))
def chat_update(ws: Workspace, args: JSON) -> JSON:
    channel = _channel(ws, args)  # lists no not_in_channel: channel_not_found once removed
    msg = _message(ws, channel, _str(args, "ts"))
    if msg.user != ws.bot_user_id:
        raise Invalid("cant_update_message")
    text, blocks = _content(args)
    if text is None and blocks is None and not args.get("attachments"):
        raise Invalid("no_text")
    if text is not None and len(text) > MAX_UPDATE_TEXT:
        raise Invalid("msg_too_long")
    metadata = msg.metadata
    if "metadata" in args and args["metadata"] is not None:
        metadata = check_metadata(args["metadata"], allow_empty=True) or None
    # Slack: blocks given replace the old ones ([] removes them); text without blocks drops them.
    ws.edit(msg, text=text or "", blocks=blocks or None, metadata=metadata)
    return {
        "channel": channel,
        "ts": msg.ts,
        "text": msg.text,
        "message": message_json(ws, msg, metadata=True),
    }


@_method("chat.postEphemeral", scope="chat:write", required=("channel", "user"))
def chat_post_ephemeral(ws: Workspace, args: JSON) -> JSON:
    channel = _channel(ws, args, outside="not_in_channel")
    user = ws.users.get(_str(args, "user") or "")
    if user is None or user.deleted:
        raise Invalid("user_not_in_channel")
    text, blocks = _content(args)
    if text is None and not blocks and not args.get("attachments"):
        raise Invalid("no_text")
    if text is not None and len(text) > MAX_POST_TEXT:
        raise Invalid("msg_too_long")
    message_ts = ws.next_ts()
    ws.ephemerals.append(
        {
            "user": user.id,
            "channel": channel,
            "text": text or "",
            "blocks": blocks or None,
            "response_type": "ephemeral",
            "thread_ts": _str(args, "thread_ts"),
            "message_ts": message_ts,
            "source": "chat.postEphemeral",
        }
    )
    ws.notify()
    return {"message_ts": message_ts}


@_method("chat.getPermalink", scope=None, required=("channel", "message_ts"))
def chat_get_permalink(ws: Workspace, args: JSON) -> JSON:
    channel = _channel(ws, args, outside=None)
    msg = _message(ws, channel, _str(args, "message_ts"))
    return {"channel": channel, "permalink": permalink(ws, msg)}


@_method("conversations.info", scope="channels:read", required=("channel",))
def conversations_info(ws: Workspace, args: JSON) -> JSON:
    channel = _channel(ws, args, outside=None)  # a public channel's info: is_member false
    info = channel_json(ws, channel)
    if _bool(args.get("include_num_members")):
        info["num_members"] = sum(1 for u in ws.users.values() if not u.deleted)
    return {"channel": info}


def _window(args: JSON, messages: list[SimMessage]) -> list[SimMessage]:
    def ts_arg(name: str, error: str) -> float | None:
        raw = _str(args, name)
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:
            raise Invalid(error) from None

    oldest = ts_arg("oldest", "invalid_ts_oldest")
    latest = ts_arg("latest", "invalid_ts_latest")
    inclusive = _bool(args.get("inclusive"))
    out = []
    for m in messages:
        t = float(m.ts)
        if oldest is not None and (t < oldest or (t == oldest and not inclusive)):
            continue
        if latest is not None and (t > latest or (t == latest and not inclusive)):
            continue
        out.append(m)
    return out


def _page(args: JSON, items: list[JSON], default_limit: int) -> JSON:
    """Cursor pagination: the cursor is an opaque token naming the next offset."""
    limit = max(1, min(_int(args, "limit", default_limit), 999))
    cursor = _str(args, "cursor")
    start = 0
    if cursor is not None:
        if not cursor.startswith("offset_") or not cursor[7:].isdigit():
            raise Invalid("invalid_cursor")
        start = int(cursor[7:])
    page = items[start : start + limit]
    has_more = start + limit < len(items)
    return {
        "messages": page,
        "has_more": has_more,
        "response_metadata": {"next_cursor": f"offset_{start + limit}" if has_more else ""},
    }


@_method("conversations.history", scope="channels:history", required=("channel",))
def conversations_history(ws: Workspace, args: JSON) -> JSON:
    # not_in_channel: "Only user tokens can access public channels they are not in."
    channel = _channel(ws, args, outside="not_in_channel")
    visible = [
        m
        for m in ws.messages
        if m.channel == channel and (m.thread_ts is None or m.reply_broadcast)
    ]
    metadata = _bool(args.get("include_all_metadata"))
    newest_first = [
        message_json(ws, m, metadata=metadata) for m in reversed(_window(args, visible))
    ]
    return {"pin_count": 0, **_page(args, newest_first, 100)}


@_method("conversations.replies", scope="channels:history", required=("channel", "ts"))
def conversations_replies(ws: Workspace, args: JSON) -> JSON:
    # Its reference lists no not_in_channel: a removed bot gets channel_not_found.
    channel = _channel(ws, args)
    msg = ws.message(channel, _str(args, "ts") or "")
    if msg is None:
        raise Invalid("thread_not_found")
    parent = ws.message(channel, msg.thread_ts) if msg.thread_ts else msg
    if parent is None:
        raise Invalid("thread_not_found")
    metadata = _bool(args.get("include_all_metadata"))
    thread = [parent, *_window(args, ws.replies(channel, parent.ts))]
    return _page(args, [message_json(ws, m, metadata=metadata) for m in thread], 1000)


# conversations.open accepts any of channels:manage, groups:write, im:write or mpim:write
# (../shared/reference/slack/methods/conversations.open.json); the simulator opens only 1:1
# direct messages, for which im:write is the scope that counts. Answers as Slack documents
# them: {"channel": {"id": "D..."}}, with "no_op" and "already_open" when the DM was open, and
# the whole IM object with return_im (slackapi/java-slack-sdk,
# json-logs/samples/api/conversations.open.json).
@_method("conversations.open", scope="im:write")
def conversations_open(ws: Workspace, args: JSON) -> JSON:
    channel_ref = _str(args, "channel")
    users_ref = _str(args, "users")
    if channel_ref is not None:
        if channel_ref not in ws.ims:
            raise Invalid("channel_not_found")
        channel, already = channel_ref, True
    else:
        if users_ref is None:
            raise Invalid("users_list_not_supplied")
        users = [u.strip() for u in users_ref.split(",") if u.strip()]
        if len(users) > 8:
            raise Invalid("too_many_users")
        if len(users) != 1:
            raise Invalid("invalid_arguments", ["[ERROR] the simulator opens 1:1 DMs only"])
        if _bool(args.get("prevent_creation")):
            raise Invalid("invalid_arguments", ["[ERROR] prevent_creation is not simulated"])
        user = ws.users.get(users[0])
        if user is None:
            raise Invalid("user_not_found")
        if user.deleted:
            raise Invalid("user_disabled")
        channel, already = ws.open_im(user.id)
    out: JSON = {
        "channel": im_json(ws, channel) if _bool(args.get("return_im")) else {"id": channel}
    }
    return {"no_op": True, "already_open": True, **out} if already else out


@_method("users.info", scope="users:read", required=("user",))
def users_info(ws: Workspace, args: JSON) -> JSON:
    user = ws.users.get(_str(args, "user") or "")
    if user is None:
        raise Invalid("user_not_found")
    return {"user": user_json(ws, user)}


@_method("users.lookupByEmail", scope="users:read.email", required=("email",))
def users_lookup_by_email(ws: Workspace, args: JSON) -> JSON:
    email = (_str(args, "email") or "").lower()
    for user in ws.users.values():
        # Slack answers users_not_found for a deactivated member.
        if user.email.lower() == email and not user.deleted:
            return {"user": user_json(ws, user)}
    raise Invalid("users_not_found")


@_method("files.getUploadURLExternal", scope="files:write", required=("filename", "length"))
def files_get_upload_url_external(ws: Workspace, args: JSON) -> JSON:
    length = _int(args, "length", 0)
    if length <= 0:
        raise Invalid("missing_argument")
    if _str(args, "snippet_type") is not None and length > MAX_SNIPPET_BYTES:
        raise Invalid("snippet_too_large")
    if length > MAX_UPLOAD_BYTES:
        raise Invalid("file_upload_size_restricted")
    alt_txt = _str(args, "alt_txt") or ""
    if len(alt_txt) > 1000:
        raise Invalid("alt_txt_too_large")
    file_id = "F" + secrets.token_hex(5).upper()
    key = secrets.token_urlsafe(12)
    ws.pending_uploads[key] = {
        "id": file_id,
        "name": _str(args, "filename"),
        "length": length,
        "alt_txt": alt_txt or None,
        "content": None,
    }
    return {"upload_url": f"{ws.base_url}/upload/v1/{key}", "file_id": file_id}


@_method("files.completeUploadExternal", scope="files:write", required=("files",))
def files_complete_upload_external(ws: Workspace, args: JSON) -> JSON:
    items = parse_json_arg(args["files"], error="invalid_arguments")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise Invalid("invalid_arguments", ["[ERROR] files must be a non-empty array of objects"])
    uploads = {u["id"]: (key, u) for key, u in ws.pending_uploads.items()}
    chosen = []
    for item in items:
        found = uploads.get(item.get("id"))
        if found is None or found[1]["content"] is None:
            raise Invalid("file_not_found")
        chosen.append((found, item))
    channel_ref = _str(args, "channel_id") or (_str(args, "channels") or "").split(",")[0]
    channel = None
    if channel_ref:
        # not_in_channel: "User/bot membership is required for the specified channel."
        channel = _channel(ws, {"channel": channel_ref}, outside="not_in_channel")
    thread_ts = _str(args, "thread_ts")
    comment = _str(args, "initial_comment")
    shared = []
    for (key, upload), item in chosen:
        del ws.pending_uploads[key]
        title = item.get("title") or upload["name"]
        record = {
            "id": upload["id"],
            "name": upload["name"],
            "title": title,
            "content": upload["content"],
            "length": len(upload["content"]),
            "channel": channel,
            "thread_ts": thread_ts,
            "initial_comment": comment,
        }
        ws.files.append(record)
        shared.append(
            {
                "id": upload["id"],
                "name": upload["name"],
                "title": title,
                "mimetype": "text/plain",
                "filetype": "text",
                "size": record["length"],
                "user": ws.bot_user_id,
                "is_external": False,
                "url_private": f"{ws.base_url}/files/{upload['id']}",
            }
        )
    if channel is not None:
        ws.post(
            channel=channel,
            user=ws.bot_user_id,
            text=comment or "",
            thread_ts=thread_ts,
            files=shared,
        )
    ws.notify()
    return {"files": [{"id": f["id"], "title": f["title"]} for f in shared]}


@_method("views.publish", scope=None, required=("user_id", "view"))
def views_publish(ws: Workspace, args: JSON) -> JSON:
    user_id = _str(args, "user_id") or ""
    if user_id not in ws.users:
        raise Invalid("user_not_found")
    view = check_view(args["view"])
    current = ws.home_views.get(user_id)
    expected = _str(args, "hash")
    if expected is not None and current is not None and expected != current["hash"]:
        raise Invalid("hash_conflict")
    published = {
        "id": current["id"] if current else "V" + secrets.token_hex(5).upper(),
        "team_id": ws.team_id,
        "type": "home",
        "blocks": view["blocks"],
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "hash": ws.next_ts(),
        "app_id": ws.app_id,
        "bot_id": ws.bot_id,
    }
    ws.home_views[user_id] = published
    ws.notify()
    return {"view": published}


@_method("reactions.get", scope="reactions:read")
def reactions_get(ws: Workspace, args: JSON) -> JSON:
    if _str(args, "file") or _str(args, "file_comment"):
        raise Invalid("file_not_found")
    if _str(args, "channel") is None or _str(args, "timestamp") is None:
        raise Invalid("no_item_specified")
    channel = _channel(ws, args)
    msg = _message(ws, channel, _str(args, "timestamp"))
    message = message_json(ws, msg, metadata=False)
    if not _bool(args.get("full")):
        for reaction in message.get("reactions", []):
            reaction["users"] = reaction["users"][:REACTIONS_SHORT_USERS]
    return {"type": "message", "channel": channel, "message": message}


@_method("reactions.add", scope="reactions:write", required=("channel", "name", "timestamp"))
def reactions_add(ws: Workspace, args: JSON) -> JSON:
    """The bot reacts (../shared/reference/slack/methods/reactions.add.json)."""
    channel = _channel(ws, args)
    msg = _message(ws, channel, _str(args, "timestamp"))
    name = _str(args, "name") or ""
    if not name or any(c in name for c in ": \t\n"):
        raise Invalid("invalid_name")
    if not ws.add_reaction(msg, name, ws.bot_user_id):
        raise Invalid("already_reacted")
    return {}


@_method("chat.delete", scope="chat:write", required=("channel", "ts"))
def chat_delete(ws: Workspace, args: JSON) -> JSON:
    """The bot deletes its own message; a bot token cannot delete others'
    (cant_delete_message; ../shared/reference/slack/methods/chat.delete.json)."""
    channel = _channel(ws, args)
    msg = _message(ws, channel, _str(args, "ts"))
    if msg.user != ws.bot_user_id:
        raise Invalid("cant_delete_message")
    ws.delete(msg)
    return {"channel": channel, "ts": msg.ts}


DEFAULT_BOT_SCOPES = frozenset(m.scope for m in METHODS.values() if m.scope is not None)
