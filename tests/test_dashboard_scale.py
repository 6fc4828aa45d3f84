"""The coordinator's pages at any size: the same states counted in SQL as judged in Python,
pages of 50 with search, filters and sorting, and a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from diary.demo import build_demo
from diary.dosing import assessments
from diary.dosing.infusions import plan_dose, record_dose
from diary.entries.recording import record_submission
from diary.extensions import db
from diary.models import Participant, Period, now_utc
from diary.participants.enrolment import enroll, withdraw
from diary.reporting.adherence import PAGE_SIZE, STATE_BITS, Tally, count_states, load_grid
from diary.reporting.figures import fresh, refresh
from diary.study.trial import protocol_of

from .conftest import answers_for, assessment_of
from .participant_helpers import csrf_from
from .staff_helpers import login_as
from .test_coordinator import _count_queries


def varied_study(study):
    """The demo plus every kind of state: planned only, a corrected start (after_dose,
    out_of_window), withdrawn (not_applicable)."""
    now = now_utc()
    build_demo(now=now - timedelta(minutes=1))
    protocol = protocol_of(study.current_protocol_version)
    planned, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=1), code="P-PLANNED"
    )
    plan_dose(planned, 1, now + timedelta(hours=5), actor="t", now=now)
    moved, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="BA", actor="t", now=now - timedelta(days=12), code="P-MOVED0"
    )
    start = (now - timedelta(days=9)).replace(microsecond=0)
    record_dose(moved, 1, start, actor="t", now=now)
    for code in ("BL", "M40", "D1"):
        a = assessment_of(moved, 1, code)
        record_submission(a, answers_for(protocol, code), now=a.target, actor="t")
    record_dose(moved, 1, start - timedelta(minutes=90), actor="t", now=now, reason="pump clock")
    gone, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=3), code="P-GONE00"
    )
    record_dose(gone, 1, now - timedelta(days=2), actor="t", now=now)
    withdraw(gone, actor="t", now=now, reason="moved away")
    db.session.commit()
    return now


def test_the_database_judges_every_assessment_as_python_does(study):
    """``state_sql`` equals ``state_at`` on every assessment of a study with every kind of state."""
    now = varied_study(study)
    rows = db.session.execute(assessments.rows_query().add_columns(assessments.state_sql(now).label("sql_state"))).all()
    judged = [(row.code, row.timepoint, assessments.state_at(row, now).value, row.sql_state) for row in rows]
    mismatches = [j for j in judged if j[2] != j[3]]
    assert mismatches == []
    assert {j[2] for j in judged} >= {
        "upcoming",
        "open",
        "completed",
        "missed",
        "not_applicable",
        "after_dose",
        "out_of_window",
    }


def test_dashboard_figures_counted_in_sql_equal_those_counted_row_by_row(study):
    """Compliance per participant and per time point, counted by the database, agree with a
    Python count of the read model; so do the grid's rows (judged from their own cells)."""
    now = varied_study(study)
    grid = load_grid(study, now, page_size=1000)
    assert grid.live
    protocol = protocol_of(study.current_protocol_version)
    optional = {tp.code: tp.optional for tp in protocol.timepoints}
    expected_by_timepoint, expected_by_participant = {}, {}
    for row in assessments.load(now, study_id=study.id):
        expected_by_timepoint.setdefault((row.period, row.timepoint), Tally()).add(row.state, optional[row.timepoint])
        expected_by_participant.setdefault(row.participant_id, Tally()).add(row.state, optional[row.timepoint])
    assert grid.by_timepoint == expected_by_timepoint
    counted = count_states(now, [code for code, flag in optional.items() if flag], [Participant.study_id == study.id])
    assert {pid: row.tally for pid, row in counted.participants.items()} == expected_by_participant
    assert {
        row.participant.id: row.tally for row in grid.rows if row.participant.id in expected_by_participant
    } == expected_by_participant
    # The figures the filters use, per participant, equal those of the rows judged in Python.
    for row in grid.rows:
        if row.participant.id in counted.participants:
            sql = counted.participants[row.participant.id]
            assert (sql.missed, sql.overdue, sql.flagged) == (row.missed, row.overdue, row.flagged)
            assert counted.states[row.participant.id] == sum(
                STATE_BITS[state] for state in {cell.state for cell in row.cells.values()}
            )


