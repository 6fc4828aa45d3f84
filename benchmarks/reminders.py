"""Reminder benchmark: 10,000 due reminders dispatched to a local aiosmtpd server.

Prints messages per second of one dispatch pass (planning, claiming, building each email,
sending over one SMTP connection, recording the outcome) and the same figure for a bare
smtplib loop that sends the same 10,000 messages, already built, over one connection, in the
same run, to the same server. Goal: the dispatch pass at least 0.5 of the bare loop.

    .venv/bin/python benchmarks/reminders.py [--reminders 10000]
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Counter:
    def __init__(self):
        self.count = 0
        self.recipients = set()

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        self.recipients.update(envelope.rcpt_tos)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def generate(app, count: int, now: datetime) -> None:
    """``count`` participants, each with a Day 1 window open now and its email reminder due."""
    from sqlalchemy import insert

    from diary.extensions import db
    from diary.models import Assessment, Participant, Period, Reminder
    from diary.reminders.planning import owed_reminders
    from diary.study.trial import ensure_study, protocol_of

    with app.app_context():
        db.create_all()
        study, _ = ensure_study()
        version_id = study.current_protocol_version.id
        protocol = protocol_of(study.current_protocol_version)
        dose = now - timedelta(hours=21)
        # Participants live where it is early afternoon now, so quiet hours hold nothing back;
        # the reminder is due when the rules say, as planning would have made it.
        offset = (13 - now.hour + 12) % 24 - 12
        zone = "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
        opening = owed_reminders(
            protocol,
            "D1",
            window_open=dose + timedelta(hours=20),
            window_close=dose + timedelta(hours=28),
            tz_name=zone,
            quiet=("22:00", "07:00"),
        )[0]
        assert opening.due_at <= now
        people, periods, assessments, reminders = [], [], [], []
        for n in range(1, count + 1):
            people.append(
                {
                    "id": n,
                    "study_id": study.id,
                    "code": f"P-{n:06d}",
                    "site": "NIH-CC",
                    "timezone": zone,
                    "sequence": "AB",
                    "status": "active",
                    "enrolled_at": dose,
                    "email": f"p{n}@example.org",
                    "link_token_hash": f"{n:064d}",
                    "pin_generation": 0,
                    "pin_failed_count": 0,
                    "email_reminders": True,
                    "push_reminders": True,
                    "calendar_feed": True,
                }
            )
            periods.append({"id": n, "participant_id": n, "number": 1, "treatment": "A", "dose_start": dose})
            assessments.append(
                {
                    "id": n,
                    "period_id": n,
                    "protocol_version_id": version_id,
                    "timepoint": "D1",
                    "target": dose + timedelta(hours=24),
                    "window_open": dose + timedelta(hours=20),
                    "window_close": dose + timedelta(hours=28),
                    "late_close": dose + timedelta(hours=30),
                    "not_applicable": False,
                }
            )
            reminders.append(
                {
                    "assessment_id": n,
                    "kind": "window_open",
                    "channel": "email",
                    "state": "pending",
                    "due_at": opening.due_at,
                    "not_after": opening.not_after,
                    "attempts": 0,
                    "created_at": dose,
                }
            )
        for model, rows in ((Participant, people), (Period, periods), (Assessment, assessments), (Reminder, reminders)):
            for index in range(0, len(rows), 20000):
                db.session.execute(insert(model), rows[index : index + 20000])
        db.session.commit()


def main() -> None:
    from aiosmtpd.controller import Controller

    from diary import create_app
    from diary.extensions import db
    from diary.models import Reminder
    from diary.reminders.channels import EmailChannel, Message
    from diary.reminders.dispatch import run_pass

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=10000)
    args = parser.parse_args()
    count = args.reminders
    handler, port = Counter(), free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    now = datetime.now(UTC)
    try:
        with tempfile.TemporaryDirectory(prefix="diary-bench-") as folder:
            app = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.sqlite",
                    "SECRET_KEY": "bench",
                    "TESTING": True,
                    "SMTP_HOST": "127.0.0.1",
                    "SMTP_PORT": port,
                    "BASE_URL": "https://diary.example.org",
                    "DIGEST_HOUR": None,
                }
            )  # only reminders are measured
            generate(app, count, now)

            # Baseline: the same messages, built beforehand, over one connection.
            channel = EmailChannel(app.config)
            messages = [
                channel.build(
                    Message(
                        "window_open",
                        f"p{n}@example.org",
                        "Infusion 1 · Day 1",
                        "18:00",
                        f"https://diary.example.org/p/token{n}",
                    )
                )
                for n in range(1, count + 1)
            ]
            started = time.perf_counter()
            connection = smtplib.SMTP("127.0.0.1", port)
            for n, data in enumerate(messages, start=1):
                connection.sendmail("diary@localhost", [f"p{n}@example.org"], data)
            connection.quit()
            bare_seconds = time.perf_counter() - started
            bare_received = handler.count

            with app.app_context():
                started = time.perf_counter()
                result = run_pass(app, now=now)
                pass_seconds = time.perf_counter() - started
                sent_rows = db.session.scalar(
                    db.select(db.func.count()).select_from(Reminder).where(Reminder.state == "sent")
                )
            dispatched = handler.count - bare_received
    finally:
        server.stop()
    assert bare_received == count, bare_received
    assert result.sent == sent_rows == dispatched == count, (result.summary(), sent_rows, dispatched)
    bare_rate, pass_rate = count / bare_seconds, count / pass_seconds
    print(f"reminders due: {count}; dispatch pass: {result.summary()}")
    print(f"bare smtplib loop (pre-built messages, one connection): {bare_seconds:.2f} s, {bare_rate:.0f} msg/s")
    print(f"diary dispatch pass (plan, claim, build, send, record): {pass_seconds:.2f} s, {pass_rate:.0f} msg/s")
    print(f"ratio dispatch / bare loop: {pass_rate / bare_rate:.2f} (goal >= 0.5)")


if __name__ == "__main__":
    main()
