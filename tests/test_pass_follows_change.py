"""The scheduler's pass judges what changed since its last pass, not the whole study (issue 32).

Reminder planning and the follow-up rules keep a watermark (``dosing/changes.py``): a pass
looks only at participants with an audited change, a window opening into the horizon, a late
close passing, or a waiting rule's delay running out since then. Two things must hold:

- nothing is missed: over a simulated fortnight of a small study (entries on time and late,
  an infusion recorded days late, a corrected dose, a withdrawal, a channel turned off and on,
  period 2) a full evaluation after every incremental pass adds no task and no reminder and
  moves none;
- the work follows the change: a pass with nothing new runs the same number of statements at
  50 and at 500 participants.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, event, func, select

from diary.dosing import changes
from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import FollowUpTask, Participant, PassWatermark, Reminder
from diary.participants.enrolment import enroll, withdraw
from diary.participants.preferences import set_channels
from diary.reminders import planning
from diary.reminders.dispatch import run_pass
from diary.safety import follow_up
from diary.study.trial import protocol_of

from .conftest import answers_for
from .test_scheduler_transactions import _bulk_study

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _reminders() -> set[tuple]:
    return set(
        db.session.execute(
            select(Reminder.assessment_id, Reminder.kind, Reminder.channel, Reminder.state, Reminder.due_at)
        ).all()
    )


def _incremental(study, now) -> None:
    planning.plan(now, short_transactions=True, since_last_pass=True)
    follow_up.judge(study, now)
    db.session.commit()


def _full_adds_nothing(study, now) -> str | None:
    """What a full evaluation at ``now`` would add or move that the incremental passes did not."""
    tasks_before, reminders_before = db.session.scalar(select(func.count(FollowUpTask.id))), _reminders()
    added_reminders = planning.plan(now)
    added_tasks = follow_up.create_tasks(study, now)
    resolved = follow_up.resolve_tasks(study, now)
    db.session.commit()
    if resolved:
        return f"at {now}: a full pass resolved {resolved} tasks the incremental one left open"
    if added_reminders or added_tasks or _reminders() != reminders_before:
        new = db.session.scalars(select(FollowUpTask.key).order_by(FollowUpTask.id.desc()).limit(added_tasks)).all()
        return (
            f"at {now}: full pass added {added_tasks} tasks {new}, {added_reminders} reminders, "
            f"moved {len(_reminders() - reminders_before)} (tasks before {tasks_before})"
        )
    return None


def test_incremental_passes_miss_nothing_a_full_pass_would_find(study, monkeypatch):
    """A fortnight and more in two-hour passes, with a full evaluation after each (the hourly
    net is switched off, so only the change tracking can have found what is due)."""
    monkeypatch.setattr(changes, "FULL_EVERY", timedelta(days=365))
    protocol = protocol_of(study.current_protocol_version)
    people = []
    for number, zone in enumerate(["UTC", "America/New_York", "Europe/Madrid", "UTC", "UTC", "Asia/Tokyo", "UTC"]):
        participant, _ = enroll(
            study,
            site="NIH-CC",
            timezone=zone,
            sequence="AB" if number % 2 else "BA",
            actor="t",
            now=T0 - timedelta(days=1),
            code=f"P-INC{number:02d}",
            email=f"inc{number}@example.org",
        )
        people.append(participant)
    db.session.commit()
    on_time, gives_up, withdraws, corrected, late_record, switches, never = people
    done = {"late_record": False, "withdrawn": False, "corrected": False, "off": False, "on": False, "p2": False}

    def happen(previous: datetime, now: datetime) -> None:
        """What the study does between two passes; each action dated inside (previous, now]."""
        at = previous + timedelta(minutes=13)
        if previous < T0 + timedelta(minutes=15) <= now:
            for participant in (on_time, gives_up, withdraws, corrected, switches, never):
                record_dose(participant, 1, T0 + timedelta(minutes=5), actor="t", now=T0 + timedelta(minutes=15))
        if not done["corrected"] and now >= T0 + timedelta(hours=6):
            record_dose(corrected, 1, T0 + timedelta(hours=1), actor="t", now=at, reason="clock read wrong")
            done["corrected"] = True
        if not done["late_record"] and now >= T0 + timedelta(days=3):
            record_dose(late_record, 1, T0 + timedelta(hours=2), actor="t", now=at)  # recorded 3 days late
            done["late_record"] = True
        if not done["withdrawn"] and now >= T0 + timedelta(days=2):
            withdraw(withdraws, actor="t", now=at, reason="moved away")
            done["withdrawn"] = True
        if not done["off"] and now >= T0 + timedelta(hours=20):
            set_channels(switches, {"email_reminders": False}, now=at)
            done["off"] = True
        if done["off"] and not done["on"] and now >= T0 + timedelta(days=5):
            set_channels(switches, {"email_reminders": True}, now=at)
            done["on"] = True
        if not done["p2"] and now >= T0 + timedelta(days=14, hours=1):
            record_dose(on_time, 2, T0 + timedelta(days=14), actor="t", now=at)
            done["p2"] = True
        # The one who gave up comes back on day 9 (their silence resolves by data).
        for participant, how_many in ((on_time, 99), (gives_up, 3 if now < T0 + timedelta(days=9) else 99)):
            made = 0
            for period in participant.periods:
                for assessment in sorted(period.assessments, key=lambda a: a.target):
                    if assessment.submission is not None:
                        made += 1
                        continue
                    when = max(assessment.window_open + timedelta(minutes=5), at)
                    if made < how_many and when <= now and when < assessment.window_close:
                        record_submission(assessment, answers_for(protocol, assessment.timepoint), now=when, actor="t")
                        made += 1
        db.session.commit()

    previous, now, problems = T0 - timedelta(hours=2), T0 - timedelta(hours=2), []
    while now < T0 + timedelta(days=17):
        now = previous + timedelta(hours=2)
        happen(previous, now)
        _incremental(study, now)
        problem = _full_adds_nothing(study, now)
        if problem:
            problems.append(problem)
        previous = now
    assert not problems, problems[:5]
    # The fortnight did raise tasks and reminders, so "nothing missed" is about something.
    rules = set(db.session.scalars(select(FollowUpTask.rule)))
    assert {"missed_timepoint", "missed_in_a_row", "silent"} <= rules, rules
    resolved = db.session.scalar(select(func.count(FollowUpTask.id)).where(FollowUpTask.outcome == "resolved_by_data"))
    assert resolved >= 2  # the withdrawal's, and the silence that ended
    assert db.session.scalar(select(func.count(Reminder.id))) > 20
    assert db.session.get(PassWatermark, follow_up.WATERMARK).through == now


def test_a_pass_judges_only_who_changed_and_everyone_again_after_an_hour(study):
    """The scope each pass takes, called where it lives."""
    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=T0, code="P-SCOPE1", email="s@example.org"
    )
    quiet, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=T0, code="P-SCOPE2")
    db.session.commit()
    version = study.current_protocol_version.id
    first = changes.since_last_pass("test", study.id, T0 + timedelta(hours=1), version)
    assert first.full  # no watermark yet
    changes.passed("test", T0 + timedelta(hours=1), first, version)
    db.session.commit()
    assert (
        changes.since_last_pass("test", study.id, T0 + timedelta(hours=1, minutes=1), version).participant_ids == set()
    )
    record_dose(participant, 1, T0 + timedelta(hours=1), actor="t", now=T0 + timedelta(hours=1, minutes=30))
    db.session.commit()
    scope = changes.since_last_pass("test", study.id, T0 + timedelta(hours=1, minutes=31), version)
    assert not scope.full and scope.participant_ids == {participant.id}
    assert quiet.id not in scope.participant_ids
    # The hourly net, a new protocol version and a clock that went back each judge everyone.
    assert changes.since_last_pass("test", study.id, T0 + timedelta(hours=2), version).full
    assert changes.since_last_pass("test", study.id, T0 + timedelta(hours=1, minutes=2), version + 1).full
    assert changes.since_last_pass("test", study.id, T0, version).full
    # A waiting rule's delay running out is a change: the infusion 48 hours ago.
    later = T0 + timedelta(hours=49, minutes=5)
    changes.passed("test", later - timedelta(minutes=30), first, version)
    db.session.commit()
    waited = changes.since_last_pass("test", study.id, later, version, lookbacks=[timedelta(hours=48)])
    assert participant.id in waited.participant_ids
    assert participant.id not in changes.since_last_pass("test", study.id, later, version).participant_ids
    # And the last entry 48 hours ago (hours after the infusion, so only the entry can tell).
    protocol = protocol_of(study.current_protocol_version)
    entry = min(
        (a for a in participant.periods[0].assessments if a.window_open >= T0 + timedelta(hours=4)),
        key=lambda a: a.window_open,
    )
    made = entry.window_open + timedelta(minutes=5)
    record_submission(entry, answers_for(protocol, entry.timepoint), now=made, actor="t")
    db.session.commit()
    later = made + timedelta(hours=48, minutes=1)
    changes.passed("test", later - timedelta(minutes=30), first, version)
    db.session.commit()
    waited = changes.since_last_pass("test", study.id, later, version, lookbacks=[timedelta(hours=48)])
    assert participant.id in waited.participant_ids
    assert participant.id not in changes.since_last_pass("test", study.id, later, version).participant_ids


def test_the_watermark_only_moves_forward(study):
    version = study.current_protocol_version.id
    full = changes.Since(full=True)
    changes.passed("test", T0 + timedelta(minutes=5), full, version)
    changes.passed("test", T0, changes.Since(full=False), version)  # a slower scheduler, finishing late
    db.session.commit()
    mark = db.session.get(PassWatermark, "test")
    assert mark.through == T0 + timedelta(minutes=5) and mark.full_at == T0 + timedelta(minutes=5)


def _statements(callable_) -> int:
    count = [0]

    def counted(*args, **kwargs):
        count[0] += 1

    event.listen(db.engine, "before_cursor_execute", counted)
    try:
        callable_()
    finally:
        event.remove(db.engine, "before_cursor_execute", counted)
    return count[0]


def test_a_pass_runs_the_same_statements_and_judges_the_same_people_at_any_size(app, study, monkeypatch):
    """A study of 100, then of 1,100 participants whose diaries are over (infusion a month
    ago): a pass with nothing new judges no one, and a pass after one participant's change
    judges that one; each runs the same number of statements at both sizes."""
    judged = []
    chunks = changes.chunks

    def recorded(study_id, scope):
        for chunk in chunks(study_id, scope):
            judged.extend(chunk)
            yield chunk

    monkeypatch.setattr(changes, "chunks", recorded)
    figures = {}
    for size in (100, 1000):
        _bulk_study(study, size, days_ago=30)
        db.session.execute(delete(PassWatermark))  # participants written in bulk are not audited
        db.session.commit()
        total = db.session.scalar(select(func.count(Participant.id)))
        now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30 * len(figures))  # past the overlap
        run_pass(app, now)  # the first pass judges everyone
        assert len(judged) >= 2 * total  # planning and the follow-up rules
        judged.clear()
        steady = _statements(lambda now=now: run_pass(app, now + timedelta(minutes=1)))
        assert judged == []
        someone = db.session.scalar(select(Participant).order_by(Participant.id.desc()).limit(1))
        set_channels(someone, {"email_reminders": False}, now=now + timedelta(minutes=2))
        db.session.commit()
        changed = _statements(lambda now=now: run_pass(app, now + timedelta(minutes=3)))
        assert set(judged) == {someone.id}
        judged.clear()
        figures[total] = (steady, changed)
    small, large = sorted(figures)
    assert large >= 10 * small - 100
    assert figures[small] == figures[large], figures