def many_participants(study, count):
    now = now_utc()
    for number in range(count):
        participant, _ = enroll(
            study,
            site="NIH-CC" if number % 3 else "Bethesda-2",
            timezone="UTC",
            sequence="AB",
            actor="t",
            now=now - timedelta(days=10),
            code=f"P-{number:05d}",
        )
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
        participant, _ = enroll(
            study,
            site="NIH-CC",
            timezone="UTC",
            sequence="AB",
            actor="t",
            now=now_utc() - timedelta(days=10),
            code=f"P-{number:05d}",
        )
        record_dose(participant, 1, now_utc() - timedelta(days=3), actor="t", now=now_utc())
    db.session.commit()
    large = _count_queries(app, client, "/staff/")
    assert small == large, (small, large)


def _reports_and_tasks(study, count):
    """``count`` unreviewed side-effect reports (every 10th severe) and open follow-up tasks."""
    from diary.models import FollowUpTask, SideEffectReport

    now = many_participants(study, count)
    periods = db.session.scalars(
        select(Period).join(Participant).where(Period.number == 1).order_by(Participant.code)
    ).all()
    for n, period in enumerate(periods):
        db.session.add(
            SideEffectReport(
                period_id=period.id,
                timepoint="D1",
                term="headache",
                severity="severe" if n % 10 == 0 else "mild",
                solicited=True,
                reported_at=now - timedelta(minutes=n),
                alert=False,
                review_state="new",
            )
        )
        db.session.add(
            FollowUpTask(
                participant_id=period.participant_id,
                rule="missed_timepoint",
                key=f"t-{n}",
                reason="Missed D1",
                due_at=now - timedelta(hours=1) + timedelta(minutes=n),
            )
        )
    db.session.commit()
    return now


def test_side_effect_and_follow_up_lists_are_paged_with_the_urgent_first(client, study):
    """120 reports and 120 tasks: 50 a page, severe reports and the most overdue tasks first."""
    _reports_and_tasks(study, 120)
    login_as(client, "coordinator")
    first = client.get("/staff/side-effects").get_data(as_text=True)
    assert first.count('action="/staff/side-effects/') == 50 and "Page 1 of 3" in first
    assert "to review: 120" in first
    # The 12 severe reports lead the first page; the last page holds only mild ones.
    assert first.count("severe · alert") == 12
    last = client.get("/staff/side-effects?page=3").get_data(as_text=True)
    assert last.count('action="/staff/side-effects/') == 20 and "severe · alert" not in last
    # A page past the end shows the last page, never an empty list.
    assert client.get("/staff/side-effects?page=99").get_data(as_text=True).count('action="/staff/side-effects/') == 20

    home = client.get("/staff/").get_data(as_text=True)
    assert "Follow up (120 open)" in home and "All 120 open follow-ups" in home
    tasks_page = client.get("/staff/follow-up").get_data(as_text=True)
    assert "120 open" in tasks_page and "Page 1 of 3" in tasks_page
    assert tasks_page.count('action="/staff/follow-up/') == 50
    codes = [line for line in tasks_page.splitlines() if "/staff/participants/P-" in line]
    assert "P-00000" in codes[0]  # due first
    page3 = client.get("/staff/follow-up?page=3").get_data(as_text=True)
    assert page3.count('action="/staff/follow-up/') == 20 and "P-00119" in page3


