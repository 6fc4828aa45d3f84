"""Every check-then-act holds under real parallel processes, on SQLite and on PostgreSQL.

Each test starts worker processes (spawned, each with its own app and connections) that wait at
a barrier and then do the same thing at the same moment, as two coordinators or two schedulers
would. Run with DIARY_TEST_DATABASE_URL set, each test runs on PostgreSQL too.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import AuditEvent, LoginThrottle, Participant, RandomizationSlot, SideEffectReport, now_utc
from diary.participants.enrolment import enroll
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of, make_app, worker_context

WORKERS = 4


def _run_worker(job, url, barrier, queue, args):
    try:
        app = make_app(url)
        with app.app_context():
            barrier.wait(timeout=60)
            result = job(*args)
            db.session.remove()
            db.engine.dispose()
        queue.put(("ok", result))
    except Exception:  # the test reads it: any error here is what the test exists to catch
        queue.put(("error", traceback.format_exc()))


def race(app, job, *per_worker_args):
    """Run ``job(*args)`` in one process per args tuple, all released at once; return the results."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.commit()
    db.session.remove()
    context = worker_context()
    barrier, queue = context.Barrier(len(per_worker_args)), context.Queue()
    workers = [context.Process(target=_run_worker, args=(job, url, barrier, queue, args)) for args in per_worker_args]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    errors = [detail for status, detail in results if status == "error"]
    assert errors == [], errors[0] if errors else ""
    return [detail for _, detail in results]


# --- The jobs (module-level, so spawned processes can import them) -----------------------------


def enrol_many(worker: int, count: int):
    from diary.errors import Refused
    from diary.study.trial import require_study

    enrolled = 0
    for number in range(count):
        try:
            enroll(
                require_study(),
                site="NIH-CC",
                timezone="UTC",
                actor=f"coordinator{worker}",
                now=now_utc(),
                code=f"P-W{worker}N{number:02d}",
            )
            db.session.commit()
            enrolled += 1
        except Refused:
            db.session.rollback()
    return enrolled


def record_first_dose(code: str, hours_ago: int):
    from diary.errors import Refused

    participant = db.session.scalar(select(Participant).where(Participant.code == code))
    try:
        record_dose(participant, 1, now_utc() - timedelta(hours=hours_ago), actor=f"nurse-{hours_ago}", now=now_utc())
        db.session.commit()
        return "recorded"
    except Refused as refusal:
        db.session.rollback()
        return refusal.message


def acknowledge_report(report_id: int, email: str, note: str):
    from diary.errors import Refused
    from diary.models import StaffUser
    from diary.safety.side_effects import acknowledge

    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
    try:
        acknowledge(db.session.get(SideEffectReport, report_id), note, by=user, now=now_utc())
        db.session.commit()
        return "acknowledged"
    except Refused as refusal:
        db.session.rollback()
        return refusal.message


def fail_logins(emails: list[str]):
    from diary.governance.staff import LoginRefused, login_staff

    outcomes = []
    for email in emails:
        try:
            login_staff(email, "wrong password here", address="203.0.113.9", now=now_utc())
        except LoginRefused as refusal:
            outcomes.append(refusal.status)
        db.session.commit()
    return outcomes


def withdraw_once(code: str, reason: str):
    from diary.errors import Refused
    from diary.participants.enrolment import withdraw

    participant = db.session.scalar(select(Participant).where(Participant.code == code))
    try:
        withdraw(participant, actor=reason, now=now_utc(), reason=reason)
        db.session.commit()
        return "withdrawn"
    except Refused as refusal:
        db.session.rollback()
        return refusal.message


def export_dummy(out_dir: str):
    """A blinded analyst's export: draws the dummy allocation if none is stored yet."""
    import csv as csv_module
    from pathlib import Path

    from diary.exports import write_bundle
    from diary.study.trial import require_study

    write_bundle(Path(out_dir), study=require_study(), now=now_utc())
    with open(Path(out_dir) / "participants.csv", encoding="utf-8", newline="") as handle:
        return {row["participant_id"]: row["sequence"] for row in csv_module.DictReader(handle)}


def refresh_figures(offset_seconds: int):
    """A scheduler's figures pass, its clock ``offset_seconds`` from the others'."""
    from diary.reporting.figures import refresh
    from diary.study.trial import require_study

    now = now_utc() + timedelta(seconds=offset_seconds)
    snapshot = refresh(require_study(), now)
    return (now.isoformat(), snapshot is not None)


