"""Slack messages as terminal text: Block Kit and mrkdwn rendered the way a person reads them,
and a whole channel (messages, reactions, indented threads) as the team sees it.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import zip_longest
from typing import TYPE_CHECKING, Any

from simulator.slack.state import JSON, SimMessage

if TYPE_CHECKING:
    from simulator.slack.state import Workspace

EMOJI = {
    "white_check_mark": "✅", "heavy_check_mark": "✔️", "ballot_box_with_check": "☑️",
    "x": "❌", "negative_squared_cross_mark": "❎", "heavy_multiplication_x": "✖️",
    "warning": "⚠️", "no_entry": "⛔", "no_entry_sign": "🚫", "stop_sign": "🛑",
    "rotating_light": "🚨", "exclamation": "❗", "question": "❓", "bangbang": "‼️",
    "information_source": "\u2139\ufe0f", "hourglass": "⌛", "hourglass_flowing_sand": "⏳",
    "stopwatch": "⏱️", "alarm_clock": "⏰", "clock": "🕐", "calendar": "📅",
    "spiral_calendar_pad": "🗓️", "lock": "🔒", "unlock": "🔓", "key": "🔑",
    "wastebasket": "🗑️", "fire": "🔥", "rocket": "🚀", "tada": "🎉", "+1": "👍",
    "thumbsup": "👍", "-1": "👎", "thumbsdown": "👎", "eyes": "👀", "wave": "👋",
    "raised_hand": "✋", "memo": "📝", "page_facing_up": "📄", "clipboard": "📋",
    "bar_chart": "📊", "chart_with_upwards_trend": "📈", "bell": "🔔", "mag": "🔍",
    "red_circle": "🔴", "large_green_circle": "🟢", "large_yellow_circle": "🟡",
    "large_blue_circle": "🔵", "large_orange_circle": "🟠", "white_circle": "⚪",
    "black_circle": "⚫", "white_large_square": "⬜", "black_large_square": "⬛",
    "heavy_plus_sign": "\u2795", "heavy_minus_sign": "\u2796", "arrow_right": "➡️",
    "arrow_forward": "▶️", "arrows_counterclockwise": "🔄", "repeat": "🔁",
    "leftwards_arrow_with_hook": "↩️", "pause_button": "⏸️", "checkered_flag": "🏁",
    "construction": "🚧", "gear": "⚙️", "wrench": "🔧", "hammer_and_wrench": "🛠️",
    "shield": "🛡️", "bust_in_silhouette": "👤", "busts_in_silhouette": "👥",
    "office": "🏢", "cloud": "☁️", "email": "📧", "envelope": "✉️", "link": "🔗",
    "pushpin": "📌", "paperclip": "📎", "zzz": "💤", "skull": "💀", "boom": "💥",
    "sparkles": "✨", "star": "⭐", "robot_face": "🤖", "scroll": "📜",
    "credit_card": "💳", "moneybag": "💰", "package": "📦", "lock_with_ink_pen": "🔏",
    "heavy_exclamation_mark": "❗", "large_red_square": "🟥", "large_green_square": "🟩",
}  # fmt: skip

_TOKEN = re.compile(r"<([^<>\n]+)>")
_EMOJI = re.compile(r":([a-z0-9_+\-']+):(?::skin-tone-\d:)?")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_CODE = re.compile(r"(```[\s\S]*?```|`[^`\n]+`)")


def emojize(text: str) -> str:
    """`:white_check_mark:` -> ✅ for the common set; other names stay as typed."""
    return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def mrkdwn(
    text: str, *, users: Mapping[str, str] | None = None, channels: Mapping[str, str] | None = None
) -> str:
    """Slack mrkdwn as plain text: markers dropped, links and mentions spelled out."""
    out = []
    for i, part in enumerate(_CODE.split(text)):
        if i % 2:  # code: shown as typed, fences turned into an indented block
            if part.startswith("```"):
                body = html.unescape(part[3:-3].strip("\n"))
                out.append("\n".join("    " + line for line in body.splitlines()))
            else:
                out.append(html.unescape(part))
            continue
        part = _TOKEN.sub(lambda m: _token(m.group(1), users or {}, channels or {}), part)
        for pattern in (_BOLD, _ITALIC, _STRIKE):
            part = pattern.sub(r"\1", part)
        out.append(emojize(html.unescape(part)))
    lines = "".join(out).split("\n")
    return "\n".join("│ " + line[2:] if line.startswith("> ") else line for line in lines)


def _token(inner: str, users: Mapping[str, str], channels: Mapping[str, str]) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (label or users.get(target[1:], target[1:]))
    if target.startswith("#"):
        return "#" + (label or channels.get(target[1:], target[1:]))
    if target.startswith("!subteam^"):
        return label or "@" + target[9:]
    if target.startswith("!date^"):
        return label or target
    if target.startswith("!"):
        return "@" + target[1:]
    if target.startswith("mailto:"):
        return label or target[7:]
    if label and label != target:
        return f"{label} ({target})"
    return target


def _text(obj: Any, users: Mapping[str, str], channels: Mapping[str, str]) -> str:
    if not isinstance(obj, dict):
        return ""
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn" and not obj.get("verbatim"):
        return mrkdwn(text, users=users, channels=channels)
    if obj.get("type") == "mrkdwn":
        return html.unescape(text)
    return emojize(text) if obj.get("emoji", True) else text


def _element(el: Any) -> str:
    """An interactive element as a control you could click."""
    if not isinstance(el, dict):
        return ""
    kind = el.get("type")
    label = emojize(str((el.get("text") or el.get("placeholder") or {}).get("text", "")))
    if kind == "button":
        return f"[ {label} ]"
    if kind == "overflow":
        return "[ ⋯ ]"
    if kind == "image":
        return f"[image: {el.get('alt_text', '')}]"
    if kind in ("datepicker", "timepicker", "datetimepicker"):
        return f"[ {el.get('initial_date') or el.get('initial_time') or label or kind} ]"
    return f"[ {label or kind} ▾ ]"


def _rich(el: JSON, users: Mapping[str, str], channels: Mapping[str, str]) -> str:
    parts = []
    for child in el.get("elements", []):
        kind = child.get("type")
        if kind == "text":
            text = child.get("text", "")
            parts.append(f"`{text}`" if (child.get("style") or {}).get("code") else text)
        elif kind == "link":
            url, label = child.get("url", ""), child.get("text")
            parts.append(f"{label} ({url})" if label and label != url else url)
        elif kind == "user":
            parts.append("@" + users.get(child.get("user_id", ""), child.get("user_id", "")))
        elif kind == "channel":
            cid = child.get("channel_id", "")
            parts.append("#" + channels.get(cid, cid))
        elif kind == "emoji":
            name = child.get("name", "")
            parts.append(EMOJI.get(name, f":{name}:"))
        elif kind == "broadcast":
            parts.append("@" + child.get("range", "here"))
        elif kind == "usergroup":
            parts.append("@" + child.get("usergroup_id", ""))
        elif kind == "date":
            parts.append(child.get("fallback", str(child.get("timestamp", ""))))
        else:
            parts.append(str(child.get("value") or child.get("text") or ""))
    return "".join(parts)


def _rich_text(block: JSON, users: Mapping[str, str], channels: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    for el in block.get("elements", []):
        kind = el.get("type")
        if kind == "rich_text_list":
            indent = "  " * int(el.get("indent", 0))
            for n, item in enumerate(el.get("elements", []), start=1 + int(el.get("offset", 0))):
                bullet = f"{n}." if el.get("style") == "ordered" else "•"
                lines.append(f"{indent}{bullet} {_rich(item, users, channels)}")
        elif kind == "rich_text_preformatted":
            lines += ["    " + line for line in _rich(el, users, channels).splitlines()]
        elif kind == "rich_text_quote":
            lines += ["│ " + line for line in _rich(el, users, channels).splitlines()]
        else:
            lines += _rich(el, users, channels).splitlines()
    return lines


def _block(
    block: JSON, width: int, users: Mapping[str, str], channels: Mapping[str, str]
) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        text = _text(block.get("text"), users, channels)
        return [text, "━" * min(max(len(text), 3), width)]
    if kind == "divider":
        return ["─" * width]
    if kind == "section":
        lines = _text(block.get("text"), users, channels).splitlines() if "text" in block else []
        fields: list[list[str]] = [
            _text(f, users, channels).splitlines() for f in block.get("fields", [])
        ]
        column = max(10, (width - 2) // 2)
        for k in range(0, len(fields), 2):
            right = fields[k + 1] if k + 1 < len(fields) else []
            for a, b in zip_longest(fields[k], right, fillvalue=""):
                lines.append(f"{a:<{column}}  {b}".rstrip() if b else a)
        accessory = block.get("accessory")
        if accessory:
            control = _element(accessory)
            if lines:
                lines[-1] = f"{lines[-1]}  {control}"
            else:
                lines = [control]
        return lines
    if kind == "context":
        parts = []
        for el in block.get("elements", []):
            parts.append(_element(el) if el.get("type") == "image" else _text(el, users, channels))
        return "  ·  ".join(parts).splitlines()
    if kind == "actions":
        return ["  ".join(_element(el) for el in block.get("elements", []))]
    if kind == "rich_text":
        return _rich_text(block, users, channels)
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if kind == "markdown":
        return str(block.get("text", "")).splitlines()
    if kind == "input":
        return [f"{_text(block.get('label'), users, channels)}: {_element(block.get('element'))}"]
    return [f"[{kind} block]"]


def _wrap(lines: list[str], width: int) -> list[str]:
    out: list[str] = []
    for line in lines:
        if len(line) <= width or line.startswith("    "):
            out.append(line)
            continue
        indent = re.match(r"[\s│•\d.]*", line)
        lead = " " * len(indent.group(0)) if indent else ""
        out += textwrap.wrap(
            line,
            width,
            subsequent_indent=lead,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [""]
    return out


def render_message(
    msg: SimMessage | JSON,
    *,
    width: int = 100,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """A message as readable text: its blocks if it has any, else its mrkdwn text; its files.
    `users` and `channels` map IDs to names for mentions (else the ID is shown)."""
    if isinstance(msg, SimMessage):
        blocks, text, files = msg.blocks, msg.text, msg.files
    else:
        blocks, text, files = msg.get("blocks"), msg.get("text", ""), msg.get("files", [])
    users, channels = users or {}, channels or {}
    lines: list[str] = []
    if blocks:
        for block in blocks:
            lines += _block(block, width, users, channels)
    elif text:
        lines += mrkdwn(str(text), users=users, channels=channels).splitlines()
    for f in files or []:
        lines.append(
            f"📎 {f.get('title') or f.get('name')} ({f.get('name')}, {f.get('size')} bytes)"
        )
    return "\n".join(_wrap(lines, width))


def _time(ts: str) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%H:%M:%S")


def _reactions(msg: SimMessage, users: Mapping[str, str]) -> str:
    shown = []
    for name, who in msg.reactions.items():
        names = ", ".join("@" + users.get(u, u) for u in who)
        shown.append(f"{EMOJI.get(name, f':{name}:')} {len(who)} ({names})")
    return "   ".join(shown)


def _entry(
    msg: SimMessage, prefix: str, width: int, users: Mapping[str, str], channels: Mapping[str, str]
) -> list[str]:
    head = f"{_time(msg.ts)}  @{users.get(msg.user, msg.user)}"
    if msg.edited:
        head += "  (edited)"
    if msg.reply_broadcast:
        head += "  (also sent to the channel)"
    body = render_message(
        msg, width=max(20, width - len(prefix) - 2), users=users, channels=channels
    )
    lines = [prefix + head] + [prefix + "  " + line for line in body.splitlines()]
    if msg.reactions:
        lines.append(prefix + "  " + _reactions(msg, users))
    return lines


def render_channel(sim: Workspace, channel: str, *, width: int = 100) -> str:
    """The channel as the team sees it: each top-level message, its reactions, then its thread
    replies indented beneath it."""
    users = {uid: u.name for uid, u in sim.users.items()}
    lines = [f"#{sim.channels.get(channel, channel)}", "═" * width]
    for msg in sim.messages:
        if msg.channel != channel or msg.thread_ts is not None:
            continue
        lines += _entry(msg, "", width, users, sim.channels)
        replies = sim.replies(channel, msg.ts)
        if replies:
            lines.append(f"  ┆ {len(replies)} {'reply' if len(replies) == 1 else 'replies'}")
            for reply in replies:
                lines += _entry(reply, "  ┆ ", width, users, sim.channels)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