def test_closed_follow_ups_are_listed_with_how_the_call_went(client, study):
    _reports_and_tasks(study, 3)
    login_as(client, "coordinator")
    page = client.get("/staff/follow-up").get_data(as_text=True)
    task_id = int(page.split('action="/staff/follow-up/')[1].split("/")[0])
    assert (
        client.post(
            f"/staff/follow-up/{task_id}/close",
            data={"outcome": "reached", "note": "will enter tomorrow", "csrf_token": csrf_from(page)},
        ).status_code
        == 302
    )
    closed = client.get("/staff/follow-up?closed=1").get_data(as_text=True)
    assert "1 closed" in closed and "Reached the participant" in closed and "will enter tomorrow" in closed
    assert "2 open" in client.get("/staff/follow-up").get_data(as_text=True)


def test_the_lists_run_the_same_number_of_queries_at_any_size(app, client, study):
    _reports_and_tasks(study, 3)
    login_as(client, "coordinator")
    small = [
        _count_queries(app, client, url)
        for url in ("/staff/side-effects", "/staff/follow-up", "/staff/side-effects?all=1", "/staff/follow-up?closed=1")
    ]
    from diary.models import FollowUpTask, SideEffectReport

    period = db.session.scalars(select(Period)).first()
    now = now_utc()
    for n in range(150):
        db.session.add(
            SideEffectReport(
                period_id=period.id,
                timepoint="D3",
                term="nausea",
                severity="moderate",
                solicited=True,
                reported_at=now,
                alert=False,
                review_state="new",
            )
        )
        db.session.add(
            FollowUpTask(
                participant_id=period.participant_id, rule="silent", key=f"more-{n}", reason="Silent", due_at=now
            )
        )
    db.session.commit()
    large = [
        _count_queries(app, client, url)
        for url in ("/staff/side-effects", "/staff/follow-up", "/staff/side-effects?all=1", "/staff/follow-up?closed=1")
    ]
    assert small == large, (small, large)


# --- The figures snapshot: counted by the scheduler, read by the pages --------------------------


def _grid_view(grid):
    return ([row.participant.code for row in grid.rows], grid.total, grid.pages, grid.by_timepoint, grid.counts)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sort": "compliance"},
        {"sort": "-compliance"},
        {"attention_only": True},
        {"state": "missed"},
        {"state": "out_of_window"},
        {"site": "Bethesda-2"},
        {"site": "NIH-CC", "sort": "compliance", "page": 2},
    ],
)
def test_the_grid_from_the_snapshot_equals_the_grid_counted_now(study, options):
    """Every sort and filter gives the same participants, pages and figures from the scheduler's
    snapshot as counted at the request, with a fixed clock."""
    varied_study(study)
    now = many_participants(study, 70)
    assert refresh(study, now) is not None
    from_snapshot = load_grid(study, now, page_size=20, **options)
    counted_now = load_grid(study, now, page_size=20, live=True, **options)
    assert not from_snapshot.live and from_snapshot.as_of == now and counted_now.live
    assert _grid_view(from_snapshot) == _grid_view(counted_now)
    assert from_snapshot.rows, options


