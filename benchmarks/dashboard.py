"""Dashboard benchmark: the coordinator's pages at 5, 500 and 5,000 participants.

Each participant has 2 dosed periods x 10 time points (100,000 assessments at 5,000), entries
for most passed windows, a few side-effect reports and audit events. For the adherence grid,
the audit page, the summary, the side-effect and follow-up lists it prints the server time
(median of 5 requests in process, after a warm-up), the HTML bytes (uncompressed) and the
number of SQL statements. The study figures are counted first, as the scheduler does each
minute (``figures.refresh``, its time printed as ``figures-refresh``); the adherence grid and
the summary counted at the request (no snapshot, the baseline) are measured too, as
``adherence-live`` and ``summary-live``. It ends with one line per page and size:

    RESULT adherence-5000 ms=212 bytes=98000 queries=6

    .venv/bin/python benchmarks/dashboard.py [--sizes 5 500 5000] [--database URL]
Goal at 5,000: every page under 300 ms and 150 KB, and the same number of queries at every size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = {
    "adherence": "/staff/",
    "adherence-sorted": "/staff/?sort=compliance&attention=1&page=2",
    "adherence-search": "/staff/?q=P-0001",
    "audit": "/staff/audit",
    "summary": "/staff/summary",
    "side-effects": "/staff/side-effects",
    "follow-up": "/staff/follow-up",
}


def generate(app, count: int, now: datetime) -> None:
    """``count`` participants written in bulk, shaped as the diary's own functions shape them."""
    from sqlalchemy import insert

    from diary.extensions import db
    from diary.models import (
        Assessment,
        AuditEvent,
        FollowUpTask,
        ItemValue,
        Participant,
        Period,
        SideEffectReport,
        StaffUser,
        Submission,
    )
    from diary.protocol.schedule import schedule_period
    from diary.study.trial import ensure_study, protocol_of

    rng = random.Random(20191018)
    with app.app_context():
        study, _ = ensure_study()
        version = study.current_protocol_version
        protocol = protocol_of(version)
        db.session.add(
            StaffUser(
                email="bench@site.test",
                password_hash=BENCH_HASH,
                role="coordinator",
                active=True,
                created_at=now,
                session_generation=0,
            )
        )
        people, periods, assessments, submissions, values, reports, events, tasks = [], [], [], [], [], [], [], []
        assessment_id = submission_id = period_id = 0
        for n in range(1, count + 1):
            first = now - timedelta(days=rng.uniform(1, 40))
            people.append(
                {
                    "id": n,
                    "study_id": study.id,
                    "code": f"P-{n:06d}",
                    "site": "NIH-CC" if n % 4 else "Site-2",
                    "timezone": "UTC",
                    "sequence": rng.choice(["AB", "BA"]),
                    "status": "active",
                    "enrolled_at": first - timedelta(days=2),
                    "link_token_hash": f"{n:064d}",
                    "pin_generation": 0,
                    "pin_failed_count": 0,
                    "session_generation": 0,
                }
            )
            for number, start in ((1, first), (2, first + timedelta(days=14))):
                period_id += 1
                dosed = start <= now
                periods.append(
                    {
                        "id": period_id,
                        "participant_id": n,
                        "number": number,
                        "treatment": "A",
                        "dose_start": start if dosed else None,
                        "planned_start": None if dosed else start,
                    }
                )
                for window in schedule_period(protocol, start, "UTC"):
                    assessment_id += 1
                    assessments.append(
                        {
                            "id": assessment_id,
                            "period_id": period_id,
                            "protocol_version_id": version.id,
                            "timepoint": window.timepoint,
                            "target": window.target,
                            "window_open": window.window_open,
                            "window_close": window.window_close,
                            "late_close": window.late_close,
                            "not_applicable": False,
                        }
                    )
                    if window.late_close < now and rng.random() >= 0.9 and len(tasks) < count:
                        tasks.append(
                            {
                                "participant_id": n,
                                "rule": "missed_timepoint",
                                "key": f"m-{assessment_id}",
                                "reason": f"Missed {window.timepoint}",
                                "due_at": window.late_close,
                                "created_at": window.late_close,
                            }
                        )
                    elif window.late_close < now:
                        submission_id += 1
                        at = window.target
                        submissions.append(
                            {
                                "id": submission_id,
                                "assessment_id": assessment_id,
                                "submitted_at": at,
                                "collected_at": at,
                                "source": "participant",
                                "alert": False,
                            }
                        )
                        values.append(
                            {
                                "submission_id": submission_id,
                                "instrument": "fatigue_vas",
                                "item": "fatigue",
                                "value": str(rng.randint(20, 80)),
                            }
                        )
                        if rng.random() < 0.05:
                            reports.append(
                                {
                                    "period_id": period_id,
                                    "submission_id": submission_id,
                                    "timepoint": window.timepoint,
                                    "term": "headache",
                                    "severity": "mild",
                                    "solicited": True,
                                    "reported_at": at,
                                    "alert": False,
                                    "review_state": "new",
                                }
                            )
            for k in range(5):
                events.append(
                    {
                        "at": first + timedelta(hours=k),
                        "actor": "bench",
                        "action": "submit",
                        "entity": "submission",
                        "participant_id": n,
                        "new_value": "fatigue_vas.fatigue=50",
                    }
                )
        for model, rows in (
            (Participant, people),
            (Period, periods),
            (Assessment, assessments),
            (Submission, submissions),
            (ItemValue, values),
            (SideEffectReport, reports),
            (AuditEvent, events),
            (FollowUpTask, tasks),
        ):
            for index in range(0, len(rows), 20000):
                if rows[index : index + 20000]:
                    db.session.execute(insert(model), rows[index : index + 20000])
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # A trial's database has planner statistics (autovacuum keeps them); freshly
            # bulk-loaded tables have none until autovacuum comes round, and plans without them
            # are not what a site would see.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("ANALYZE")