# --- The races ---------------------------------------------------------------------------------


def test_concurrent_enrolments_never_share_a_randomization_slot(app, study):
    """Four coordinators enrolling at once take distinct slots, each recorded in the audit."""
    for position in range(1, 21):
        db.session.add(
            RandomizationSlot(
                study_id=study.id, site="NIH-CC", position=position, sequence="AB" if position % 2 else "BA"
            )
        )
    db.session.commit()
    enrolled = race(app, enrol_many, *[(worker, 5) for worker in range(WORKERS)])
    assert sum(enrolled) == 20
    taken = db.session.scalars(
        select(RandomizationSlot.participant_id).where(RandomizationSlot.participant_id.is_not(None))
    ).all()
    assert len(taken) == len(set(taken)) == 20
    participants = db.session.scalars(select(Participant)).all()
    slots = {slot.participant_id: slot for slot in db.session.scalars(select(RandomizationSlot))}
    assert all(p.sequence == slots[p.id].sequence for p in participants)
    events = db.session.scalars(
        select(AuditEvent.new_value).where(AuditEvent.action == "assign_randomization_slot")
    ).all()
    assert len(events) == 20 and len({e.split(" sequence")[0] for e in events}) == 20


def test_two_coordinators_recording_the_same_infusion_record_it_once(app, study):
    """At the same moment, 09:00 and 15:00: one is recorded, the other is told it needs a reason."""
    enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=3),
        code="P-DOSE01",
    )
    db.session.commit()
    outcomes = race(app, record_first_dose, ("P-DOSE01", 6), ("P-DOSE01", 12))
    assert sorted(outcomes)[-1] == "recorded" and sum(o == "recorded" for o in outcomes) == 1
    assert any("needs a reason" in o for o in outcomes)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action.in_(("record_dose", "correct_dose")))).all()
    assert [e.action for e in events] == ["record_dose"] and events[0].old_value is None


def test_simultaneous_acknowledgements_keep_the_first_note(app, study):
    """Two coordinators acknowledging one report at once: one succeeds, the other is told who was first."""
    from .staff_helpers import make_staff

    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=3),
        code="P-ACK001",
    )
    record_dose(participant, 1, now_utc() - timedelta(hours=22), actor="t", now=now_utc())
    protocol = protocol_of(study.current_protocol_version)
    record_submission(
        assessment_of(participant, 1, "D1"),
        answers_for(protocol, "D1", **{"side_effects.symptoms.headache": "severe"}),
        now=now_utc(),
        actor="t",
    )
    make_staff("coordinator", "first@site.test")
    make_staff("coordinator", "second@site.test")
    report_id = db.session.scalars(select(SideEffectReport.id)).one()
    outcomes = race(
        app,
        acknowledge_report,
        (report_id, "first@site.test", "called: note one"),
        (report_id, "second@site.test", "called: note two"),
    )
    assert sum(o == "acknowledged" for o in outcomes) == 1
    refused = next(o for o in outcomes if o != "acknowledged")
    report = db.session.get(SideEffectReport, report_id)
    first = "first@site.test" if report.acknowledgement_note == "called: note one" else "second@site.test"
    assert f"already acknowledged by {first}" in refused  # the second is told who was first
    assert report.acknowledged_by_id is not None
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "acknowledge_side_effect")
        )
        == 1
    )


def test_simultaneous_failed_logins_all_count_and_never_collide(app, study):
    """First failures for new emails at the same moment: no error, and every failure counts."""
    emails = [f"nobody{n}@site.test" for n in range(4)]
    outcomes = race(app, fail_logins, *[(emails,) for _ in range(WORKERS)])
    assert all(status == 401 for statuses in outcomes for status in statuses)
    failures = dict(db.session.execute(select(LoginThrottle.key, LoginThrottle.failures)).all())
    assert all(failures[f"account:{email}"] == WORKERS for email in emails)
    assert failures["address:203.0.113.9"] == WORKERS * len(emails)


def test_two_withdrawals_at_once_withdraw_once(app, study):
    """Two coordinators withdrawing one participant at once: one event, the other told it is done."""
    enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-WDRW01")
    db.session.commit()
    outcomes = race(app, withdraw_once, ("P-WDRW01", "moved"), ("P-WDRW01", "declined"))
    assert sorted(outcomes) == ["This participant is already withdrawn.", "withdrawn"]
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "withdraw")) == 1


