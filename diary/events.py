"""What the rules announce, for the reminders to act on.

Rules never import the reminders package (it sits above them: it reads entries, dosing and
safety to decide what to send). When a rule changes something the reminders must hear about at
once, inside the same transaction, it sends one of these signals; ``diary.reminders.planning``
connects its receivers when the app is built. A signal nobody listens to does nothing, so
``create_app`` imports the reminders before any request or command runs.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the assessment's id; keyword ``reason``. An entry was stored: the reminders it still
# owed are cancelled in the same transaction.
entry_completed = _signals.signal("entry-completed")

# sender: the participant's id; keyword ``channel``. A reminder channel was turned off: its
# pending reminders are cancelled, not sent.
reminder_channel_off = _signals.signal("reminder-channel-off")
