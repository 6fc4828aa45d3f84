"""The refusal the trial's rules raise; the web layer turns it into a page (``web/errors.py``),
the CLI into a message."""

from __future__ import annotations


class Refused(ValueError):
    """A request the trial's rules refuse; the message is shown to the person as it is."""

    status = 422

    def __init__(self, message: str, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        # The input the refusal is about, when it is one (forms show the message beside it).
        self.field = field
        if status is not None:
            self.status = status
