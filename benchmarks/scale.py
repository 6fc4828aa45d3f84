"""Scale benchmark: the scheduler's pass, the figures count, the coordinator's pages and the
export at 5,000 and 50,000 participants (PostgreSQL by default).

The study is written in bulk through the models' tables with the state mix of a running trial:
infusions spread over the last 45 days (one in ten participants not yet dosed, with a planned
start), two periods of the shipped protocol's ten time points, 85% of passed entries made (with
every item of the shipped protocol's instruments), 40% of open ones, withdrawals (their
remaining entries not applicable), side effects (some severe, reviewed), e-mail for most, and
the audit trail the diary's own functions would have written (enrolment, infusions, entries).

Each measurement runs in a child process of its own, so its peak memory (VmHWM) is its own:

- ``first-pass``: the first dispatch pass, which judges everyone (the hourly net costs this);
- ``steady-pass``: the next pass, with nothing new but the minute that went by;
- ``entries-pass``: a pass after 1,000 new entries made through the diary's own functions;
- ``figures``: the study figures count (``reporting/figures.py``);
- the coordinator's pages (ms in process, bytes, statements), read from that count;
- ``export``: the CSV bundle (``--export-sizes``, 5,000 by default).

Ends with ``RESULT`` lines, and the growth factor from the smallest to the largest size:

    RESULT steady-pass-50000 s=0.41 mb=143
    RESULT growth steady-pass x=1.3 (5000 -> 50000)

    .venv/bin/python benchmarks/scale.py [--sizes 5000 50000] [--export-sizes 5000] [--database URL]
Goal (issue 32): at 50,000 on PostgreSQL a steady pass under 2 s and 300 MB; a pass with 1,000
new entries under 5 s; the build under 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PG_ADMIN = os.environ.get("DIARY_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DATABASE = "diary_bench_scale"
PASSWORD = "bench password 1"


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: its own, not a parent's high-water mark)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_app(url: str):
    from diary import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench",
            "TESTING": True,
            "WTF_CSRF_ENABLED": True,
            "BASE_URL": "http://bench.test",
            "SMTP_HOST": "",
        }
    )


def _answers(protocol, code: str, rng: random.Random) -> list[tuple[str, str, str]]:
    """(instrument, item, value) for every item time point ``code`` asks, as a form fills them."""
    values = []
    for instrument in protocol.instruments_for(protocol.timepoint(code)):
        for item in instrument.items:
            if item.type == "vas":
                values.append((instrument.id, item.id, str(rng.randint(10, 90))))
            elif item.type == "nrs":
                values.append((instrument.id, item.id, str(rng.randint(0, 10))))
            elif item.type == "single_choice":
                values.append((instrument.id, item.id, rng.choice(item.choices).code))
            elif item.type == "severity_checklist":
                for term in item.terms:
                    values.append((instrument.id, f"{item.id}.{term.code}", "none"))
    return values


def _form(protocol, code: str, rng: random.Random) -> dict:
    """The same answers as a participant's form sends them (a touched slider says so)."""
    form = {}
    vas = {
        f"{instrument.id}.{item.id}"
        for instrument in protocol.instruments_for(protocol.timepoint(code))
        for item in instrument.items
        if item.type == "vas"
    }
    for instrument, item, value in _answers(protocol, code, rng):
        form[f"{instrument}.{item}"] = value
        if f"{instrument}.{item}" in vas:
            form[f"{instrument}.{item}.touched"] = "1"
    return form


