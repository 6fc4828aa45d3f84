"""Entries: a submission checked against its window and stored once (``recording``), and staff
corrections of stored values (``corrections``).

May import: the core modules, ``protocol``, ``governance``, ``study``, ``dosing``,
``participants``, ``safety``. Reminders are told of a completed entry through ``diary.events``."""
