"""A participant's reminder preferences: which channels are on, and their browsers' push
subscriptions. Turning a channel off cancels the reminders it still owed."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from ..errors import Refused
from ..events import reminder_channel_off
from ..extensions import db
from ..governance import audit
from ..i18n import LANGUAGES
from ..models import Participant, PushSubscription
from ..vocabulary import AuditAction, ReminderChannel

# Participant column for each preference, and the outbox channel it feeds (the calendar feed
# is read by the phone, not sent).
PREFERENCES = {"email_reminders": ReminderChannel.EMAIL, "push_reminders": ReminderChannel.PUSH, "calendar_feed": None}
_B64URL = re.compile(r"^[A-Za-z0-9_-]{8,200}={0,2}$")


def set_channels(participant: Participant, wanted: dict[str, bool], *, now: datetime) -> list[str]:
    """Turn reminder channels on or off; returns the preferences that changed (each audited)."""
    changed = []
    for name, channel in PREFERENCES.items():
        if name not in wanted:
            continue
        old, value = getattr(participant, name), bool(wanted[name])
        if old == value:
            continue
        setattr(participant, name, value)
        changed.append(name)
        audit.record(
            actor=audit.participant_actor(participant),
            action=AuditAction.CHANGE_REMINDER_CHANNEL,
            entity="participant",
            entity_id=participant.id,
            participant_id=participant.id,
            field=name,
            old=old,
            new=value,
            now=now,
        )
        if channel is not None and not value:
            reminder_channel_off.send(participant.id, channel=channel)
    return changed


def set_language(participant: Participant, language: str, *, now: datetime) -> bool:
    """The language of the participant's diary and reminders; returns whether it changed."""
    if language not in LANGUAGES:
        raise Refused(f"Unknown language '{language}'; the diary speaks {', '.join(LANGUAGES)}.")
    if participant.language == language:
        return False
    audit.record(
        actor=audit.participant_actor(participant),
        action=AuditAction.CHANGE_LANGUAGE,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        field="language",
        old=participant.language,
        new=language,
        now=now,
    )
    participant.language = language
    return True


def set_told_treatment_order(participant: Participant, wanted: bool, *, now: datetime) -> bool:
    """Whether the participant wants their diary to show their treatment order once the study is
    unblinded (they may change their mind at any time); returns whether it changed."""
    wanted = bool(wanted)
    if participant.told_treatment_order == wanted:
        return False
    audit.record(
        actor=audit.participant_actor(participant),
        action=AuditAction.CHANGE_TOLD_TREATMENT,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        field="told_treatment_order",
        old=participant.told_treatment_order,
        new=wanted,
        now=now,
    )
    participant.told_treatment_order = wanted
    return True


def subscribe_push(participant: Participant, data, *, now: datetime) -> PushSubscription:
    """Store a browser's push subscription (the JSON a browser's PushManager gives)."""
    if not isinstance(data, dict):
        raise Refused("Send the subscription as JSON.", status=400)
    endpoint = data.get("endpoint")
    keys = data.get("keys") if isinstance(data.get("keys"), dict) else {}
    p256dh, auth_secret = keys.get("p256dh"), keys.get("auth")
    if not (
        isinstance(endpoint, str)
        and len(endpoint) <= 1000
        and endpoint.isprintable()
        and (endpoint.startswith("https://") or endpoint.startswith("http://127.0.0.1"))
    ):
        raise Refused("The subscription endpoint must be an https address.")
    if not all(isinstance(k, str) and _B64URL.match(k) for k in (p256dh, auth_secret)):
        raise Refused("The subscription keys are missing or malformed.")
    subscription = db.session.scalar(select(PushSubscription).where(PushSubscription.endpoint == endpoint))
    if subscription is None:
        subscription = PushSubscription(
            participant_id=participant.id, endpoint=endpoint, p256dh=p256dh, auth=auth_secret, created_at=now
        )
        db.session.add(subscription)
    elif subscription.participant_id != participant.id:
        raise Refused("This browser is subscribed for someone else.", status=409)
    else:
        subscription.p256dh, subscription.auth = p256dh, auth_secret
        subscription.ended_at, subscription.ended_reason = None, None
    participant.push_reminders = True
    audit.record(
        actor=audit.participant_actor(participant),
        action=AuditAction.PUSH_SUBSCRIBE,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
    )
    return subscription


_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", re.ASCII)


def check_reminder_hours(reminder_from: str | None, reminder_until: str | None) -> tuple[str | None, str | None]:
    """Preferred reminder hours ('08:00', '21:00') on the participant's clock, or (None, None)."""
    reminder_from, reminder_until = (reminder_from or "").strip() or None, (reminder_until or "").strip() or None
    for value in (reminder_from, reminder_until):
        if value is not None and not _CLOCK.match(value):
            raise Refused(f"'{value}' is not a time like 08:00.")
    if reminder_from and reminder_until and reminder_from == reminder_until:
        raise Refused("The reminder hours must not start and end at the same time.")
    return reminder_from, reminder_until