def generate(app, count: int, now: datetime, rng: random.Random) -> dict:
    """``count`` participants in bulk, shaped as the diary's own functions shape them."""
    from sqlalchemy import insert

    from diary.extensions import db
    from diary.governance.passwords import hash_secret
    from diary.models import (
        Assessment,
        AuditEvent,
        ItemValue,
        Participant,
        Period,
        SideEffectReport,
        StaffUser,
        Submission,
    )
    from diary.protocol.schedule import schedule_period
    from diary.study.trial import ensure_study, protocol_of

    with app.app_context():
        study, _ = ensure_study()
        version = study.current_protocol_version
        protocol = protocol_of(version)
        db.session.add(
            StaffUser(
                email="bench@site.test",
                password_hash=hash_secret(PASSWORD),
                role="coordinator",
                active=True,
                created_at=now,
                session_generation=0,
            )
        )
        db.session.commit()
        tables = {model: [] for model in (Participant, Period, Assessment, Submission, ItemValue, SideEffectReport)}
        events = []
        ids = {"period": 0, "assessment": 0, "submission": 0}
        written = {}

        def flush(final=False):
            # All tables at once, parents first, when any has grown large (foreign keys).
            if not final and max(len(rows) for rows in (*tables.values(), events)) < 20000:
                return
            for model, rows in (*tables.items(), (AuditEvent, events)):
                if rows:
                    db.session.execute(insert(model), rows)
                    written[model.__tablename__] = written.get(model.__tablename__, 0) + len(rows)
                    rows.clear()

        for n in range(1, count + 1):
            dosed_at = now - timedelta(days=rng.uniform(0, 45))
            not_yet = rng.random() < 0.1
            first = now + timedelta(days=rng.uniform(1, 10)) if not_yet else dosed_at
            enrolled = min(first, now) - timedelta(days=rng.uniform(1, 5))
            withdrawn = not not_yet and rng.random() < 0.05
            withdrawn_at = first + timedelta(days=rng.uniform(1, 10)) if withdrawn else None
            if withdrawn_at is not None and withdrawn_at > now:
                withdrawn, withdrawn_at = False, None
            code = f"P-{n:06d}"
            tables[Participant].append(
                {
                    "id": n,
                    "study_id": study.id,
                    "code": code,
                    "site": "NIH-CC" if n % 4 else "Site-2",
                    "timezone": rng.choice(["America/New_York", "America/Chicago", "UTC", "Europe/Madrid"]),
                    "sequence": rng.choice(["AB", "BA"]),
                    "status": "withdrawn" if withdrawn else "active",
                    "enrolled_at": enrolled,
                    "email": f"p{n}@example.org" if rng.random() < 0.85 else None,
                    "email_reminders": True,
                    "link_token_hash": f"{n:064d}",
                    "pin_generation": 0,
                    "pin_failed_count": 0,
                    "session_generation": 0,
                }
            )
            events.append(
                {
                    "at": enrolled,
                    "actor": "coordinator",
                    "action": "enroll",
                    "entity": "participant",
                    "entity_id": n,
                    "participant_id": n,
                    "new_value": code,
                }
            )
            if withdrawn:
                events.append(
                    {
                        "at": withdrawn_at,
                        "actor": "coordinator",
                        "action": "withdraw",
                        "entity": "participant",
                        "entity_id": n,
                        "participant_id": n,
                        "reason": "moved away",
                    }
                )
            for number, start in ((1, first), (2, first + timedelta(days=14))):
                ids["period"] += 1
                dosed = start <= now and not (withdrawn and start > withdrawn_at)
                tables[Period].append(
                    {
                        "id": ids["period"],
                        "participant_id": n,
                        "number": number,
                        "treatment": "A",
                        "dose_start": start if dosed else None,
                        "planned_start": None if dosed else start,
                    }
                )
                if dosed:
                    events.append(
                        {
                            "at": start + timedelta(minutes=20),
                            "actor": "coordinator",
                            "action": "record_dose",
                            "entity": "period",
                            "entity_id": ids["period"],
                            "participant_id": n,
                            "new_value": start.isoformat(),
                        }
                    )
                for window in schedule_period(protocol, start, "UTC"):
                    ids["assessment"] += 1
                    gone = withdrawn and window.window_open > withdrawn_at
                    tables[Assessment].append(
                        {
                            "id": ids["assessment"],
                            "period_id": ids["period"],
                            "protocol_version_id": version.id,
                            "timepoint": window.timepoint,
                            "target": window.target,
                            "window_open": window.window_open,
                            "window_close": window.window_close,
                            "late_close": window.late_close,
                            "not_applicable": gone,
                        }
                    )
                    if gone or not dosed or window.window_open > now:
                        continue
                    made = rng.random() < (0.85 if window.late_close < now else 0.4)
                    if not made:
                        continue
                    ids["submission"] += 1
                    at = min(window.window_open + (window.window_close - window.window_open) * rng.random() * 0.5, now)
                    tables[Submission].append(
                        {
                            "id": ids["submission"],
                            "assessment_id": ids["assessment"],
                            "submitted_at": at,
                            "collected_at": at,
                            "source": "participant",
                            "alert": False,
                        }
                    )
                    tables[ItemValue].extend(
                        {"submission_id": ids["submission"], "instrument": i, "item": item, "value": v}
                        for i, item, v in _answers(protocol, window.timepoint, rng)
                    )
                    events.append(
                        {
                            "at": at,
                            "actor": f"participant:{code}",
                            "action": "submit",
                            "entity": "submission",
                            "entity_id": ids["submission"],
                            "participant_id": n,
                            "new_value": window.timepoint,
                        }
                    )
                    if rng.random() < 0.04:
                        severe = rng.random() < 0.08
                        tables[SideEffectReport].append(
                            {
                                "period_id": ids["period"],
                                "submission_id": ids["submission"],
                                "timepoint": window.timepoint,
                                "term": rng.choice(["headache", "dizziness", "nausea"]),
                                "severity": "severe" if severe else "mild",
                                "solicited": True,
                                "reported_at": at,
                                "alert": severe,
                                "review_state": "reviewed" if severe else "new",
                                "acknowledged_at": at + timedelta(hours=2) if severe else None,
                            }
                        )
            flush()
        flush(final=True)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as connection:
                for table in ("participant", "period", "assessment", "submission"):  # ids given above
                    connection.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
            # A trial's database has planner statistics (autovacuum keeps them).
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("ANALYZE")
        db.engine.dispose()
    return written


