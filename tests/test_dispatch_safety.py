"""Dispatch survives what real mail servers and crashes do: a poisoned address among good ones,
a slow server, and a scheduler killed with -9 in the middle of a batch."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections import Counter
from datetime import timedelta

from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from diary.extensions import db
from diary.models import Participant, Reminder
from diary.reminders.dispatch import LEASE, run_pass

from .conftest import make_app
from .test_reminders import DAY1_OPEN, Inbox, enrol_dosed, free_port, smtp  # noqa: F401  (smtp: fixture)


def test_a_poisoned_address_fails_alone_and_the_pass_goes_on(app, smtp, study):
    """One non-ASCII address stored before the rule: it fails for good, every other reminder goes once."""
    for n in range(6):
        enrol_dosed(study, f"P-POIS{n:02d}")
    db.session.flush()
    # Stored directly, as an address enrolled before enrolment refused such addresses would be.
    db.session.execute(update(Participant).where(Participant.code == "P-POIS03").values(email="jos\u00e9@example.org"))
    db.session.commit()
    result = run_pass(app, now=DAY1_OPEN)
    assert result.sent == 5 and result.cancelled == 1
    assert sorted(m["To"] for m in smtp.inbox.messages) == sorted(f"p-pois{n:02d}@example.org" for n in (0, 1, 2, 4, 5))
    poisoned = db.session.scalars(select(Reminder).where(Reminder.state == "cancelled")).one()
    assert "SMTPUTF8" in poisoned.last_error
    assert db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "sending")) == 0
    later = run_pass(app, now=DAY1_OPEN + LEASE + timedelta(minutes=1))
    assert later.sent == 0 and len(smtp.inbox.messages) == 5


def test_enrolment_refuses_addresses_reminders_cannot_carry(study):
    """Non-ASCII and header-injecting addresses are refused at enrolment, with a clear message."""
    import pytest

    from diary.errors import Refused
    from diary.participants.enrolment import enroll

    for bad in ("jos\u00e9@example.org", "a@b.org\r\nBcc: x@y.org", "a@b.org, c@d.org", "no-at-sign"):
        with pytest.raises(Refused, match="cannot be used for reminders"):
            enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=DAY1_OPEN, email=bad)
        db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Participant)) == 0


class SlowInbox(Inbox):
    """A mail server that takes its time over each message (a slow relay)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def _pass_until_killed(url, port):
    app = make_app(url, SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="diary@site.test")
    with app.app_context():
        run_pass(app, now=DAY1_OPEN)


def test_a_scheduler_killed_mid_batch_resends_at_most_the_message_in_flight(app, study):
    """kill -9 after some messages of a batch: the next pass sends the rest, with at most one duplicate."""
    inbox = SlowInbox(delay=0.15)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        for n in range(20):
            enrol_dosed(study, f"P-KILL{n:02d}")
        db.session.commit()
        owed = 20
        context = multiprocessing.get_context("spawn")
        scheduler = context.Process(target=_pass_until_killed, args=(app.config["SQLALCHEMY_DATABASE_URI"], port))
        scheduler.start()
        deadline = time.monotonic() + 60
        while len(inbox.messages) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(scheduler.pid, signal.SIGKILL)
        scheduler.join(timeout=10)
        delivered_before = len(inbox.messages)
        assert 6 <= delivered_before < owed, delivered_before
        db.session.expire_all()
        sent_rows = db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "sent"))
        # Every delivered message but possibly the one in flight has its outcome on record.
        assert sent_rows >= delivered_before - 1

        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="diary@site.test")
        inbox.delay = 0
        waiting = db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "sending"))
        assert waiting == owed - sent_rows  # the dead pass's claims, held until its lease ends
        # Half a lease on: the claims (made at DAY1_OPEN and a few microseconds) still hold. A whole
        # minute on was the lease's own edge, which a loaded machine crossed by microseconds.
        early = run_pass(app, now=DAY1_OPEN + LEASE / 2)
        assert early.sent == 0
        late = run_pass(app, now=DAY1_OPEN + LEASE + timedelta(minutes=1))
        assert late.sent == waiting
    finally:
        controller.stop()
    per_recipient = Counter(m["To"] for m in inbox.messages)
    assert len(per_recipient) == owed  # everyone reached
    duplicates = sum(count - 1 for count in per_recipient.values())
    assert duplicates <= 1, per_recipient.most_common(3)
    assert db.session.scalar(select(func.count()).select_from(Reminder).where(Reminder.state == "sent")) == owed
    print(f"kill -9 mid-batch: {delivered_before} delivered before the kill, {duplicates} duplicate(s) after recovery")
