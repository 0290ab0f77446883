"""SQLite persistence for closures, steps, plans, approvals, Slack messages and the audit trail."""