# --- Child processes: one measurement each -------------------------------------------------------


def _pass(url: str) -> dict:
    from diary.extensions import db
    from diary.reminders.dispatch import run_pass

    app = make_app(url)
    with app.app_context():
        statements = _count_statements(db.engine)
        writes = _write_transactions(db.engine)
        started = time.perf_counter()
        result = run_pass(app)
        seconds = time.perf_counter() - started
    return {
        "s": seconds,
        "mb": peak_rss_mb(),
        "queries": statements[0],
        "longest_write_ms": round(max(writes, default=0) * 1000),
        "planned": result.planned,
        "tasks": result.follow_up_tasks,
    }


def _count_statements(engine) -> list[int]:
    from sqlalchemy import event

    count = [0]

    def counted(*args, **kwargs):
        count[0] += 1

    event.listen(engine, "before_cursor_execute", counted)
    return count


def _write_transactions(engine) -> list[float]:
    """How long each write transaction lasts (on SQLite, how long it holds the one write lock
    a participant's submit needs): from its BEGIN to its commit or rollback."""
    from sqlalchemy import event

    from diary.database import READ_ONLY

    spans, started = [], {}

    @event.listens_for(engine, "begin")
    def begin(connection):
        options = connection.get_execution_options()
        if not (options.get("diary_readonly") or READ_ONLY.get() or options.get("isolation_level") == "AUTOCOMMIT"):
            started[id(connection)] = time.perf_counter()

    def end(connection):
        if id(connection) in started:
            spans.append(time.perf_counter() - started.pop(id(connection)))

    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)
    return spans


def child_first_pass(url: str) -> dict:
    return _pass(url)


def child_steady_pass(url: str) -> dict:
    return _pass(url)


def child_entries_pass(url: str) -> dict:
    """1,000 entries made through the diary's own function (each audited), then a pass."""
    from sqlalchemy import select

    from diary.entries.recording import record_submission
    from diary.errors import Refused
    from diary.extensions import db
    from diary.models import Assessment, Participant, Period, Submission, now_utc
    from diary.study.trial import protocol_of, require_study

    app = make_app(url)
    rng = random.Random(5)
    with app.app_context():
        now = now_utc()
        protocol = protocol_of(require_study().current_protocol_version)
        open_ones = db.session.scalars(
            select(Assessment)
            .join(Period, Assessment.period_id == Period.id)
            .join(Participant, Period.participant_id == Participant.id)
            .outerjoin(Submission, Submission.assessment_id == Assessment.id)
            .where(
                Assessment.window_open <= now,
                Assessment.window_close > now + timedelta(minutes=10),
                Assessment.not_applicable.is_(False),
                Period.dose_start.is_not(None),
                Submission.id.is_(None),
                Participant.status == "active",
            )
            .limit(1000)
        ).all()
        made = 0
        for assessment in open_ones:
            try:
                record_submission(assessment, _form(protocol, assessment.timepoint, rng), now=now_utc(), actor="bench")
            except Refused:  # its window closed while the others were made (refused before any write)
                continue
            db.session.commit()  # each entry its own transaction, as a participant's submit is
            made += 1
        db.session.commit()
        db.session.remove()
    figures = _pass(url)
    figures["entries"] = made
    return figures


