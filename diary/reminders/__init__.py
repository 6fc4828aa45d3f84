"""Reminders: outbox rows, dispatch passes, channels and the scheduler process."""