def test_a_stale_snapshot_is_not_shown_and_new_participants_appear_at_once(app, client, study):
    """Figures older than FIGURES_MAX_AGE_SECONDS are counted at the request; a participant
    enrolled since the count is listed; a row is judged at the request even from a snapshot."""
    now = many_participants(study, 3)
    refresh(study, now - timedelta(seconds=app.config["FIGURES_MAX_AGE_SECONDS"] + 5))
    assert load_grid(study, now).live
    refresh(study, now)
    grid = load_grid(study, now)
    assert not grid.live and grid.total == 3
    login_as(client, "coordinator")
    page = client.get("/staff/").get_data(as_text=True)
    assert "Study figures as of" in page and "counted each minute" in page
    counted_before = load_grid(study, now, live=True).counts
    newcomer, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=now - timedelta(days=3), code="P-NEW01"
    )
    record_dose(newcomer, 1, now - timedelta(hours=30), actor="t", now=now)
    db.session.commit()
    grid = load_grid(study, now)
    assert grid.total == 4 and not grid.live
    row = next(row for row in grid.rows if row.participant.code == "P-NEW01")
    # Judged now from its cells: BL and the first hours passed without an entry.
    assert row.missed > 0 and row.needs_attention
    # The study's counts are the snapshot's, which did not know P-NEW01 yet; counted now, they do.
    assert grid.counts == counted_before != load_grid(study, now, live=True).counts
    with_search = load_grid(study, now, search="P-NEW")
    assert with_search.live and with_search.total == 1  # a search is always counted at the request
    # A count from a scheduler whose host clock runs 30 s ahead is used; one from 2 minutes ahead
    # (no clock is that far off; something is wrong) is not.
    refresh(study, now + timedelta(seconds=30))
    assert not load_grid(study, now).live
    refresh(study, now + timedelta(minutes=2))
    assert load_grid(study, now).live


def test_the_summary_from_the_snapshot_equals_the_summary_counted_now(app, client, study):
    from diary.reporting.summary import vas_change_summary, vas_sums

    now = varied_study(study)
    protocol = protocol_of(study.current_protocol_version)
    refresh(study, now)
    from diary.reporting.figures import vas_rows

    assert sorted(vas_rows(study.id)) == sorted(vas_sums(study, protocol, now))
    for split in ("sequence", "dummy_sequence", "pooled", "treatment"):
        assert vas_change_summary(study, protocol, split, now, sums=vas_rows(study.id)) == vas_change_summary(
            study, protocol, split, now
        )
    assert vas_change_summary(study, protocol, "pooled", now), "the demo has VAS changes to summarise"
    login_as(client, "analyst")
    refresh(study, now_utc())
    page = client.get("/staff/summary").get_data(as_text=True)
    assert "Study figures as of" in page


def test_the_grid_from_the_snapshot_runs_the_same_number_of_queries_at_any_size(app, client, study):
    now = many_participants(study, 5)
    refresh(study, now_utc())
    login_as(client, "coordinator")
    small = [
        _count_queries(app, client, url) for url in ("/staff/", "/staff/?sort=compliance&attention=1", "/staff/summary")
    ]
    for number in range(5, 130):
        participant, _ = enroll(
            study,
            site="NIH-CC",
            timezone="UTC",
            sequence="AB",
            actor="t",
            now=now - timedelta(days=10),
            code=f"P-{number:05d}",
        )
        record_dose(participant, 1, now - timedelta(days=3), actor="t", now=now)
    db.session.commit()
    refresh(study, now_utc())
    large = [
        _count_queries(app, client, url) for url in ("/staff/", "/staff/?sort=compliance&attention=1", "/staff/summary")
    ]
    assert small == large, (small, large)
    assert "Study figures as of" in client.get("/staff/").get_data(as_text=True)


def test_the_scheduler_counts_the_figures_each_minute(app, study):
    from diary.reminders.scheduler import build_scheduler, figures_pass

    many_participants(study, 2)
    study_id = study.id
    jobs = {job.id: job for job in build_scheduler(app).get_jobs()}
    assert jobs["figures"].trigger.interval == timedelta(seconds=60)
    db.session.remove()
    figures_pass(app)
    assert fresh(study_id, now_utc()) is not None


def test_counting_the_figures_leaves_sqlite_free_for_writes(app, study, monkeypatch):
    """The scheduler's count runs in a read transaction: while it counts, another connection
    writes at once (no busy wait). It used to run inside the write transaction its first query
    had begun, holding submits off for the whole count."""
    from diary.reporting import adherence
    from diary.reporting.figures import refresh_all

    from .test_scheduler_transactions import write_meanwhile

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock; PostgreSQL writers do not shut each other out")
    many_participants(study, 3)
    path = db.engine.url.database
    written = []
    counting = adherence.count_states

    def count_and_meanwhile_write(*args, **kwargs):
        write_meanwhile(path, written)
        return counting(*args, **kwargs)

    monkeypatch.setattr(adherence, "count_states", count_and_meanwhile_write)
    db.session.scalars(select(Participant)).all()  # the scheduler's session has read already
    results = refresh_all(now_utc())
    assert written == [True]
    assert [snapshot is not None for _, snapshot in results] == [True]


