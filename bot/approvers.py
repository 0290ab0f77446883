"""Who may approve what a closure asks now: the tenant's approvers as Slack user IDs, who
requested it, and who of them is eligible and active. The rules are `statemachine.approvals`'."""

from __future__ import annotations

from bot.config import Settings
from bot.identity import Directory
from statemachine import approvals as rules
from statemachine.closure import split_state
from statemachine.steps import ROLLBACK
from storage.closures import ClosureRow


class Approvers:
    def __init__(self, settings: Settings, directory: Directory) -> None:
        self.settings = settings
        self.directory = directory

    def ids(self, closure: ClosureRow) -> tuple[str, ...]:
        """The tenant's approvers as user IDs (unresolved emails cannot vote)."""
        tenant = self.settings.tenant(closure.tenant)
        return self.directory.ids(tenant.approvers) if tenant is not None else ()

    def requesters(self, closure: ClosureRow) -> tuple[str, ...]:
        """Everyone whose approval of what is being approved now does not count (rule 1)."""
        action = rules.action_requester(
            rolling_back=split_state(closure.state)[0] == ROLLBACK,
            rollback_requester=closure.rollback_requester,
            preparing=closure.sync_action,
            preparation_requester=closure.sync_requester,
        )
        return rules.requesters(closure.requester, action)

    def requester(self, closure: ClosureRow) -> str:
        """Who asked for what is being approved now: the closure, or its rollback."""
        return self.requesters(closure)[-1]

    async def eligible(self, closure: ClosureRow) -> tuple[str, ...]:
        """The approvers whose vote would count now, deactivated accounts left out."""
        active = [a for a in self.ids(closure) if await self.directory.active(a)]
        return rules.eligible_approvers(active, self.requesters(closure))

    def refusal(self, closure: ClosureRow, user: str) -> rules.Refusal | None:
        """Rule 1 for `user`'s reaction, whatever the request."""
        return rules.voter_refusal(
            user, approvers=self.ids(closure), requesters=self.requesters(closure)
        )

    def is_admin(self, user: str) -> bool:
        return user in self.directory.ids(self.settings.slack.admins)
