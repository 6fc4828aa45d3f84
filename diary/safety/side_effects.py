"""Side-effect reports after they are stored: the study team's review (see ``safety.review``).

Kept as the name views and scripts know; the rule itself lives in ``safety``.
"""

from __future__ import annotations

from datetime import datetime

from ..models import SideEffectReport, StaffUser
from ..vocabulary import ReviewState
from .alerts import review


def acknowledge(
    report: SideEffectReport, note: str, *, by: StaffUser, now: datetime, state: str = ReviewState.REVIEWED
) -> None:
    """Record that a coordinator has reviewed a report, with a note. Happens once."""
    review(report, note, state=state, by=by, now=now)
