"""Slack's validation of what an app sends: Block Kit blocks, message metadata and Home views.

Pure functions raising `Invalid(error, messages)` with Slack's error codes and `[ERROR]` texts.
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]

# Block Kit's documented limits (docs.slack.dev/reference/block-kit/...), counted in code points
# of each field as sent, as webapi's text limits are:
MAX_MESSAGE_BLOCKS = 50  # blocks: "You can include up to 50 blocks in each message"
MAX_VIEW_BLOCKS = 100  # ... "and 100 blocks in modals or Home tabs"
MAX_SECTION_TEXT = 3000  # section block `text`; also any text object's maximum (composition
# objects, text object: "maximum length is 3000 characters"), which is the only limit
# documented for a context block's text elements (the context block page gives none of its
# own; 10 elements at most)
MAX_SECTION_FIELDS = 10  # section block `fields`: "Maximum number of items is 10"
MAX_FIELD_TEXT = 2000  # ... "Maximum length for the text in each item is 2000 characters"
MAX_HEADER_TEXT = 150  # header block `text`: "Maximum length for the text in this field is 150"
MAX_BUTTON_TEXT = 75  # button element `text`: "Maximum length ... is 75 characters"
MAX_BLOCK_ID = 255  # every block's `block_id`: "Maximum length for this field is 255"
MAX_ACTION_ID = 255  # every interactive element's `action_id`: "Maximum length is 255"

_BLOCK_KEYS: dict[str, set[str]] = {
    "section": {"text", "fields", "accessory", "expand"},
    "header": {"text"},
    "context": {"elements"},
    "divider": set(),
    "actions": {"elements"},
    "image": {"image_url", "slack_file", "alt_text", "title"},
    "rich_text": {"elements"},
    "markdown": {"text"},
    "file": {"external_id", "source"},
    "video": {"alt_text", "title", "title_url", "thumbnail_url", "video_url", "description"}
    | {"author_name", "provider_icon_url", "provider_name"},
    "input": {"label", "element", "hint", "optional", "dispatch_action"},
}
_SURFACE_BLOCKS = {
    "message": set(_BLOCK_KEYS) - {"input"},
    "home": set(_BLOCK_KEYS) - {"markdown", "file"},
}
_INTERACTIVE = {
    "button", "checkboxes", "datepicker", "datetimepicker", "email_text_input", "overflow",
    "plain_text_input", "radio_buttons", "static_select", "external_select", "users_select",
    "conversations_select", "channels_select", "multi_static_select", "multi_external_select",
    "multi_users_select", "multi_conversations_select", "multi_channels_select", "timepicker",
    "url_text_input", "number_input", "rich_text_input", "workflow_button",
}  # fmt: skip
_RICH_TEXT_CONTAINERS = {
    "rich_text_section",
    "rich_text_list",
    "rich_text_preformatted",
    "rich_text_quote",
}
_RICH_TEXT_ELEMENTS = {
    "text", "link", "user", "channel", "usergroup", "emoji", "broadcast", "date", "color",
    "team",
}  # fmt: skip


class Invalid(Exception):
    """An `ok: false` answer: Slack's error code and its `response_metadata.messages`."""

    def __init__(self, error: str, messages: list[str] | None = None, **extra: Any) -> None:
        super().__init__(error if not messages else f"{error}: {'; '.join(messages)}")
        self.error = error
        self.messages = messages or []
        self.extra = extra  # more top-level fields, as missing_scope's `needed` and `provided`


