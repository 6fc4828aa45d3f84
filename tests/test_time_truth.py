"""Every value has a true time: planned infusions open the baseline ahead, entries carry when
their answers were given, and a corrected infusion time re-judges what was entered."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select

from diary.dosing.assessments import state_of_assessment
from diary.dosing.infusions import plan_dose, record_dose
from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.exports import write_bundle
from diary.extensions import db
from diary.models import AuditEvent, Submission, now_utc
from diary.participants.enrolment import enroll
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from, key_from, sign_in
from .test_exports import read_csv


@pytest.fixture
def protocol(study):
    return protocol_of(study.current_protocol_version)


def _enrol(study, code="P-PLAN01", tz="America/New_York"):
    participant, token = enroll(
        study,
        site="NIH-CC",
        timezone=tz,
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=30),
        code=code,
        email=f"{code.lower()}@example.org",
    )
    return participant, token


def _dosed(study, protocol, code, hours_ago, entries):
    """A participant dosed ``hours_ago`` hours ago, with participant entries at each target time."""
    participant, _ = _enrol(study, code, tz="UTC")
    start = (now_utc() - timedelta(hours=hours_ago)).replace(second=0, microsecond=0)
    record_dose(participant, 1, start, actor="t", now=now_utc())
    for timepoint, vas in entries.items():
        assessment = assessment_of(participant, 1, timepoint)
        record_submission(assessment, answers_for(protocol, timepoint, vas=vas), now=assessment.target, actor="t")
    db.session.commit()
    return participant


def test_a_planned_infusion_opens_bl_a_day_ahead_and_the_participant_submits_it(client, study, protocol):
    """Planned for tomorrow morning, BL is open tonight on the phone and a submit over HTTP is stored."""
    participant, token = _enrol(study)
    planned = (now_utc() + timedelta(hours=10)).replace(second=0, microsecond=0)
    plan_dose(participant, 1, planned, actor="t", now=now_utc())
    db.session.commit()
    bl = assessment_of(participant, 1, "BL")
    assert bl.window_open == planned - timedelta(hours=24) and bl.window_close == planned

    today = sign_in(client, token).get_data(as_text=True)
    assert "Before your infusion" in today and f"/p/entry/{bl.id}" in today
    m40 = assessment_of(participant, 1, "M40")
    assert f"/p/entry/{m40.id}" not in today  # post-dose entries wait for the infusion
    assert client.get(f"/p/entry/{m40.id}").status_code == 409

    html = client.get(f"/p/entry/{bl.id}").get_data(as_text=True)
    form = {
        **answers_for(protocol, "BL", vas=62),
        "csrf_token": csrf_from(html),
        "idempotency_key": key_from(html),
        "step": "submit",
    }
    response = client.post(f"/p/entry/{bl.id}", data=form)
    assert response.status_code == 302
    submission = db.session.scalars(select(Submission)).one()
    assert submission.collected_at == submission.submitted_at
    assert submission.collected_at < planned


def test_the_actual_start_re_anchors_the_planned_schedule(study):
    """Recording the infusion 40 minutes after the plan moves every window, and closes BL there."""
    participant, _ = _enrol(study)
    planned = (now_utc() + timedelta(hours=1)).replace(second=0, microsecond=0)
    plan_dose(participant, 1, planned, actor="t", now=now_utc() - timedelta(hours=2))
    actual = planned + timedelta(minutes=40)
    record_dose(participant, 1, actual, actor="t", now=actual + timedelta(minutes=5))
    db.session.commit()
    windows = {a.timepoint: a for a in participant.periods[0].assessments}
    assert windows["BL"].window_close == actual
    assert windows["M40"].window_open == actual + timedelta(minutes=30)
    assert windows["D3"].target == actual + timedelta(hours=72)
    assert participant.periods[0].planned_start == planned


def test_planning_refuses_the_past_and_needs_a_reason_to_change(study):
    """A plan lies in the future; re-planning needs a reason and is audited."""
    participant, _ = _enrol(study)
    with pytest.raises(Refused, match="future"):
        plan_dose(participant, 1, now_utc() - timedelta(minutes=1), actor="t", now=now_utc())
    planned = now_utc() + timedelta(days=1)
    plan_dose(participant, 1, planned, actor="t", now=now_utc())
    with pytest.raises(Refused, match="needs a reason"):
        plan_dose(participant, 1, planned + timedelta(hours=2), actor="t", now=now_utc())
    plan_dose(participant, 1, planned + timedelta(hours=2), actor="t", now=now_utc(), reason="pharmacy delay")
    db.session.commit()
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.entity == "period")).all()
    assert actions == ["plan_dose", "replan_dose"]


def test_a_bl_collected_after_a_corrected_earlier_start_is_excluded_with_a_reason(study, protocol, tmp_path):
    """BL given at 08:50 for a 09:00 infusion that really began at 07:30 is after_dose, kept, not a baseline."""
    participant = _dosed(study, protocol, "P-AFTER1", 24 * 9, {"BL": 60, "D1": 40, "D3": 42, "D7": 50})
    period = participant.periods[0]
    record_dose(
        participant,
        1,
        period.dose_start - timedelta(minutes=90),
        actor="t",
        now=now_utc(),
        reason="pump log shows an earlier start",
    )
    db.session.commit()
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "correct_dose")).one()
    assert "BL completed -> after_dose" in event_.new_value
    write_bundle(tmp_path, study=study, now=now_utc())
    status = {r["timepoint"]: r["status"] for r in read_csv(tmp_path, "assessments")}
    assert status["BL"] == "after_dose"
    row = read_csv(tmp_path, "fatigue_endpoints")[0]
    assert row["baseline_vas"] == row["pct_change_d3"] == row["responder_d3"] == ""
    assert row["excluded_reason"].startswith("BL after_dose") and "+0.5 h" in row["excluded_reason"]


def test_a_proxy_entry_collected_inside_the_window_counts_with_its_collection_time(study, protocol, tmp_path):
    """A paper D3 dated inside its window, keyed a week later, counts as D3 at the paper's time."""
    participant = _dosed(study, protocol, "P-PAPER1", 24 * 20, {"BL": 50, "D1": 45, "D7": 44})
    d3 = assessment_of(participant, 1, "D3")
    given = d3.target + timedelta(hours=1)
    keyed = d3.late_close + timedelta(days=7)
    record_submission(
        d3,
        answers_for(protocol, "D3", vas=38),
        now=keyed,
        actor="t",
        source="paper",
        reason="paper diary returned at the visit",
        collected_at=given,
    )
    db.session.commit()
    write_bundle(tmp_path, study=study, now=now_utc())
    assessment = {r["timepoint"]: r for r in read_csv(tmp_path, "assessments")}["D3"]
    assert assessment["status"] == "completed" and assessment["source"] == "paper"
    assert pd.Timestamp(assessment["collected_utc"]) == pd.Timestamp(given)
    assert pd.Timestamp(assessment["submitted_utc"]) == pd.Timestamp(keyed)
    assert float(assessment["minutes_from_dose"]) == pytest.approx(73 * 60)
    row = read_csv(tmp_path, "fatigue_endpoints")[0]
    assert (row["vas_d3"], row["pct_change_d3"], row["status_d3"], row["source_d3"]) == (
        "38",
        "-24.0",
        "completed",
        "paper",
    )
    assert float(row["hours_from_dose_d3"]) == pytest.approx(73.0)


