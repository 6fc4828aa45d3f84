"""Each staff action happens once: a form's key is stored with the action, in the action's own
transaction, so a reload, a double click or two tabs posting at once cannot repeat it."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from ..errors import Refused
from ..extensions import db
from ..models import ActionKey

_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$", re.ASCII)


class AlreadyDone(Refused):
    """This form was already used: the action it asked for has been done."""

    def __init__(self, action: str):
        super().__init__("This was already done (the form was sent twice). Nothing more was changed.", status=409)
        self.action = action


def take_key(key: str | None, action: str, *, actor: str, now: datetime, participant_id: int | None = None) -> None:
    """Claim a form's key for ``action`` inside the current transaction, or raise AlreadyDone.

    Call it before the action's writes; if the action is refused later, the rollback releases
    the key, so a corrected form can be sent again.
    """
    if not key or not _KEY.match(key):
        raise Refused("This form is missing its key; please reload the page and try again.", status=400)
    try:
        with db.session.begin_nested():
            db.session.add(
                ActionKey(key=key, action=action, actor=actor, participant_id=participant_id, created_at=now)
            )
    except IntegrityError:
        raise AlreadyDone(action) from None