def parse_json_arg(value: Any, *, error: str) -> Any:
    """A form field carries JSON as a string; a JSON body carries it as JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise Invalid(error) from None


def check_blocks(
    blocks: Any, *, surface: str = "message", error: str = "invalid_blocks"
) -> list[JSON]:
    """Returns the blocks if Slack would accept them on this surface, else raises `Invalid`."""
    blocks = parse_json_arg(blocks, error="invalid_blocks_format")
    if not isinstance(blocks, list):
        raise Invalid("invalid_blocks_format")
    problems = _BlockChecker(surface).check(blocks)
    if problems:
        raise Invalid(error, problems)
    return blocks


def check_metadata(value: Any, *, allow_empty: bool = False) -> JSON:
    """Message metadata: `{"event_type": str, "event_payload": object}` ({} clears on update)."""
    metadata = parse_json_arg(value, error="invalid_metadata_format")
    if not isinstance(metadata, dict):
        raise Invalid("invalid_metadata_format")
    if not metadata and allow_empty:
        return {}
    event_type = metadata.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise Invalid("invalid_metadata_schema", ["event_type must be a non-empty string"])
    if not isinstance(metadata.get("event_payload"), dict):
        raise Invalid("invalid_metadata_schema", ["event_payload must be an object"])
    extra = set(metadata) - {"event_type", "event_payload"}
    if extra:
        raise Invalid("invalid_metadata_schema", [f"unexpected keys: {sorted(extra)}"])
    return metadata


def check_view(value: Any) -> JSON:
    """A Home tab view for views.publish; Slack answers a bad view with invalid_arguments."""
    view = parse_json_arg(value, error="invalid_arguments")
    if not isinstance(view, dict):
        raise Invalid("invalid_arguments", ["[ERROR] must provide an object [json-pointer:/view]"])
    if view.get("type") != "home":
        raise Invalid(
            "invalid_arguments", ["[ERROR] must be one of: home [json-pointer:/view/type]"]
        )
    if "blocks" not in view:
        raise Invalid(
            "invalid_arguments", ["[ERROR] missing required field: blocks [json-pointer:/view]"]
        )
    check_blocks(view["blocks"], surface="home", error="invalid_arguments")
    for key, limit in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        if len(str(view.get(key, ""))) > limit:
            raise Invalid(
                "invalid_arguments",
                [f"[ERROR] must be less than {limit + 1} characters [json-pointer:/view/{key}]"],
            )
    if len(json.dumps(view)) > 250_000:
        raise Invalid("view_too_large")
    return view


class _BlockChecker:
    """Walks a blocks array collecting Slack-style `[ERROR] ... [json-pointer:...]` messages."""

    def __init__(self, surface: str) -> None:
        self.surface = surface
        self.problems: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.problems.append(f"[ERROR] {message} [json-pointer:{pointer}]")

    def check(self, blocks: list[Any]) -> list[str]:
        limit = MAX_MESSAGE_BLOCKS if self.surface == "message" else MAX_VIEW_BLOCKS
        if len(blocks) > limit:
            self.fail(f"no more than {limit} items allowed", "/blocks")
        seen_ids: set[str] = set()
        for i, block in enumerate(blocks):
            ptr = f"/blocks/{i}"
            if not isinstance(block, dict):
                self.fail("must provide an object", ptr)
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                if not isinstance(block_id, str) or not block_id:
                    self.fail("must provide a non-empty string", f"{ptr}/block_id")
                elif len(block_id) > MAX_BLOCK_ID:
                    self.fail(f"must be less than {MAX_BLOCK_ID + 1} characters", f"{ptr}/block_id")
                elif block_id in seen_ids:
                    self.fail(f"duplicate block_id: {block_id}", f"{ptr}/block_id")
                else:
                    seen_ids.add(block_id)
            self.block(block, ptr)
        return self.problems

    def keys(self, obj: JSON, allowed: set[str], ptr: str) -> None:
        for key in obj:
            if key not in allowed:
                self.fail(f"invalid additional property: {key}", ptr)

    def block(self, block: JSON, ptr: str) -> None:
        kind = block.get("type")
        if kind not in _SURFACE_BLOCKS[self.surface]:
            self.fail(f"unsupported type: {kind}", f"{ptr}/type")
            return
        assert isinstance(kind, str)
        self.keys(block, _BLOCK_KEYS[kind] | {"type", "block_id"}, ptr)
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail("must provide either text or fields", ptr)
            if "text" in block:
                self.text(block["text"], f"{ptr}/text", MAX_SECTION_TEXT)
            if "fields" in block:
                self.fields(block["fields"], f"{ptr}/fields")
            if "accessory" in block:
                self.element(block["accessory"], f"{ptr}/accessory", image_ok=True)
        elif kind == "header":
            if self.required(block, "text", ptr):
                self.text(block["text"], f"{ptr}/text", MAX_HEADER_TEXT, plain_only=True)
        elif kind == "context":
            if self.items(block, ptr, 1, 10):
                for i, el in enumerate(block["elements"]):
                    p = f"{ptr}/elements/{i}"
                    if isinstance(el, dict) and el.get("type") == "image":
                        self.element(el, p, image_ok=True)
                    else:
                        self.text(el, p, MAX_SECTION_TEXT)
        elif kind == "actions":
            if self.items(block, ptr, 1, 25):
                action_ids: set[str] = set()
                for i, el in enumerate(block["elements"]):
                    self.element(el, f"{ptr}/elements/{i}", image_ok=False)
                    action_id = el.get("action_id") if isinstance(el, dict) else None
                    if isinstance(action_id, str):
                        if action_id in action_ids:
                            self.fail(
                                f"duplicate action_id: {action_id}",
                                f"{ptr}/elements/{i}/action_id",
                            )
                        action_ids.add(action_id)
        elif kind == "image":
            if "image_url" not in block and "slack_file" not in block:
                self.fail("must provide either image_url or slack_file", ptr)
            if self.required(block, "alt_text", ptr):
                self.string(block["alt_text"], f"{ptr}/alt_text", 2000)
            if "title" in block:
                self.text(block["title"], f"{ptr}/title", 2000, plain_only=True)
        elif kind == "rich_text":
            if self.items(block, ptr, 0, None):
                for i, el in enumerate(block["elements"]):
                    self.rich_text(el, f"{ptr}/elements/{i}")
        elif kind == "markdown":
            if self.required(block, "text", ptr):
                self.string(block["text"], f"{ptr}/text", 12000)

    def required(self, obj: JSON, key: str, ptr: str) -> bool:
        if key not in obj:
            self.fail(f"missing required field: {key}", ptr)
            return False
        return True

    def items(self, block: JSON, ptr: str, low: int, high: int | None) -> bool:
        elements = block.get("elements")
        if not isinstance(elements, list):
            self.fail("missing required field: elements", ptr)
            return False
        if len(elements) < low:
            self.fail(f"must provide at least {low} items", f"{ptr}/elements")
        if high is not None and len(elements) > high:
            self.fail(f"no more than {high} items allowed", f"{ptr}/elements")
        return True

    def string(self, value: Any, ptr: str, limit: int) -> bool:
        if not isinstance(value, str):
            self.fail("must provide a string", ptr)
            return False
        if not value:
            self.fail("must be more than 0 characters", ptr)
            return False
        if len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", ptr)
            return False
        return True

    def text(self, obj: Any, ptr: str, limit: int, *, plain_only: bool = False) -> bool:
        if not isinstance(obj, dict):
            self.fail("must provide an object", ptr)
            return False
        kind = obj.get("type")
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if kind not in allowed:
            self.fail(f"must be one of: {', '.join(allowed)}", f"{ptr}/type")
            return False
        extra = {"emoji"} if kind == "plain_text" else {"verbatim"}
        self.keys(obj, {"type", "text"} | extra, ptr)
        return self.required(obj, "text", ptr) and self.string(obj["text"], f"{ptr}/text", limit)

    def fields(self, fields: Any, ptr: str) -> None:
        if not isinstance(fields, list) or not fields:
            self.fail("must provide a non-empty array", ptr)
            return
        if len(fields) > MAX_SECTION_FIELDS:
            self.fail(f"no more than {MAX_SECTION_FIELDS} items allowed", ptr)
        for i, field in enumerate(fields):
            self.text(field, f"{ptr}/{i}", MAX_FIELD_TEXT)

    def element(self, el: Any, ptr: str, *, image_ok: bool) -> None:
        if not isinstance(el, dict):
            self.fail("must provide an object", ptr)
            return
        kind = el.get("type")
        if kind == "image" and image_ok:
            self.keys(el, {"type", "image_url", "slack_file", "alt_text"}, ptr)
            if self.required(el, "alt_text", ptr):
                self.string(el["alt_text"], f"{ptr}/alt_text", 2000)
            if "image_url" not in el and "slack_file" not in el:
                self.fail("must provide either image_url or slack_file", ptr)
            return
        if kind not in _INTERACTIVE:
            self.fail(f"unsupported type: {kind}", f"{ptr}/type")
            return
        action_id = el.get("action_id")
        if action_id is not None:
            self.string(action_id, f"{ptr}/action_id", MAX_ACTION_ID)
        if kind == "button":
            self.keys(
                el,
                {"type", "text", "action_id", "url", "value", "style", "confirm"}
                | {"accessibility_label"},
                ptr,
            )
            if self.required(el, "text", ptr):
                self.text(el["text"], f"{ptr}/text", MAX_BUTTON_TEXT, plain_only=True)
            if "value" in el:
                self.string(el["value"], f"{ptr}/value", 2000)
            if "url" in el:
                self.string(el["url"], f"{ptr}/url", 3000)
            if "style" in el and el["style"] not in ("primary", "danger"):
                self.fail("must be one of: primary, danger", f"{ptr}/style")

    def rich_text(self, el: Any, ptr: str) -> None:
        if not isinstance(el, dict) or el.get("type") not in _RICH_TEXT_CONTAINERS:
            self.fail("must be one of: " + ", ".join(sorted(_RICH_TEXT_CONTAINERS)), ptr)
            return
        children = el.get("elements")
        if not isinstance(children, list):
            self.fail("missing required field: elements", ptr)
            return
        for i, child in enumerate(children):
            cptr = f"{ptr}/elements/{i}"
            if el["type"] == "rich_text_list":
                if not isinstance(child, dict) or child.get("type") != "rich_text_section":
                    self.fail("must be one of: rich_text_section", cptr)
                else:
                    self.rich_text(child, cptr)
                continue
            if not isinstance(child, dict) or child.get("type") not in _RICH_TEXT_ELEMENTS:
                kind = child.get("type") if isinstance(child, dict) else child
                self.fail(f"unsupported type: {kind}", cptr)
            elif child["type"] == "text" and not isinstance(child.get("text"), str):
                self.fail("missing required field: text", cptr)
            elif child["type"] == "link" and not isinstance(child.get("url"), str):
                self.fail("missing required field: url", cptr)