def test_a_proxy_entry_collected_after_the_late_grace_is_refused_and_stores_nothing(study, protocol):
    """A phone interview 3.5 h after the grace ended is missing data, not a late entry."""
    participant = _dosed(study, protocol, "P-LATECL", 24 * 20, {"BL": 50})
    d3 = assessment_of(participant, 1, "D3")
    with pytest.raises(Refused, match="outside this entry's window"):
        record_submission(
            d3,
            answers_for(protocol, "D3", vas=30),
            now=now_utc(),
            actor="t",
            source="phone_interview",
            reason="called",
            collected_at=d3.late_close + timedelta(hours=3.5),
        )
    db.session.rollback()
    with pytest.raises(Refused, match="date and time"):
        record_submission(
            d3, answers_for(protocol, "D3", vas=30), now=now_utc(), actor="t", source="phone_interview", reason="called"
        )
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Submission).where(Submission.assessment_id == d3.id)) == 0


def test_a_correction_that_moves_a_completed_m40_out_of_its_window_flags_it(study, protocol, tmp_path, client):
    """M40 entered at +40 min becomes out_of_window when the start moves 90 min earlier; the export agrees."""
    from .staff_helpers import login_as

    participant = _dosed(study, protocol, "P-MOVED1", 24 * 9, {"BL": 60, "M40": 55, "D1": 45, "D3": 40, "D7": 48})
    start = participant.periods[0].dose_start
    record_dose(participant, 1, start - timedelta(minutes=90), actor="t", now=now_utc(), reason="wrong clock")
    db.session.commit()
    m40 = assessment_of(participant, 1, "M40")
    assert m40.window_open == start - timedelta(minutes=60)  # windows follow the current time
    write_bundle(tmp_path, study=study, now=now_utc())
    rows = {r["timepoint"]: r for r in read_csv(tmp_path, "assessments")}
    assert rows["M40"]["status"] == "out_of_window"
    assert float(rows["M40"]["minutes_from_dose"]) == pytest.approx(130)
    assert rows["D3"]["status"] == "completed"  # 73.5 h: still inside 66-78 h
    endpoint = read_csv(tmp_path, "fatigue_endpoints")[0]
    assert "M40 out_of_window" in endpoint["excluded_reason"]
    login_as(client, "coordinator")
    page = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    assert "Entries left out of the endpoints" in page and "M40 is out of window" in page
    attention = client.get("/staff/?attention=1").get_data(as_text=True)
    assert participant.code in attention


