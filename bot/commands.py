"""`/close-account` text: parsing (pure) and the replies for each subcommand."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot import messages
from bot.actions import Actions, Reply
from bot.messages import state_words
from bot.plan_command import may_preview
from storage import closures as closures_db

USAGE = (
    "Usage: `/close-account <tenant>` (or `start <tenant>`) · `status [<tenant>]` · `list` ·"
    " `abort <tenant> [reason]` · `retry <tenant>` · `rollback <tenant>` ·"
    " `disable-sync <tenant>` · `audit <tenant>` · `plan <tenant>` · `help`"
)
HELP = (
    "*close-account-bot* closes a Microsoft 365 tenant in Microsoft's five steps, each one planned,"
    " approved by the tenant's named approvers (react :white_check_mark: to approve, :x: to veto),"
    " executed and verified from Microsoft's side.\n" + USAGE
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
VERBS = frozenset(
    {
        "start",
        "status",
        "list",
        "help",
        "abort",
        "retry",
        "audit",
        "rollback",
        "disable-sync",
        "plan",
    }
)


@dataclass(frozen=True)
class Command:
    verb: str
    tenant: str | None = None
    reason: str = ""


class UsageError(Exception):
    """The text is not a command; str() is the one-line reason."""


def parse(text: str) -> Command:
    words = text.strip().split()
    if not words:
        raise UsageError("Tell me which tenant to close.")
    verb = words[0].lower()
    if verb not in VERBS:
        if len(words) == 1 and NAME.match(words[0]):
            return Command("start", words[0].lower())
        raise UsageError(f"I don't understand `{_clip(text)}`.")
    rest = words[1:]
    if verb in ("list", "help"):
        if rest:
            raise UsageError(f"`{verb}` takes no arguments.")
        return Command(verb)
    if verb == "status":
        if len(rest) > 1:
            raise UsageError("`status` takes at most one tenant.")
        return Command(verb, _tenant(rest[0]) if rest else None)
    if not rest:
        raise UsageError(f"`{verb}` needs a tenant.")
    if verb == "abort":
        return Command(verb, _tenant(rest[0]), " ".join(rest[1:])[:500])
    if len(rest) > 1:
        raise UsageError(f"`{verb}` takes exactly one tenant.")
    return Command(verb, _tenant(rest[0]))


def _tenant(word: str) -> str:
    if not NAME.match(word):
        raise UsageError(f"`{_clip(word)}` is not a tenant name.")
    return word.lower()


def _clip(text: str) -> str:
    text = text.replace("`", "'").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


async def handle(actions: Actions, user: str, text: str) -> Reply:
    """Run a command for `user` and say what happened; every refusal says why."""
    try:
        command = parse(text)
    except UsageError as exc:
        return Reply(False, f"{exc} {USAGE}")
    if command.verb == "help":
        return Reply(True, HELP)
    if command.verb == "list":
        return Reply(True, list_text(actions))
    if command.verb == "status":
        return Reply(True, status_text(actions, command.tenant))
    assert command.tenant is not None
    if command.verb == "abort":
        return await actions.abort(command.tenant, user, command.reason)
    if command.verb == "plan":
        if actions.preview is None:
            return Reply(False, f"`plan` is not available here. {USAGE}")
        return await actions.preview(command.tenant, user)
    handler = {
        "start": actions.start_closure,
        "audit": actions.post_audit,
        "rollback": actions.rollback,
        "disable-sync": actions.prepare,
        "retry": actions.retry,
    }[command.verb]
    return await handler(command.tenant, user)


def first_answer(actions: Actions, user: str, text: str) -> str | None:
    """What the person sees at once while a slow command works (the ack's text), if anything:
    the preview reads the tenant from Microsoft, which can take longer than Slack's 3 s. Said
    only to someone who will get the preview; a refusal comes alone."""
    try:
        command = parse(text)
    except UsageError:
        return None
    tenant = actions.settings.tenant(command.tenant) if command.tenant else None
    if (
        command.verb == "plan"
        and tenant is not None
        and may_preview(actions.approvers, actions.directory, tenant, user)
    ):
        return messages.plan_reading(tenant.name)
    return None


def list_text(actions: Actions) -> str:
    rows = closures_db.open_closures(actions.db)
    if not rows:
        return "No open closures."
    return "Open closures:\n" + "\n".join(
        f"• *{r.tenant}* (`{r.tenant_id}`): `{r.state}` — {state_words(r.state)}" for r in rows
    )


def status_text(actions: Actions, tenant_name: str | None) -> str:
    if tenant_name is None:
        names = [t.name for t in actions.settings.tenants]
        lines = []
        for name in names:
            row = closures_db.latest_closure_for(actions.db, name)
            lines.append(f"• *{name}*: " + (f"`{row.state}`" if row else "never closed"))
        return "Tenants:\n" + "\n".join(lines)
    tenant = actions.settings.tenant(tenant_name)
    if tenant is None:
        return f"Unknown tenant `{tenant_name}`."
    row = closures_db.latest_closure_for(actions.db, tenant.name)
    if row is None:
        return f"{tenant.name}: no closure yet."
    text = f"*{tenant.name}* (`{tenant.tenant_id}`): `{row.state}` — {state_words(row.state)}"
    if row.reason:
        text += f"\n{row.reason}"
    return text
