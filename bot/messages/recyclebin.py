"""Step 5's checklist lines for the recycle bin and for Azure subscriptions the bot cannot see."""

from __future__ import annotations

__all__ = ["azure_confirm_none_line", "purge_own_service_principal_line"]


def purge_own_service_principal_line(name: str, object_id: str) -> str:
    """Deleted service principals are not shown in the admin center (MicrosoftDocs/entra-docs
    docs/identity/enterprise-apps/delete-recover-faq.yml): Graph Explorer or PowerShell."""
    return (
        f"Permanently delete the bot's own deleted enterprise application {name} ({object_id})"
        " from the recycle bin: in Graph Explorer, signed in as a Global Administrator,"
        f" DELETE https://graph.microsoft.com/v1.0/directory/deletedItems/{object_id}, or in"
        f" PowerShell Remove-MgDirectoryDeletedItem -DirectoryObjectId {object_id} (the admin"
        " center does not show deleted enterprise applications; the bot removed its own access"
        " last and cannot purge it itself)."
    )


def azure_confirm_none_line(refused: bool) -> str:
    """A Global Administrator sees every subscription only after elevating access (Microsoft
    Entra ID > Properties > Access management for Azure resources)."""
    why = "could not list them" if refused else "listed none"
    return (
        "Azure portal > Subscriptions: confirm that no Azure subscription remains in this"
        " tenant, active or cancelled (Microsoft refuses to delete a directory that still has"
        " one; to see them all, first turn on Microsoft Entra ID > Properties > Access"
        " management for Azure resources). The bot's app sees only the subscriptions it holds a"
        f" role on, and it {why}."
    )