def test_every_endpoint_column_agrees_with_an_independent_computation(study, protocol, tmp_path):
    """A period with each kind of exclusion: fatigue_endpoints recomputed from first principles."""
    participant = _dosed(
        study, protocol, "P-ALLKIN", 24 * 12, {"BL": 70, "M40": 66, "M120": 60, "D1": 50, "D3": 49, "D7": 56, "D14": 65}
    )
    # Moving the start 30 min later: BL stays a baseline (now 90 min before), M40 and M120 fall
    # out of their windows, D1/D3/D7 move but stay inside theirs.
    record_dose(
        participant,
        1,
        participant.periods[0].dose_start + timedelta(minutes=30),
        actor="t",
        now=now_utc(),
        reason="infusion line primed late",
    )
    db.session.commit()
    write_bundle(tmp_path, study=study, now=now_utc())
    row = read_csv(tmp_path, "fatigue_endpoints")[0]
    assessments = pd.read_csv(tmp_path / "assessments.csv", keep_default_na=False, dtype=str)
    responses = pd.read_csv(tmp_path / "responses.csv", keep_default_na=False, dtype=str)
    vas = responses[responses["item"] == "fatigue"].merge(
        assessments[["timepoint", "status", "dose_start_utc"]], on="timepoint"
    )
    excluded = vas[vas.status.isin(["after_dose", "out_of_window"])]
    kept = vas[~vas.status.isin(["after_dose", "out_of_window"])]
    hours = {
        r.timepoint: (pd.Timestamp(r.collected_utc) - pd.Timestamp(r.dose_start_utc)).total_seconds() / 3600
        for r in kept.itertuples()
    }
    score = {r.timepoint: int(r.value) for r in kept.itertuples()}
    base = score["BL"]
    pct = {tp: (score[tp] - base) / base * 100 for tp in score}
    post = sorted((hours[tp], pct[tp]) for tp in score if tp in ("M40", "M80", "M120", "M230", "D1", "D2", "D3", "D7"))
    curve = [(0.0, 0.0)] + [(h, p) for h, p in post if h <= 168]
    area = sum((h1 - h0) * (p0 + p1) / 2 for (h0, p0), (h1, p1) in zip(curve, curve[1:]))
    area += (168 - curve[-1][0]) * curve[-1][1]
    assert sorted(excluded.timepoint) == ["M120", "M40"]
    assert (int(row["baseline_vas"]), int(row["vas_d1"]), int(row["vas_d3"]), int(row["vas_d7"])) == (
        base,
        score["D1"],
        score["D3"],
        score["D7"],
    )
    for day in ("d1", "d3", "d7"):
        assert float(row[f"pct_change_{day}"]) == pytest.approx(pct[day.upper()], abs=0.006)
        assert float(row[f"hours_from_dose_{day}"]) == pytest.approx(hours[day.upper()], abs=0.006)
    assert row["responder_d3"] == ("TRUE" if pct["D3"] <= -20 else "FALSE")
    assert float(row["auc_pct_change_0_7d"]) == pytest.approx(area, abs=0.06)
    assert int(row["auc_n_points"]) == len(post)
    assert (row["status_d3"], row["source_d3"]) == ("completed", "participant")
    assert "M40 out_of_window" in row["excluded_reason"] and "M120 out_of_window" in row["excluded_reason"]