def test_a_new_count_is_written_in_short_batches_beside_the_one_shown(app, study, monkeypatch):
    """The count's rows go in a few at a time, each batch committed, while the pages go on
    showing the previous count; one short transaction then moves the snapshot, and the count
    before that is dropped at the next refresh. On SQLite another connection writes after every
    batch without waiting."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from diary.models import FiguresSnapshot, ParticipantFigures
    from diary.reporting import figures

    from .test_scheduler_transactions import write_meanwhile

    many_participants(study, 12)
    now = now_utc()
    refresh(study, now)
    first = db.session.scalar(select(FiguresSnapshot.generation))
    monkeypatch.setattr(figures, "WRITE_BATCH", 5)
    shown_meanwhile, rows_per_transaction, pending, written = [], [], [0], []

    def watch(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO figures_"):
            pending[0] += len(parameters) if executemany else 1
        if statement.startswith("INSERT INTO figures_participant"):
            # Mid-count: the pages still read the count before, whole.
            total, ids, _page = figures.page_of_participants(
                [Participant.study_id == study.id],
                attention_only=False,
                state_bit=None,
                sort="code",
                page=1,
                page_size=100,
            )
            shown_meanwhile.append((total, len(ids), len(set(ids))))

    def committed(session):
        rows_per_transaction.append(pending[0])
        pending[0] = 0
        if db.engine.dialect.name == "sqlite":
            write_meanwhile(db.engine.url.database, written)

    event.listen(db.engine, "before_cursor_execute", watch)
    event.listen(Session, "after_commit", committed)
    try:
        refresh(study, now + timedelta(minutes=1))
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)
        event.remove(Session, "after_commit", committed)
    assert len(shown_meanwhile) == 3  # 12 participants' rows in batches of 5
    assert set(shown_meanwhile) == {(12, 12, 12)}
    assert sum(rows_per_transaction) >= 12 and max(rows_per_transaction) <= 5
    if db.engine.dialect.name == "sqlite":
        assert written and set(written) == {True}
    second = db.session.scalar(select(FiguresSnapshot.generation))
    assert second > first
    kept = set(db.session.scalars(select(ParticipantFigures.generation)))
    assert kept == {first, second}  # the previous count stays for a page that read it just then
    refresh(study, now + timedelta(minutes=2))
    third = db.session.scalar(select(FiguresSnapshot.generation))
    assert set(db.session.scalars(select(ParticipantFigures.generation))) == {second, third}


def test_the_count_has_more_sort_memory_for_its_own_transaction_only(app, study, monkeypatch):
    """On PostgreSQL the count's read transaction sorts with ``COUNT_WORK_MEM`` (its default would
    spill a large study's sorts to disk); the setting ends with that transaction. SQLite has no
    such setting and the count runs as before."""
    from sqlalchemy import text

    from diary.reporting import adherence, figures

    many_participants(study, 2)
    db.session.commit()
    seen = []
    count_states = adherence.count_states

    def counting(*args, **kwargs):
        if db.session.get_bind().dialect.name == "postgresql":
            seen.append(db.session.scalar(text("SHOW work_mem")))
        return count_states(*args, **kwargs)

    monkeypatch.setattr(adherence, "count_states", counting)
    assert refresh(study, now_utc()) is not None
    if db.session.get_bind().dialect.name != "postgresql":
        return
    assert seen == [figures.COUNT_WORK_MEM]
    db.session.rollback()
    assert db.session.scalar(text("SHOW work_mem")) != figures.COUNT_WORK_MEM
