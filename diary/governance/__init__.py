"""Governance: the audit trail (``audit``), staff accounts and sign-in rules (``staff``), password
hashing (``passwords``), the second factor and re-authentication (``second_factor``), once-only
staff actions (``actions``), the study lock (``lock``) and the investigator's sign-off of each
participant-period (``signoff``).

May import: the core modules only (every other package writes to the audit trail)."""
