"""Entries: a submission checked against its window and stored once (``recording``), staff
corrections of values the study team entered (``corrections``), and change requests for values
participants entered, decided by an investigator (``change_requests``).

May import: the core modules, ``protocol``, ``governance``, ``study``, ``dosing``,
``participants``, ``safety``. Reminders are told of a completed entry through ``diary.events``."""
