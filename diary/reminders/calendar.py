"""A calendar feed per participant: every entry window as an event with alarms.

A backup reminder that works even when email and push do not: the phone's own calendar rings.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event
from sqlalchemy import select

from ..extensions import db
from ..models import Assessment, Participant, Period
from ..study import protocol_of


def calendar_feed(participant: Participant, *, link: str, now: datetime) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//diary//symptom diary//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "My diary")
    assessments = db.session.scalars(
        select(Assessment).join(Period).where(Period.participant_id == participant.id,
                                              Assessment.not_applicable.is_(False))
        .order_by(Assessment.window_open)).all()
    for assessment in assessments:
        protocol = protocol_of(assessment.protocol_version)
        event = Event()
        event.add("uid", f"assessment-{assessment.id}@diary")
        event.add("dtstamp", now)
        event.add("dtstart", assessment.window_open)
        event.add("dtend", assessment.window_close)
        event.add("summary", f"Diary: Infusion {assessment.period.number} · "
                             f"{protocol.timepoint(assessment.timepoint).label}")
        event.add("description", f"Please fill in your diary entry before the window closes.\n{link}")
        event.add("url", link)
        for trigger, text in ((timedelta(0), "Your diary entry is open"),
                              (-protocol.reminders.closing_soon_before.nominal
                               if protocol.reminders.closing_soon_before else None, "Your diary entry closes soon")):
            if trigger is None:
                continue
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", text)
            if trigger == timedelta(0):
                alarm.add("trigger", trigger, parameters={"RELATED": "START"})
            else:
                alarm.add("trigger", trigger, parameters={"RELATED": "END"})
            event.add_component(alarm)
        calendar.add_component(event)
    return calendar.to_ical()