BENCH_HASH = ""


def measure(app, size: int) -> dict:
    """The pages from the scheduler's snapshot, then the two counted at the request."""
    from diary.extensions import db
    from diary.models import FiguresSnapshot, now_utc
    from diary.reporting.figures import refresh
    from diary.study.trial import require_study

    with app.app_context():
        durations = []
        for _ in range(3):
            started = time.perf_counter()
            refresh(require_study(), now_utc())
            durations.append((time.perf_counter() - started) * 1000)
    results = {"figures-refresh": {"ms": statistics.median(durations), "bytes": 0, "queries": 0}}
    results.update(measure_pages(app, PAGES))
    with app.app_context():
        # The baseline: no snapshot, so the pages count every assessment at the request.
        db.session.execute(FiguresSnapshot.__table__.delete())
        db.session.commit()
    live = measure_pages(app, {"adherence-live": PAGES["adherence"], "summary-live": PAGES["summary"]})
    results.update(live)
    return results


def measure_pages(app, pages: dict) -> dict:
    from sqlalchemy import event

    from diary.extensions import db

    client = app.test_client()
    page = client.get("/staff/login").get_data(as_text=True)
    import re

    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert (
        client.post(
            "/staff/login", data={"email": "bench@site.test", "password": "bench password 1", "csrf_token": csrf}
        ).status_code
        == 302
    )
    with app.app_context():
        engine = db.engine
    results = {}
    for name, url in pages.items():
        statements = []
        listener = lambda *args, statements=statements: statements.append(1)  # noqa: E731
        client.get(url)  # warm-up (templates compiled, protocol parsed)
        event.listen(engine, "before_cursor_execute", listener)
        response = client.get(url)
        event.remove(engine, "before_cursor_execute", listener)
        assert response.status_code == 200, (url, response.status_code)
        durations = []
        for _ in range(5):
            started = time.perf_counter()
            client.get(url)
            durations.append((time.perf_counter() - started) * 1000)
        results[name] = {"ms": statistics.median(durations), "bytes": len(response.data), "queries": len(statements)}
    return results


def main() -> None:
    global BENCH_HASH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 500, 5000])
    parser.add_argument("--database", default="", help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    from diary import create_app
    from diary.extensions import db
    from diary.governance.passwords import hash_secret

    BENCH_HASH = hash_secret("bench password 1")
    now = datetime.now(UTC)
    lines = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="diary-dash-") as folder:
            url = args.database or f"sqlite:///{folder}/dash.sqlite"
            app = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": url,
                    "SECRET_KEY": "bench",
                    "TESTING": True,
                    "WTF_CSRF_ENABLED": True,
                    "BASE_URL": "http://bench.test",
                }
            )
            with app.app_context():
                if args.database:
                    db.drop_all()
                db.create_all()
            started = time.perf_counter()
            generate(app, size, now)
            built = time.perf_counter() - started
            results = measure(app, size)
            print(f"{size} participants (built in {built:.1f} s):")
            for name, figures in results.items():
                print(f"  {name:18} {figures['ms']:7.1f} ms  {figures['bytes']:>8} bytes  {figures['queries']} queries")
                lines.append(
                    f"RESULT {name}-{size} ms={figures['ms']:.0f} bytes={figures['bytes']} queries={figures['queries']}"
                )
            for page in ("adherence", "summary"):
                ratio = results[page]["ms"] / max(results[f"{page}-live"]["ms"], 0.001)
                print(f"  {page} from the snapshot: {ratio:.2f}x the time counted at the request")
                lines.append(f"RESULT {page}-snapshot-{size} ratio={ratio:.2f}")
            with app.app_context():
                db.session.remove()
                if args.database:
                    db.drop_all()
                db.engine.dispose()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