# --- A long read does not block a write (SQLite) -----------------------------------------------


def hold_a_read(url, holding, written, queue):
    """A GET's work: read inside a transaction and keep it open until the write is seen (or 20 s)."""
    try:
        from diary.database import reading_only

        app = make_app(url)
        with app.app_context(), reading_only():
            db.session.scalar(select(func.count()).select_from(Participant))  # the read transaction begins
            holding.set()
            queue.put(written.wait(timeout=20))
            db.session.rollback()
            db.engine.dispose()
    except Exception:
        queue.put(traceback.format_exc())


def write_while_held(url, holding, written, queue, code="P-WRITER"):
    """Another process's write transaction, begun once ``holding`` is set."""
    try:
        app = make_app(url)
        holding.wait(timeout=60)
        with app.app_context():
            enroll(_study(), site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code=code)
            db.session.commit()
            written.set()
            db.engine.dispose()
        queue.put(True)
    except Exception:
        queue.put(traceback.format_exc())


def _study():
    from diary.study.trial import require_study

    return require_study()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_long_read_does_not_block_a_write_on_sqlite(app, study):
    """While a read transaction (a page render) stays open, another process commits a write."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.commit()
    context = worker_context()
    holding, written, queue = context.Event(), context.Event(), context.Queue()
    reader = context.Process(target=hold_a_read, args=(url, holding, written, queue))
    writer = context.Process(target=write_while_held, args=(url, holding, written, queue))
    reader.start()
    writer.start()
    results = [queue.get(timeout=90) for _ in range(2)]
    reader.join(timeout=30)
    writer.join(timeout=30)
    assert results == [True, True], results  # the write landed while the read was still open
    assert db.session.scalar(select(Participant.id).where(Participant.code == "P-WRITER"))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_submit_holds_the_write_lock_for_its_writes_alone_on_sqlite(app, client, study, monkeypatch):
    """A participant's submit reads and checks in a read transaction (``READ_FIRST``) and takes
    the write lock only for its writes (``write_from_here``): while it is still checking the
    answers, another process's write transaction begins and commits. Held from the request's
    first statement, as before, the other writer waited for the whole submit."""
    from diary.entries import recording

    from .participant_helpers import day1_form, open_form, participant_with_day1_open, sign_in

    participant, token = participant_with_day1_open(study, code="P-READ1")
    sign_in(client, token)
    day1 = assessment_of(participant, 1, "D1")
    form = {**day1_form(protocol_of(study.current_protocol_version)), **open_form(client, day1), "step": "submit"}
    context = worker_context()
    reading, written, queue = context.Event(), context.Event(), context.Queue()
    writer = context.Process(
        target=write_while_held, args=(app.config["SQLALCHEMY_DATABASE_URI"], reading, written, queue, "P-BESIDE")
    )
    writer.start()
    checked = recording.validate_answers
    waited = []

    def slow_check(*args, **kwargs):
        # The submit has read what its rules need; the other process writes now.
        reading.set()
        waited.append(written.wait(timeout=5))
        return checked(*args, **kwargs)

    monkeypatch.setattr(recording, "validate_answers", slow_check)
    response = client.post(f"/p/entry/{day1.id}", data=form)
    assert queue.get(timeout=60) is True
    writer.join(timeout=30)
    assert waited == [True]  # the other write committed while the submit was checking
    assert response.status_code == 302
    db.session.expire_all()
    assert assessment_of(participant, 1, "D1").submission is not None
    assert db.session.scalar(select(Participant.id).where(Participant.code == "P-BESIDE"))


def test_write_from_here_ends_the_read_and_takes_the_write_lock(tmp_path):
    """The rule where it lives: after ``write_from_here`` the connection holds SQLite's write lock
    (another connection cannot begin writing) and what was read stays readable; in a write
    transaction already, or on a connection that is not reading, it changes nothing."""
    import sqlite3

    from diary.database import GatedConnection, reading_only, write_from_here
    from diary.study.trial import ensure_study

    app = make_app(f"sqlite:///{tmp_path / 'switch.sqlite'}")
    with app.app_context():
        db.create_all()
        ensure_study()
        db.session.commit()
        with reading_only():
            db.session.scalar(select(func.count()).select_from(Participant))
        connection = db.session.connection()
        gated = connection.connection.dbapi_connection
        assert isinstance(gated, GatedConnection) and gated.reading
        other = sqlite3.connect(tmp_path / "switch.sqlite", timeout=0.1)
        other.execute("BEGIN IMMEDIATE")  # a read transaction holds no write lock
        other.rollback()
        write_from_here(connection)
        assert not gated.reading and gated.in_gate
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        write_from_here(connection)  # already writing: nothing changes
        assert gated.in_gate
        enroll(_study(), site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc(), code="P-SWITCH")
        db.session.commit()
        assert not gated.in_gate
        other.execute("BEGIN IMMEDIATE")  # the commit let the lock go
        other.rollback()
        db.session.scalar(select(func.count()).select_from(Participant))  # a write transaction (no flag)
        connection = db.session.connection()
        gated = connection.connection.dbapi_connection
        assert not gated.reading and gated.in_gate
        write_from_here(connection)
        assert gated.in_gate
        db.session.rollback()
        other.close()
        db.engine.dispose()


def test_a_read_transaction_without_the_flag_takes_the_write_lock(tmp_path):
    """The control: outside ``reading_only`` a transaction on SQLite begins IMMEDIATE (holds the lock)."""
    import sqlite3

    from diary.database import reading_only
    from diary.study.trial import ensure_study

    app = make_app(f"sqlite:///{tmp_path / 'lock.sqlite'}")
    with app.app_context():
        db.create_all()
        ensure_study()
        db.session.commit()
        db.session.scalar(select(func.count()).select_from(Participant))
        other = sqlite3.connect(tmp_path / "lock.sqlite", timeout=0.1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        db.session.rollback()
        with reading_only():
            db.session.scalar(select(func.count()).select_from(Participant))
            other.execute("BEGIN IMMEDIATE")  # free: the read took no write lock
            other.rollback()
        db.session.rollback()
        other.close()
        db.engine.dispose()


def test_two_exports_at_once_draw_one_dummy_allocation(app, study, tmp_path):
    """Two blinded exports racing to draw the dummy allocation: both carry the one that is stored."""
    rows = ["site,position,sequence"] + [f"NIH-CC,{n},{'AB' if n % 2 else 'BA'}" for n in range(1, 41)]
    from diary.study.randomization import load_randomization_list

    load_randomization_list(study, "\n".join(rows).encode(), actor="t", now=now_utc())
    db.session.execute(RandomizationSlot.__table__.update().values(dummy_sequence=None))  # as before the upgrade
    for n in range(30):
        enroll(study, site="NIH-CC", timezone="UTC", actor="t", now=now_utc(), code=f"P-EXP{n:03d}")
    db.session.commit()
    first, second = race(app, export_dummy, (str(tmp_path / "a"),), (str(tmp_path / "b"),))
    stored = dict(db.session.execute(select(Participant.code, Participant.dummy_sequence)).all())
    assert first == second == stored and len(stored) == 30
    slots = db.session.execute(select(RandomizationSlot.sequence, RandomizationSlot.dummy_sequence)).all()
    assert Counter(s for s, _ in slots) == Counter(d for _, d in slots)


def test_schedulers_counting_the_figures_at_once_leave_one_whole_snapshot(app, study):
    """Four figures passes at once (four schedulers, clocks a second apart): no error, and the
    tables hold exactly one count, the latest one, never two counts mixed or doubled."""
    from diary.models import FiguresSnapshot, ParticipantFigures, TimepointFigures
    from diary.reporting.figures import fresh, refresh

    for n in range(12):
        participant, _ = enroll(
            study,
            site="NIH-CC",
            timezone="UTC",
            sequence="AB",
            actor="t",
            now=now_utc() - timedelta(days=3),
            code=f"P-FIG{n:03d}",
        )
        record_dose(participant, 1, now_utc() - timedelta(days=2, hours=n), actor="t", now=now_utc())
    db.session.commit()
    results = race(app, refresh_figures, *[(offset,) for offset in range(WORKERS)])
    latest = max(now for now, _ in results)
    assert any(stored for _, stored in results)
    snapshots = db.session.execute(select(FiguresSnapshot.as_of)).scalars().all()
    assert [moment.isoformat() for moment in snapshots] == [latest]
    current = db.session.scalar(select(FiguresSnapshot.generation))
    shown = select(func.count()).select_from(ParticipantFigures).where(ParticipantFigures.generation == current)
    assert db.session.scalar(shown) == 12
    # Besides the count shown, at most the one it replaced is kept (for a page reading it then).
    assert len(set(db.session.scalars(select(ParticipantFigures.generation)))) <= 2
    assert len(set(db.session.scalars(select(TimepointFigures.generation)))) <= 2
    from diary.reporting.figures import timepoint_rows
    from diary.study.trial import require_study

    study = require_study()
    stored_rows = sorted((s, p, t, state, n) for s, p, t, state, _optional, n in timepoint_rows(study.id))
    # One count, the same as a single pass at the same moment would store.
    from datetime import datetime

    refresh(study, datetime.fromisoformat(latest) + timedelta(microseconds=1))
    again = sorted((s, p, t, state, n) for s, p, t, state, _optional, n in timepoint_rows(study.id))
    from diary.models import Assessment

    assert stored_rows == again
    assert sum(row[-1] for row in again) == db.session.scalar(select(func.count()).select_from(Assessment))
    assert fresh(study.id, datetime.fromisoformat(latest) + timedelta(seconds=1)) is not None


# --- The investigator's control: decided once, signed once, locked once -------------------------


def decide_request(worker: int, request_id: int, minute: int):
    import pyotp

    from diary.entries.change_requests import decide
    from diary.errors import Refused
    from diary.models import ChangeRequest, StaffUser

    from .staff_helpers import PASSWORD, TOTP_SECRET

    investigator = db.session.scalar(select(StaffUser).where(StaffUser.email == f"inv{worker}@site.test"))
    change_request = db.session.get(ChangeRequest, request_id)
    now = now_utc().replace(second=0, microsecond=0) + timedelta(minutes=minute)
    try:
        decide(
            change_request,
            approve=True,
            note="",
            by=investigator,
            password=PASSWORD,
            code=pyotp.TOTP(TOTP_SECRET).at(now),
            now=now,
        )
        db.session.commit()
        return "applied"
    except Refused as refusal:
        db.session.rollback()
        return refusal.status


def sign_same_period(worker: int, period_id: int, minute: int):
    import pyotp

    from diary.errors import Refused
    from diary.governance.signoff import sign_period
    from diary.models import Period, StaffUser

    from .staff_helpers import PASSWORD, TOTP_SECRET

    investigator = db.session.scalar(select(StaffUser).where(StaffUser.email == f"inv{worker}@site.test"))
    now = now_utc().replace(second=0, microsecond=0) + timedelta(minutes=minute)
    try:
        sign_period(
            db.session.get(Period, period_id),
            by=investigator,
            password=PASSWORD,
            code=pyotp.TOTP(TOTP_SECRET).at(now),
            now=now,
        )
        db.session.commit()
        return "signed"
    except Refused as refusal:
        db.session.rollback()
        return refusal.status


def lock_once(worker: int):
    from diary.errors import Refused
    from diary.governance.lock import lock_study
    from diary.study.trial import require_study

    try:
        lock_study(require_study(), reason=f"lock by {worker}", actor=f"admin{worker}", by_id=None, now=now_utc())
        db.session.commit()
        return "locked"
    except Refused as refusal:
        db.session.rollback()
        return refusal.status


def _dosed_participant_with_d1(study, code):
    protocol = protocol_of(study.current_protocol_version)
    participant, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now_utc() - timedelta(days=5), code=code
    )
    record_dose(participant, 1, now_utc() - timedelta(days=3), actor="t", now=now_utc())
    d1 = assessment_of(participant, 1, "D1")
    record_submission(d1, answers_for(protocol, "D1", vas=50), now=d1.window_open, actor="t")
    db.session.commit()
    return participant, d1


def test_two_investigators_deciding_one_change_request_apply_it_once(app, study):
    from diary.entries.change_requests import open_request
    from diary.models import ItemValue

    from .staff_helpers import make_staff

    _participant, d1 = _dosed_participant_with_d1(study, "P-RACE-DCR")
    for worker in range(2):
        make_staff("investigator", f"inv{worker}@site.test")
    request = open_request(
        d1.submission,
        "fatigue_vas.fatigue",
        "5",
        kind="entered_in_error",
        source="call",
        source_at=now_utc() - timedelta(minutes=5),
        reason="typo",
        by=make_staff("coordinator"),
        now=now_utc(),
    )
    db.session.commit()
    results = race(app, decide_request, (0, request.id, 1), (1, request.id, 2))
    assert sorted(results, key=str) == [409, "applied"]
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "approve_change")) == 1
    assert db.session.scalars(select(ItemValue.value).where(ItemValue.item == "fatigue")).all() == ["5"]


def test_two_investigators_signing_one_period_sign_it_once(app, study):
    from diary.models import Signature

    from .staff_helpers import make_staff

    participant, _ = _dosed_participant_with_d1(study, "P-RACE-SIG")
    for worker in range(2):
        make_staff("investigator", f"inv{worker}@site.test")
    results = race(app, sign_same_period, (0, participant.periods[0].id, 1), (1, participant.periods[0].id, 2))
    assert sorted(results, key=str) == [409, "signed"]
    assert db.session.scalar(select(func.count(Signature.id))) == 1


def test_two_admins_locking_at_once_lock_once(app, study):
    results = race(app, lock_once, (0,), (1,))
    assert sorted(results, key=str) == [409, "locked"]
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "lock_study")) == 1


def confirm_archive(worker: int, archive_id: int, staff_id: int):
    from diary.archive.custody import confirm_received
    from diary.errors import Refused
    from diary.models import SiteArchive

    archive = db.session.get(SiteArchive, archive_id)
    db.session.commit()  # both have read "not yet received" (on SQLite, outside the write lock)
    time.sleep(0.3)
    try:
        confirm_received(actor=f"staff:inv{worker}@site.test", staff_id=staff_id, archive=archive, now=now_utc())
        db.session.commit()
        return "received"
    except Refused as refusal:
        db.session.rollback()
        return refusal.status


def test_two_people_confirming_one_archive_received_record_it_once(app, study):
    """The site's investigator and coordinator press *Confirm received* at the same moment: one
    receipt, one audit event, the other told 409."""
    from diary.models import SiteArchive

    from .staff_helpers import make_staff

    people = [make_staff("investigator", "inv0@site.test"), make_staff("coordinator", "inv1@site.test")]
    archive = SiteArchive(
        study_id=study.id,
        site="NIH-CC",
        as_of=now_utc(),
        archive_sha256="a" * 64,
        zip_sha256="b" * 64,
        file_name="archive.zip",
        built_by_id=people[0].id,
        built_at=now_utc(),
    )
    db.session.add(archive)
    db.session.commit()
    archive_id, people_ids = archive.id, {p.id for p in people}
    results = race(app, confirm_archive, (0, archive_id, people[0].id), (1, archive_id, people[1].id))
    assert sorted(results, key=str) == [409, "received"]
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "archive_received")) == 1
    assert db.session.get(SiteArchive, archive_id).received_by_id in people_ids


def code_report(worker: int, report_id: int, term: str):
    from diary.errors import Refused
    from diary.models import SideEffectReport, StaffUser
    from diary.safety.coding import code_side_effect

    report = db.session.get(SideEffectReport, report_id)
    coder = db.session.scalar(select(StaffUser).where(StaffUser.email == f"coder{worker}@site.test"))
    _ = report.coded_term, report.period.participant.study  # both coders have the report open
    db.session.commit()
    time.sleep(0.3)
    try:
        code_side_effect(report, term, reason="matched the LLT", by=coder, now=now_utc(), seen=None)
        db.session.commit()
        return "coded"
    except Refused as refusal:
        db.session.rollback()
        return refusal.status


def test_two_coders_coding_one_report_at_once_code_it_once(app, study):
    """Two coordinators code the same verbatim report to different terms at the same moment: one
    term stands, one audit event, the other told 409."""
    from diary.models import SideEffectReport

    from .staff_helpers import make_staff

    participant, _ = _dosed_participant_with_d1(study, "P-RACE-CODE")
    protocol = protocol_of(study.current_protocol_version)
    day3 = assessment_of(participant, 1, "D3")
    form = answers_for(protocol, "D3", **{"side_effects.other": "metallic taste"})
    record_submission(day3, form, now=day3.window_open + timedelta(minutes=1), actor="t")
    for worker in range(2):
        make_staff("coordinator", f"coder{worker}@site.test")
    report_id = db.session.scalar(select(SideEffectReport.id).where(SideEffectReport.solicited.is_(False)))
    results = race(app, code_report, (0, report_id, "Dysgeusia"), (1, report_id, "Taste disorder"))
    assert sorted(results, key=str) == [409, "coded"]
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "code_side_effect")) == 1