def test_plan_command_plans_an_infusion_on_the_participants_clock(runner, study):
    """`diary plan CODE 1 "YYYY-MM-DD HH:MM"` materialises the period with BL a day ahead."""
    participant, _ = _enrol(study, "P-CLIPLN")
    db.session.commit()
    tomorrow = (now_utc() + timedelta(days=1)).astimezone(__import__("zoneinfo").ZoneInfo(participant.timezone))
    result = runner.invoke(args=["diary", "plan", "P-CLIPLN", "1", tomorrow.strftime("%Y-%m-%d 09:00")])
    assert result.exit_code == 0, result.output
    assert "BL opens 24 h before" in result.output
    db.session.expire_all()
    bl = assessment_of(participant, 1, "BL")
    assert bl.window_close.astimezone(__import__("zoneinfo").ZoneInfo(participant.timezone)).hour == 9
    again = runner.invoke(args=["diary", "plan", "P-CLIPLN", "1", tomorrow.strftime("%Y-%m-%d 10:00")])
    assert again.exit_code != 0 and "needs a reason" in again.output


def test_a_planned_baseline_gets_its_reminder_but_post_dose_entries_wait(study):
    """Planning owes BL's reminder when it opens; M230 and D1 are owed nothing until the dose is recorded."""
    from diary.models import Assessment, Reminder
    from diary.reminders.planning import plan

    participant, _ = _enrol(study, "P-REMPLN", tz="UTC")
    planned = (now_utc() + timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
    plan_dose(participant, 1, planned, actor="t", now=now_utc())
    db.session.commit()
    plan(planned - timedelta(hours=23))
    db.session.commit()
    owed = set(db.session.scalars(select(Assessment.timepoint).join(Reminder, Reminder.assessment_id == Assessment.id)))
    assert owed == {"BL"}


def test_a_baseline_stays_open_past_the_planned_start_until_the_infusion_is_recorded(client, study, protocol):
    """The infusion planned 10 minutes ago has not started (it will, 30 minutes late): BL opened
    now is accepted over HTTP, and once the start is recorded it counts as a baseline, completed."""
    participant, token = _enrol(study, code="P-LATE01")
    planned = (now_utc() - timedelta(minutes=10)).replace(microsecond=0)
    plan_dose(participant, 1, planned, actor="t", now=planned - timedelta(hours=2))
    db.session.commit()
    bl = assessment_of(participant, 1, "BL")
    assert bl.window_close == planned < now_utc()

    today = sign_in(client, token).get_data(as_text=True)
    assert f"/p/entry/{bl.id}" in today
    html = client.get(f"/p/entry/{bl.id}").get_data(as_text=True)
    assert "has passed" not in html
    form = {
        **answers_for(protocol, "BL", vas=58),
        "csrf_token": csrf_from(html),
        "idempotency_key": key_from(html),
        "step": "submit",
    }
    assert client.post(f"/p/entry/{bl.id}", data=form).status_code == 302

    actual = planned + timedelta(minutes=30)
    record_dose(participant, 1, actual, actor="t", now=actual + timedelta(minutes=1))
    db.session.commit()
    db.session.refresh(bl)
    assert bl.window_close == actual
    assert state_of_assessment(bl, actual + timedelta(hours=1)) == "completed"


def test_once_the_infusion_is_recorded_a_baseline_not_given_is_missed(study):
    """The wait ends with the recorded start: BL's window then closes there, as the protocol says."""
    participant, _ = _enrol(study, code="P-LATE02")
    planned = (now_utc() - timedelta(minutes=10)).replace(microsecond=0)
    plan_dose(participant, 1, planned, actor="t", now=planned - timedelta(hours=2))
    db.session.commit()
    bl = assessment_of(participant, 1, "BL")
    assert state_of_assessment(bl, now_utc()) == "open"
    record_dose(participant, 1, planned + timedelta(minutes=5), actor="t", now=now_utc())
    db.session.commit()
    db.session.refresh(bl)
    assert state_of_assessment(bl, now_utc()) == "missed"
