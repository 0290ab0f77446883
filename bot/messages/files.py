"""What the thread says when a file the bot shares there cannot be: the request's inventory and
the list of what a closure changed, each with the command that prints it instead; and the
summary's pointer to the lines of a long checklist it leaves out. Pure."""

from __future__ import annotations

from bot.messages.words import code, step_of_total

__all__ = ["changed_list_refused", "checklist_more", "inventory_refused"]


def inventory_refused(step: str, tenant: str, error: str) -> str:
    """The thread's line when Slack refused the request's inventory file."""
    command = f"close-account-bot plan --config CONFIG --tenant {tenant} --format csv"
    return (
        f":warning: The inventory file of {step_of_total(step)} could not be attached: Slack"
        f" answered {code(error)}. The request's blocks still list its items;"
        f" {code(command)} prints every item and what happens to it."
    )


def changed_list_refused(tenant: str, error: str) -> str:
    """The thread's line when Slack refused the list of every object the closure changed."""
    command = f"close-account-bot audit --config CONFIG --tenant {tenant} --deleted"
    return (
        ":warning: The file of every object the closure changed could not be shared: Slack"
        f" answered {code(error)}. {code(command)} prints it."
    )


def checklist_more(name: str, more: int) -> str:
    """The summary's last line of a stopped step's checklist when it leaves lines out."""
    return f"{name}: and {more:,} more: its approval request in this thread lists every line."
