"""Dispatch passes over the reminder outbox."""
from __future__ import annotations


def run_pass(app) -> dict:
    """No reminder rules are materialised yet; a pass has nothing to send."""
    return {"sent": 0, "failed": 0, "expired": 0}
