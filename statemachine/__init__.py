"""The closure's states, transitions, guards, plans and approval rules: plain data, no I/O."""
