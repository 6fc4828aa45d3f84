"""The coordinator's pages at any size: the same states counted in SQL as judged in Python,
pages of 50 with search, filters and sorting, and a fixed number of queries."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from diary import assessments
from diary.adherence import PAGE_SIZE, load_grid
from diary.demo import build_demo
from diary.dosing import plan_dose, record_dose
from diary.enrolment import enroll, withdraw
from diary.entries import record_submission
from diary.extensions import db
from diary.models import Assessment, Participant, Period, Submission, now_utc
from diary.study import protocol_of

from .conftest import answers_for, assessment_of
from .staff_helpers import login_as
from .test_coordinator import _count_queries


def varied_study(study):
    """The demo plus every kind of state: planned only, a corrected start (after_dose,
    out_of_window), withdrawn (not_applicable)."""
    now = now_utc()
    build_demo(now=now - timedelta(minutes=1))
    protocol = protocol_of(study.current_protocol_version)
    planned, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=1),
                        code="P-PLANNED")
    plan_dose(planned, 1, now + timedelta(hours=5), actor="t", now=now)
    moved, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="BA", actor="t", now=now - timedelta(days=12),
                      code="P-MOVED0")
    start = (now - timedelta(days=9)).replace(microsecond=0)
    record_dose(moved, 1, start, actor="t", now=now)
    for code in ("BL", "M40", "D1"):
        a = assessment_of(moved, 1, code)
        record_submission(a, answers_for(protocol, code), now=a.target, actor="t")
    record_dose(moved, 1, start - timedelta(minutes=90), actor="t", now=now, reason="pump clock")
    gone, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=3),
                     code="P-GONE00")
    record_dose(gone, 1, now - timedelta(days=2), actor="t", now=now)
    withdraw(gone, actor="t", now=now, reason="moved away")
    db.session.commit()
    return now


def test_the_database_judges_every_assessment_as_python_does(study):
    """``state_sql`` equals ``state_at`` on every assessment of a study with every kind of state."""
    now = varied_study(study)
    rows = db.session.execute(
        assessments.rows_query().add_columns(assessments.state_sql(now).label("sql_state"))).all()
    judged = [(row.code, row.timepoint, assessments.state_at(row, now).value, row.sql_state) for row in rows]
    mismatches = [j for j in judged if j[2] != j[3]]
    assert mismatches == []
    assert {j[2] for j in judged} >= {"upcoming", "open", "completed", "missed", "not_applicable", "after_dose",
                                      "out_of_window"}


def test_dashboard_figures_counted_in_sql_equal_those_counted_row_by_row(study):
    """Compliance per participant and per time point agree with a Python count of the read model."""
    now = varied_study(study)
    grid = load_grid(study, now, page_size=1000)
    from diary.adherence import Tally
    protocol = protocol_of(study.current_protocol_version)
    optional = {tp.code: tp.optional for tp in protocol.timepoints}
    expected_by_timepoint, expected_by_participant = {}, {}
    for row in assessments.load(now, study_id=study.id):
        expected_by_timepoint.setdefault((row.period, row.timepoint), Tally()).add(row.state, optional[row.timepoint])
        expected_by_participant.setdefault(row.code, Tally()).add(row.state, optional[row.timepoint])
    assert grid.by_timepoint == expected_by_timepoint
    assert {row.participant.code: row.tally for row in grid.rows if row.participant.code in expected_by_participant} \
        == expected_by_participant


def many_participants(study, count):
    now = now_utc()
    for number in range(count):
        participant, _ = enroll(study, site="NIH-CC" if number % 3 else "Bethesda-2", timezone="UTC", sequence="AB",
                                actor="t", now=now - timedelta(days=10), code=f"P-{number:05d}")
        record_dose(participant, 1, now - timedelta(days=2, hours=number % 24), actor="t", now=now)
    db.session.commit()
    return now


def test_the_grid_is_paged_searched_filtered_and_sorted(client, study):
    """120 participants: 50 a page, search by code, filter by site and state, sort by compliance."""
    many_participants(study, 120)
    login_as(client, "coordinator")
    first = client.get("/staff/").get_data(as_text=True)
    assert first.count('scope="row"') == PAGE_SIZE and "Page 1 of 3" in first
    last = client.get("/staff/?page=3").get_data(as_text=True)
    assert last.count('scope="row"') == 120 - 2 * PAGE_SIZE
    assert client.get("/staff/?page=999999999999999999999").status_code == 200
    found = client.get("/staff/?q=P-0011").get_data(as_text=True)
    assert found.count('scope="row"') == 10  # P-00110 .. P-00119
    site = client.get("/staff/?site=Bethesda-2").get_data(as_text=True)
    assert "40 participants match" in site
    grid = load_grid(db.session.get(Participant, 1).study, now_utc(), sort="compliance", page_size=200)
    values = [row.tally.compliance_pct for row in grid.rows if row.tally.compliance_pct is not None]
    assert values == sorted(values)
    missed = load_grid(db.session.get(Participant, 1).study, now_utc(), state="missed", page_size=200)
    assert all(any(cell.state == "missed" for cell in row.cells.values()) for row in missed.rows)


def test_the_grid_runs_the_same_number_of_queries_at_any_size(app, client, study):
    """The adherence page's queries do not grow with the number of participants."""
    many_participants(study, 5)
    login_as(client, "coordinator")
    small = _count_queries(app, client, "/staff/")
    many_participants(study, 0)
    for number in range(5, 130):
        participant, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t",
                                now=now_utc() - timedelta(days=10), code=f"P-{number:05d}")
        record_dose(participant, 1, now_utc() - timedelta(days=3), actor="t", now=now_utc())
    db.session.commit()
    large = _count_queries(app, client, "/staff/")
    assert small == large, (small, large)
