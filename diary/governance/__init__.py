"""Governance: the audit trail (``audit``), staff accounts and sign-in rules (``staff``), password
hashing (``passwords``), the second factor (``second_factor``) and once-only staff actions
(``actions``).

May import: the core modules only (every other package writes to the audit trail)."""
