"""A calendar feed per participant: each home entry still to make, with alarms the phone's own
calendar rings, as a backup when email and push do not reach them.

The alarms follow the same rules as the emails (``planning.owed_reminders``): an "entry open"
alarm when the window opens, a "closes soon" one before it closes only if that falls after the
opening, both moved out of the participant's quiet hours on their own clock. Entries already
made, missed, or no longer needed drop out; the phone re-reads the feed.
"""

from __future__ import annotations

from datetime import datetime

from flask_babel import force_locale
from flask_babel import gettext as _
from icalendar import Alarm, Calendar, Event

from ..dosing import assessments
from ..i18n import full_datetime
from ..models import Participant
from ..protocol.model import in_language
from ..vocabulary import AssessmentState, ReminderKind
from .planning import owed_reminders, quiet_hours


def calendar_feed(participant: Participant, *, link: str, now: datetime) -> bytes:
    """The feed in the participant's language (titles, descriptions and alarms)."""
    with force_locale(participant.language):
        return _calendar_feed(participant, link=link, now=now)


def _calendar_feed(participant: Participant, *, link: str, now: datetime) -> bytes:
    alarm_text = {
        ReminderKind.WINDOW_OPEN: _("Your diary entry is open"),
        ReminderKind.CLOSING_SOON: _("Your diary entry closes soon"),
    }
    language = participant.language
    calendar = Calendar()
    calendar.add("prodid", "-//diary//symptom diary//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", _("My diary"))
    rows = assessments.load(now, participant_ids=[participant.id])
    protocols = assessments.protocols_by_version({row.protocol_version_id for row in rows}) if rows else {}
    for row in rows:
        protocol = protocols[row.protocol_version_id]
        timepoint = protocol.timepoint(row.timepoint)
        with_infusions = protocol.has_infusions
        if timepoint.setting not in protocol.reminders.settings:
            continue  # clinic time points are done with the study team, not from a calendar alarm
        if row.state not in (AssessmentState.UPCOMING, AssessmentState.OPEN):
            continue
        if assessments.waits_for_the_infusion(
            target=row.target, dose_start=row.dose_start, planned_start=row.planned_start
        ):
            continue  # waits for the infusion to be recorded: its times are not known yet
        event = Event()
        event.add("uid", f"assessment-{row.id}@diary")
        event.add("dtstamp", now)
        event.add("dtstart", row.window_open)
        event.add("dtend", row.window_close)
        label = in_language(row.participant_label, language)
        event.add(
            "summary",
            _("Diary: Infusion %(number)s · %(label)s", number=row.period, label=label)
            if with_infusions
            else _("Diary: %(label)s", label=label),
        )
        event.add(
            "description",
            _(
                "Please fill in your diary entry between %(start)s and %(end)s.",
                start=full_datetime(row.window_open, participant.timezone, language),
                end=full_datetime(row.window_close, participant.timezone, language),
            )
            + f"\n{link}",
        )
        event.add("url", link)
        for owed in owed_reminders(
            protocol,
            row.timepoint,
            window_open=row.window_open,
            window_close=row.window_close,
            tz_name=participant.timezone,
            quiet=quiet_hours(participant.reminder_from, participant.reminder_until, protocol),
        ):
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", alarm_text[owed.kind])
            alarm.add("trigger", owed.due_at)  # an absolute time: quiet hours already applied
            event.add_component(alarm)
        calendar.add_component(event)
    return calendar.to_ical()