def child_figures(url: str) -> dict:
    from diary.extensions import db
    from diary.models import now_utc
    from diary.reporting.figures import refresh
    from diary.study.trial import require_study

    app = make_app(url)
    with app.app_context():
        writes = _write_transactions(db.engine)
        started = time.perf_counter()
        refresh(require_study(), now_utc())
        seconds = time.perf_counter() - started
    return {"s": seconds, "mb": peak_rss_mb(), "longest_write_ms": round(max(writes, default=0) * 1000)}


def child_pages(url: str) -> dict:
    from dashboard import PAGES, measure_pages

    return {"pages": measure_pages(make_app(url), PAGES), "mb": peak_rss_mb()}


def child_export(url: str) -> dict:
    from diary.exports import write_bundle
    from diary.models import now_utc
    from diary.study.trial import require_study

    app = make_app(url)
    with tempfile.TemporaryDirectory(prefix="diary-scale-export-") as out, app.app_context():
        started = time.perf_counter()
        manifest = write_bundle(Path(out), study=require_study(), now=now_utc(), fmt="csv")
        seconds = time.perf_counter() - started
    rows = sum((entry.get("rows") or 0) for entry in manifest["files"].values() if isinstance(entry, dict))
    return {"s": seconds, "mb": peak_rss_mb(), "rows": rows}


CHILDREN = {
    "first-pass": child_first_pass,
    "steady-pass": child_steady_pass,
    "entries-pass": child_entries_pass,
    "figures": child_figures,
    "pages": child_pages,
    "export": child_export,
}


def child(name: str, url: str) -> dict:
    finished = subprocess.run(
        [sys.executable, __file__, "--child", name, "--database", url], capture_output=True, text=True, timeout=3600
    )
    if finished.returncode != 0:
        raise SystemExit(f"{name} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def fresh_database(url: str | None, folder: Path) -> str:
    if url:
        return url
    import psycopg

    with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DATABASE}")
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{DATABASE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--export-sizes", type=int, nargs="*", default=[5000])
    parser.add_argument("--database", default="", help="default: a new PostgreSQL database; 'sqlite' for a file")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.database)))
        return

    from diary.extensions import db

    lines, by_size = [], {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="diary-scale-") as folder:
            url = (
                f"sqlite:///{folder}/scale.sqlite"
                if args.database == "sqlite"
                else fresh_database(args.database or None, Path(folder))
            )
            app = make_app(url)
            with app.app_context():
                if args.database and args.database != "sqlite":
                    db.drop_all()
                db.create_all()
                db.engine.dispose()
            started = time.perf_counter()
            written = generate(app, size, datetime.now(UTC), random.Random(size))
            built = time.perf_counter() - started
            print(f"{size} participants built in {built:.0f} s: " + ", ".join(f"{v:,} {k}" for k, v in written.items()))
            lines.append(f"RESULT build-{size} s={built:.0f}")
            figures = {}
            for name in ("first-pass", "steady-pass", "entries-pass", "figures"):
                figures[name] = child(name, url)
                extra = " ".join(f"{key}={value}" for key, value in figures[name].items() if key not in ("s", "mb"))
                print(f"  {name:13} {figures[name]['s']:7.2f} s  {figures[name]['mb']:6.0f} MB  {extra}")
                lines.append(
                    f"RESULT {name}-{size} s={figures[name]['s']:.2f} mb={figures[name]['mb']:.0f}"
                    f" longest_write_ms={figures[name]['longest_write_ms']}"
                )
            pages = child("pages", url)["pages"]
            for page, result in pages.items():
                print(
                    f"  page {page:16} {result['ms']:7.1f} ms  {result['bytes']:>8} bytes  {result['queries']} queries"
                )
                lines.append(
                    f"RESULT page-{page}-{size} ms={result['ms']:.0f} bytes={result['bytes']} queries={result['queries']}"
                )
                figures[f"page-{page}"] = {"s": result["ms"] / 1000}
            if size in args.export_sizes:
                figures["export"] = child("export", url)
                print(f"  export (CSV)  {figures['export']['s']:7.2f} s  {figures['export']['mb']:6.0f} MB")
                lines.append(f"RESULT export-{size} s={figures['export']['s']:.2f} mb={figures['export']['mb']:.0f}")
            by_size[size] = figures
            if not args.database:
                import psycopg

                with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
                    c.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    if len(by_size) > 1:
        small, large = min(by_size), max(by_size)
        for name in by_size[small]:
            if name in by_size[large] and by_size[small][name]["s"] > 0:
                growth = by_size[large][name]["s"] / by_size[small][name]["s"]
                lines.append(f"RESULT growth {name} x={growth:.1f} ({small} -> {large})")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
