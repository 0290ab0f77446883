"""manifest.yml is valid for Slack and asks for exactly what the code uses."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "slack"
# Events the code subscribes to, and the scope Slack requires for each.
EVENT_SCOPES = {
    "reaction_added": "reactions:read",
    "reaction_removed": "reactions:read",
    "app_home_opened": None,  # needs no scope
}
# slack_sdk helpers that call several Web API methods.
SDK_HELPERS = {
    "files.uploadV2": ("files.getUploadURLExternal", "files.completeUploadExternal"),
    "apps.connectionsOpen": ("apps.connections.open",),
}
# Methods called with the app-level token (xapp-), not the bot token: they need the app token's
# own scope, not one of the manifest's bot scopes, and the reference snapshot (bot and user
# methods) has no file for them. Slack documents it at api.slack.com/methods/apps.connections.open.
APP_TOKEN_METHODS = {"apps.connections.open": "connections:write"}
# Methods the bot calls only for a 1:1 direct message (the plan preview's file goes to the person
# who asked): of the scopes Slack accepts, the one for DMs.
DM_METHODS = {"conversations.open": "im:write"}


def manifest() -> dict:  # type: ignore[type-arg]
    loaded = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def web_api_calls() -> set[str]:
    """Slack Web API methods the bot calls: `client.chat_postMessage(...)` -> chat.postMessage."""
    calls: set[str] = set()
    for path in (ROOT / "bot").glob("*.py"):
        calls_in_file = [
            n.func for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
        ]
        for node in calls_in_file:
            owner = getattr(node, "value", None)
            if (
                isinstance(node, ast.Attribute)
                and (
                    (isinstance(owner, ast.Attribute) and owner.attr == "client")
                    or (isinstance(owner, ast.Name) and owner.id == "client")
                )
                and "_" in node.attr
            ):
                family, _, name = node.attr.partition("_")
                parts = name.split("_")
                method = family + "." + parts[0] + "".join(p.title() for p in parts[1:])
                calls.update(SDK_HELPERS.get(method, (method,)))
    return calls


def bolt_listeners() -> tuple[set[str], set[str]]:
    events, commands = set(), set()
    for node in ast.walk(ast.parse((ROOT / "bot" / "app.py").read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and node.func.attr == "event":
                events.add(str(arg.value))
            if isinstance(arg, ast.Constant) and node.func.attr == "command":
                commands.add(str(arg.value))
    return events, commands


def test_manifest_matches_slacks_schema() -> None:
    """The manifest validates against Slack's published JSON Schema."""
    schema = json.loads((REFERENCE / "manifest.schema.1.0.0.json").read_text())
    jsonschema.Draft7Validator(schema).validate(manifest())


def test_every_called_method_exists() -> None:
    """Each Web API method the code calls is a real Slack method."""
    calls = web_api_calls()
    assert {"chat.postMessage", "chat.update"} <= calls
    for method in calls - APP_TOKEN_METHODS.keys():
        assert (REFERENCE / "methods" / f"{method}.json").exists(), method


def test_scopes_are_exactly_those_used() -> None:
    """Bot scopes = the methods' bot scopes + the events' scopes + `commands`."""
    needed = {"commands"}
    for method in web_api_calls() - APP_TOKEN_METHODS.keys():
        doc = json.loads((REFERENCE / "methods" / f"{method}.json").read_text())
        bot_scopes = [s["name"] for s in doc.get("scopes", {}).get("bot", [])]
        if method in DM_METHODS:
            assert DM_METHODS[method] in bot_scopes, method
            needed.add(DM_METHODS[method])
            continue
        # The progress channel may be public (channels:*) or private (groups:*); never a DM.
        kinds = [s for s in bot_scopes if s.split(":")[0] in ("channels", "groups")]
        needed.update(kinds or bot_scopes[:1])
    events, _ = bolt_listeners()
    needed.update(s for e in events if (s := EVENT_SCOPES[e]) is not None)
    assert set(manifest()["oauth_config"]["scopes"]["bot"]) == needed


def test_doctor_checks_the_manifests_scopes() -> None:
    """`check` compares the token with the same scope list the manifest asks for."""
    from bot.doctor import BOT_SCOPES

    assert sorted(BOT_SCOPES) == sorted(manifest()["oauth_config"]["scopes"]["bot"])


def test_events_and_command_are_declared() -> None:
    """The manifest subscribes to exactly the events the app listens to, and its command."""
    events, commands = bolt_listeners()
    declared = manifest()
    assert set(declared["settings"]["event_subscriptions"]["bot_events"]) == events
    assert {c["command"] for c in declared["features"]["slash_commands"]} == commands
