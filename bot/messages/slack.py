"""What the bot says when Slack refuses something (issue 12): the fix for each error, and
the notes that replace a lost post: pure."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages.words import code, mentions, plain, step_of_total

# --- when Slack refuses (issue 12) ---------------------------------------------------------

SLACK_FIXES = {
    "not_in_channel": "invite the bot to the progress channel (/invite @close-account-bot)",
    "channel_not_found": (
        "check progress_channel in the config, and invite the bot to it"
        " (/invite @close-account-bot)"
    ),
    "is_archived": "unarchive the progress channel, or set another progress_channel",
    "invalid_auth": "check SLACK_BOT_TOKEN (reinstall the app if it was revoked)",
    "not_authed": "check SLACK_BOT_TOKEN",
    "account_inactive": "reinstall the app in the workspace and update SLACK_BOT_TOKEN",
    "token_revoked": "reinstall the app in the workspace and update SLACK_BOT_TOKEN",
    "token_expired": "reinstall the app in the workspace and update SLACK_BOT_TOKEN",
    "missing_scope": "reinstall the app with the manifest's scopes (manifest.yml)",
}


def slack_fix(error: str) -> str:
    """What a person does so that the bot can talk to Slack again after `error`."""
    return SLACK_FIXES.get(
        error, "Slack is not answering or refused the call; the bot tries again by itself"
    )


def start_refused_by_slack(tenant: str, error: str) -> str:
    return (
        f"Nothing was started for {plain(tenant)}: Slack refused the status message"
        f" ({code(error)}). To fix: {slack_fix(error)}; then start again."
    )


def slack_trouble(error: str) -> str:
    """The Home tab's and the log's line for a closure that cannot talk to Slack."""
    return f":warning: The bot cannot talk to Slack ({code(error)}). To fix: {slack_fix(error)}."


def post_refused(error: str, text: str, limit: int = 2000) -> str:
    """The short post that stands in for one Slack refused (too long, bad blocks)."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return f"(Slack refused the full post, {code(error)}; in short:)\n{short}"


def post_lost(error: str) -> str:
    """The note to the requester when Slack refused a thread post and its short form."""
    return (
        f"Slack refused a post in the closure's thread ({code(error)}); it is in the audit"
        " trail (`/close-account audit <tenant>`)."
    )


def request_vanished(step: str, voters: Sequence[str]) -> str:
    votes = f" Votes on it ({mentions(voters)}) do not carry over: vote again." if voters else ""
    return (
        f"The approval request for {step_of_total(step)} was deleted in Slack; a new request"
        f" follows.{votes}"
    )


REQUEST_ABORTED = ":octagonal_sign: Closed: the closure was aborted"


def audit_upload_failed(tenant: str, error: str) -> str:
    return (
        f"The audit trail of {plain(tenant)} could not be posted: Slack answered {code(error)}."
        f" To fix: {slack_fix(error)}."
    )
