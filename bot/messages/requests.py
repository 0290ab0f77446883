"""What an approval request says of each item: the name people know, what happens to it, and
for step 4 why each setting changes; the inventory file's comment and the request's pointer to
it. Pure."""

from __future__ import annotations

from bot.messages.words import code, step_of_total
from statemachine.plan import Item

__all__ = [
    "CLOSE_YOUR_ACCOUNT_MFA",
    "inventory_note",
    "inventory_posted",
    "item_action",
    "kind_title",
    "known_name",
    "mfa_why_note",
    "setting_reason",
    "unprefixed_upn",
]

# Microsoft's close-your-account page, "Step 4: Disable multi-factor authentication"
# (MicrosoftDocs/microsoft-365-docs microsoft-365/commerce/close-your-account.md). The page gives
# no reason beyond the step itself; this is its instruction, quoted.
CLOSE_YOUR_ACCOUNT_MFA = (
    "disable all accounts except for the global admin account that you're currently using"
)


def unprefixed_upn(upn: str, object_id: str) -> str:
    """A deleted user's userPrincipalName as people know it. Microsoft frees a deleted user's
    name by putting its object ID, without dashes, in front of it: the user
    7e06b566-15f3-4013-8bf8-79874d52e68a is listed in /directory/deletedItems as
    7e06b56615f340138bf879874d52e68a<name>@contoso.com (pnp/cli-microsoft365
    docs/docs/cmd/aad/user/user-recyclebinitem-list.md, the response of
    GET /directory/deletedItems/microsoft.graph.user; Microsoft's own Graph pages,
    microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
    directory-deleteditems-list.md, show no user example). Any other name is returned as is."""
    prefix = object_id.replace("-", "").lower()
    if prefix and upn.lower().startswith(prefix) and len(upn) > len(prefix):
        return upn[len(prefix) :]
    return upn


def known_name(item: Item) -> str:
    """The item's name as people know it (a deleted user's without Microsoft's prefix)."""
    if item.kind in ("deleted_user", "restore_user"):
        return unprefixed_upn(item.name, item.id)
    return item.name


def _subscription_action(step: str, item: Item) -> str:
    verb = "cancelled" if step == "cancel_subscriptions" else "deleted"
    if item.detail.get("partner_api"):
        return f"{verb} by the bot through Partner Center"
    if item.detail.get("channel") == "partner":
        return f"{verb} by the partner who sold it (checklist)"
    return f"{verb} in the Microsoft 365 admin center (checklist)"


_ACTIONS = {
    "user": "deleted (restorable for 30 days, until step 5 purges it)",
    "disable_sync": "turned off (Microsoft can take up to 72 hours)",
    "security_defaults": "turned off",
    "ca_policy": "turned off (state: disabled)",
    "per_user_mfa": "per-user MFA turned off",
    "application": "deleted, then purged from the recycle bin",
    "service_principal": (
        "deleted, then purged from the recycle bin (disabled instead if Microsoft refuses the"
        " delete)"
    ),
    "deleted_user": "purged from the recycle bin (irreversible)",
    "deleted_application": "purged from the recycle bin (irreversible)",
    "deleted_service_principal": "purged from the recycle bin (irreversible)",
    "own_application": "deleted last: the bot's own access ends here",
    "own_service_principal": "deleted last: the bot's own access ends here",
    "restore_user": "restored from the recycle bin",
    "restore_security_defaults": "turned back on",
    "reactivate_subscription": "reactivated (checklist)",
    "reactivate_azure_subscription": "reactivated in the Azure portal (checklist)",
}


_TITLES = {
    "user": "Users",
    "subscription": "Subscriptions",
    "azure_subscription": "Azure subscriptions",
    "disable_sync": "Directory synchronization",
    "security_defaults": "Security defaults",
    "ca_policy": "Conditional access policies requiring MFA",
    "per_user_mfa": "Per-user MFA",
    "application": "App registrations",
    "service_principal": "Enterprise applications (service principals)",
    "deleted_application": "Soft-deleted app registrations",
    "deleted_service_principal": "Soft-deleted enterprise applications",
    "deleted_user": "Soft-deleted users",
    "own_application": "The bot's own app registration",
    "own_service_principal": "The bot's own enterprise application",
    "restore_user": "Deleted users",
    "restore_security_defaults": "Security defaults",
    "restore_ca_policy": "Conditional access policies",
    "restore_per_user_mfa": "Per-user MFA",
    "reactivate_subscription": "Cancelled subscriptions",
    "reactivate_azure_subscription": "Cancelled Azure subscriptions",
}


def kind_title(kind: str) -> str:
    """A kind of item as the heading of its group in a request."""
    return _TITLES.get(kind, kind)


def item_action(step: str, item: Item) -> str:
    """What happens to `item` when `step` runs, in words."""
    if item.kind == "subscription":
        return _subscription_action(step, item)
    if item.kind == "azure_subscription":
        if step == "cancel_subscriptions":
            return "cancelled by the bot through Azure Resource Manager"
        return "deleted in the Azure portal (checklist)"
    if item.kind == "restore_ca_policy":
        return f"put back to {item.detail.get('state')}"
    if item.kind == "restore_per_user_mfa":
        return f"per-user MFA put back to {item.detail.get('perUserMfaState')}"
    return _ACTIONS.get(item.kind, "changed")


def setting_reason(item: Item) -> str | None:
    """Why step 4 changes this setting: the MFA it requires, and of whom."""
    if item.kind == "security_defaults":
        return "security defaults require MFA of every account, the retained one's included"
    if item.kind == "ca_policy":
        why = item.detail.get("why") or "requires MFA"
        return f"it {why} of the accounts it targets"
    if item.kind == "per_user_mfa":
        state = item.detail.get("perUserMfaState") or "on"
        return f"per-user MFA is {state} for this account"
    return None


def mfa_why_note(kept: list[str]) -> str:
    """Step 4's request: Microsoft's instruction, and whose MFA stays as it is."""
    spared = (
        f" The retained administrator ({', '.join(code(k) for k in kept)}) keeps its per-user"
        " MFA, as the page says."
        if kept
        else " The retained administrator keeps its per-user MFA, as the page says."
    )
    return (
        "*Why:* Microsoft's close-your-account page has MFA turned off before the directory is"
        f" deleted (step 4): “{CLOSE_YOUR_ACCOUNT_MFA}”.{spared}"
    )


def inventory_note(name: str) -> str:
    """The request's pointer to its inventory file."""
    return f":page_facing_up: Every item and what happens to it: {code(name)}, in the thread."


def inventory_posted(step: str, items: int, plan_hash: str, *, checklist: bool) -> str:
    """The comment on the inventory file in the thread."""
    more = " Its checklist, longer than one message can show, is in the .txt file." * checklist
    return (
        f"The full inventory of {step_of_total(step)} ({items:,} items, plan"
        f" `{plan_hash[:12]}`): kind, ID, name and what happens to each.{more}"
    )
