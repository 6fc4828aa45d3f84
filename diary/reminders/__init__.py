"""Reminders: outbox rows, dispatch passes, channels and the scheduler process.

The reminders sit above the rules: they read entries, dosing and safety to decide what to send,
and hear of a completed entry or a channel turned off through ``diary.events``; no rule imports
them. May import: anything but ``web`` and ``exports``."""

from . import planning  # noqa: F401  (connects the receivers of diary.events)
