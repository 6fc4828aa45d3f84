"""Export benchmark: a generated study of N participants x 2 periods x 10 time points in SQLite.

The study has the shipped protocol's items at every entry and the audit trail the diary's own
functions write (enrolment, each infusion, each entry with its answers). Measures the CSV export
(the whole bundle) in a process of its own: wall time and peak memory. The baseline, in the same
run and its own process, writes the four big tables (responses, assessments, side effects, the
audit trail) and the derived ones (the endpoints, the time course, adherence, participants) with
one SQL query each and pyarrow.csv.write_csv. Prints both and their ratio.

    .venv/bin/python benchmarks/export.py [--participants 1000] [--extra-items 0]

``--extra-items N`` adds an N-item stand-in for a licensed multi-item scale at every time
point (numbers only; no licensed wording), for studies with long questionnaires.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def benchmark_protocol_text(extra_items: int) -> str:
    """The shipped protocol, plus (``extra_items``) a multi-item scale at every time point."""
    import yaml

    from diary.protocol import shipped_protocol_path

    data = yaml.safe_load(shipped_protocol_path("ketamine-fatigue-crossover").read_text())
    data["version"] = "bench"
    if not extra_items:
        return yaml.safe_dump(data, sort_keys=False)
    # The shipped protocol declares English and Spanish, so the stand-in carries both.
    data["instruments"]["multi_item_scale"] = {
        "title": {"en": "Multi-item scale (benchmark stand-in)", "es": "Escala de varios ítems (sustituto)"},
        "items": [
            {
                "id": f"q{n:02d}",
                "type": "nrs",
                "text": {"en": f"Item {n}", "es": f"Ítem {n}"},
                "min_label": {"en": "Not at all", "es": "Nada"},
                "max_label": {"en": "Very much", "es": "Mucho"},
            }
            for n in range(1, extra_items + 1)
        ],
    }
    for timepoint in data["timepoints"]:
        timepoint["instruments"].append("multi_item_scale")
    return yaml.safe_dump(data, sort_keys=False)


def generate(db_path: Path, participants: int, extra_items: int = 0, seed: int = 7) -> dict:
    """Fill a fresh SQLite file with a study, using bulk inserts (the app's own schema)."""
    from sqlalchemy import insert

    from diary import create_app
    from diary.extensions import db
    from diary.models import (
        Assessment,
        AuditEvent,
        ItemValue,
        Participant,
        Period,
        ProtocolVersion,
        SideEffectReport,
        Study,
        Submission,
    )
    from diary.protocol import parse_protocol, protocol_sha256
    from diary.protocol.schedule import schedule_period

    text = benchmark_protocol_text(extra_items)
    protocol = parse_protocol(text)
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}", "SECRET_KEY": "bench", "TESTING": True})
    rng = random.Random(seed)
    counts = {"participants": participants, "assessments": 0, "submissions": 0, "item_values": 0}
    with app.app_context():
        db.create_all()
        study = Study(slug="bench", name="benchmark study")
        db.session.add(study)
        db.session.flush()
        version = ProtocolVersion(
            study_id=study.id, protocol_id=protocol.id, version="bench", source_text=text, sha256=protocol_sha256(text)
        )
        db.session.add(version)
        db.session.flush()
        start = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
        people, periods, assessments, submissions, values, reports, events = [], [], [], [], [], [], []
        period_id = assessment_id = submission_id = 0
        for number in range(1, participants + 1):
            sequence = "AB" if number % 2 else "BA"
            people.append(
                {
                    "id": number,
                    "study_id": study.id,
                    "code": f"P-{number:06d}",
                    "site": "NIH-CC",
                    "timezone": "America/New_York",
                    "sequence": sequence,
                    "status": "active",
                    "enrolled_at": start,
                    "pin_generation": 0,
                    "pin_failed_count": 0,
                }
            )
            code = f"P-{number:06d}"
            events.append(
                {
                    "at": start,
                    "actor": "coordinator@site.test",
                    "action": "enroll",
                    "entity": "participant",
                    "entity_id": number,
                    "participant_id": number,
                    "new_value": code,
                }
            )
            first = start + timedelta(days=number % 60)
            for period_number, dose in ((1, first), (2, first + timedelta(days=14))):
                period_id += 1
                periods.append(
                    {
                        "id": period_id,
                        "participant_id": number,
                        "number": period_number,
                        "treatment": sequence[period_number - 1],
                        "dose_start": dose,
                        "dose_recorded_at": dose,
                    }
                )
                events.append(
                    {
                        "at": dose + timedelta(minutes=20),
                        "actor": "coordinator@site.test",
                        "action": "record_dose",
                        "entity": "period",
                        "entity_id": period_id,
                        "participant_id": number,
                        "field": f"period {period_number} dose_start",
                        "new_value": dose.isoformat(),
                    }
                )
                baseline = rng.randint(40, 85)
                for window in schedule_period(protocol, dose, "America/New_York"):
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
                    if rng.random() < 0.05:
                        continue  # missed
                    submission_id += 1
                    at = window.target + timedelta(minutes=rng.randint(-5, 5))
                    at = min(max(at, window.window_open), window.window_close - timedelta(minutes=1))
                    submissions.append(
                        {
                            "id": submission_id,
                            "assessment_id": assessment_id,
                            "submitted_at": at,
                            "collected_at": at,
                            "source": "participant",
                            "alert": False,
                            "idempotency_key": f"k{submission_id}",
                        }
                    )
                    first_value = len(values)
                    for instrument in protocol.instruments_for(protocol.timepoint(window.timepoint)):
                        for item in instrument.items:
                            if item.type == "vas":
                                value = str(max(0, min(100, baseline + rng.randint(-25, 10))))
                            elif item.type == "nrs":
                                value = str(rng.randint(0, 10))
                            elif item.type == "single_choice":
                                value = rng.choice(item.choices).code
                            elif item.type == "severity_checklist":
                                for term in item.terms:
                                    severity = "mild" if rng.random() < 0.05 else "none"
                                    values.append(
                                        {
                                            "submission_id": submission_id,
                                            "instrument": instrument.id,
                                            "item": f"{item.id}.{term.code}",
                                            "value": severity,
                                        }
                                    )
                                    if severity != "none":
                                        reports.append(
                                            {
                                                "period_id": period_id,
                                                "submission_id": submission_id,
                                                "timepoint": window.timepoint,
                                                "term": term.code,
                                                "severity": severity,
                                                "solicited": True,
                                                "reported_at": at,
                                                "alert": False,
                                            }
                                        )
                                continue
                            else:
                                continue
                            values.append(
                                {
                                    "submission_id": submission_id,
                                    "instrument": instrument.id,
                                    "item": item.id,
                                    "value": value,
                                }
                            )
                    # The entry's audit event carries its answers, as the diary writes it.
                    events.append(
                        {
                            "at": at,
                            "actor": f"participant:{code}",
                            "action": "submit",
                            "entity": "submission",
                            "entity_id": submission_id,
                            "participant_id": number,
                            "field": f"period {period_number} {window.timepoint}",
                            "new_value": "; ".join(
                                f"{v['instrument']}.{v['item']}={v['value']}" for v in values[first_value:]
                            ),
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
        ):
            for index in range(0, len(rows), 20000):
                db.session.execute(insert(model), rows[index : index + 20000])
        db.session.commit()
        counts.update(
            assessments=len(assessments),
            submissions=len(submissions),
            item_values=len(values),
            audit_events=len(events),
        )
        db.engine.dispose()
    return counts


def peak_rss_mb() -> float:
    """Peak resident memory of this program. Not ru_maxrss: after fork and exec that still
    carries the parent's high-water mark; VmHWM belongs to this address space alone."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_export(db_path: str, out: str, standards: bool = False) -> None:
    """Child process: the app's CSV export of the whole bundle (with the exchange formats when
    ``standards``)."""
    from diary import create_app
    from diary.exports import write_bundle
    from diary.models import now_utc
    from diary.study.trial import require_study

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}", "SECRET_KEY": "bench", "TESTING": True})
    times = {}
    with app.app_context():
        started = time.perf_counter()
        last = [started]

        def progress(table, rows):
            now = time.perf_counter()
            times[table] = times.get(table, 0.0) + (now - last[0])
            last[0] = now

        manifest = write_bundle(
            Path(out), study=require_study(), now=now_utc(), fmt="csv", progress=progress, standards=standards
        )
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "max_rss_mb": peak_rss_mb(),
                "rows": {k: v["rows"] for k, v in manifest["files"].items()},
                "seconds_by_table": times,
            }
        )
    )


# One query per big table of the bundle, each the rows and columns the export writes for it.
BASELINE_SQL = {
    "responses": """
SELECT p.code AS participant_id, p.sequence, pe.number AS period, pe.treatment, a.timepoint,
       iv.instrument, iv.item, iv.value,
       strftime('%Y-%m-%dT%H:%M:%SZ', s.submitted_at) AS submitted_utc,
       round((julianday(s.collected_at) - julianday(pe.dose_start)) * 1440, 1) AS minutes_from_dose,
       s.source
FROM participant p JOIN period pe ON pe.participant_id = p.id JOIN assessment a ON a.period_id = pe.id
JOIN submission s ON s.assessment_id = a.id JOIN item_value iv ON iv.submission_id = s.id
WHERE iv.instrument != 'side_effects'
ORDER BY p.code, pe.number, a.target, iv.id
""",
    "assessments": """
SELECT p.code AS participant_id, p.site, p.sequence, pe.number AS period, pe.treatment,
       strftime('%Y-%m-%dT%H:%M:%SZ', pe.dose_start) AS dose_start_utc, a.timepoint,
       strftime('%Y-%m-%dT%H:%M:%SZ', a.window_open) AS window_open_utc,
       strftime('%Y-%m-%dT%H:%M:%SZ', a.window_close) AS window_close_utc,
       CASE WHEN s.id IS NULL THEN 'missed' ELSE 'completed' END AS status,
       strftime('%Y-%m-%dT%H:%M:%SZ', s.submitted_at) AS submitted_utc,
       round((julianday(s.collected_at) - julianday(pe.dose_start)) * 1440, 1) AS minutes_from_dose,
       s.source
FROM participant p JOIN period pe ON pe.participant_id = p.id JOIN assessment a ON a.period_id = pe.id
LEFT JOIN submission s ON s.assessment_id = a.id
ORDER BY p.code, pe.number, a.target
""",
    "side_effects": """
SELECT p.code AS participant_id, pe.number AS period, pe.treatment, r.timepoint, r.term, r.severity,
       strftime('%Y-%m-%dT%H:%M:%SZ', r.reported_at) AS reported_utc, r.solicited, r.review_state
FROM side_effect_report r JOIN period pe ON pe.id = r.period_id JOIN participant p ON p.id = pe.participant_id
ORDER BY p.code, pe.number, r.reported_at, r.id
""",
    # The endpoint tables: the same rows (every dosed period; each of its time points, all of
    # which ask the fatigue VAS in the shipped protocol), the measure, its baseline, its changes
    # and hours from the dose at the protocol's time points. The area under the curve is the one
    # column the export computes that this query does not (a trapezoid per period in Python).
    "fatigue_endpoints": """
SELECT p.code AS participant_id, p.sequence, pe.number AS period, pe.treatment,
       MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END) AS baseline_vas,
       MAX(CASE WHEN a.timepoint = 'D1' THEN CAST(iv.value AS INTEGER) END) AS vas_d1,
       MAX(CASE WHEN a.timepoint = 'D3' THEN CAST(iv.value AS INTEGER) END) AS vas_d3,
       MAX(CASE WHEN a.timepoint = 'D7' THEN CAST(iv.value AS INTEGER) END) AS vas_d7,
       round(100.0 * (MAX(CASE WHEN a.timepoint = 'D1' THEN CAST(iv.value AS INTEGER) END)
             - MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END))
             / NULLIF(MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END), 0), 2) AS pct_change_d1,
       round(100.0 * (MAX(CASE WHEN a.timepoint = 'D3' THEN CAST(iv.value AS INTEGER) END)
             - MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END))
             / NULLIF(MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END), 0), 2) AS pct_change_d3,
       round(100.0 * (MAX(CASE WHEN a.timepoint = 'D7' THEN CAST(iv.value AS INTEGER) END)
             - MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END))
             / NULLIF(MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END), 0), 2) AS pct_change_d7,
       MAX(CASE WHEN a.timepoint = 'D1' THEN round((julianday(s.collected_at) - julianday(pe.dose_start)) * 24, 2) END) AS hours_d1,
       MAX(CASE WHEN a.timepoint = 'D3' THEN round((julianday(s.collected_at) - julianday(pe.dose_start)) * 24, 2) END) AS hours_d3,
       MAX(CASE WHEN a.timepoint = 'D7' THEN round((julianday(s.collected_at) - julianday(pe.dose_start)) * 24, 2) END) AS hours_d7,
       COUNT(iv.value) AS n_points,
       strftime('%Y-%m-%dT%H:%M:%SZ', p.code_broken_at) AS code_broken_utc
FROM participant p JOIN period pe ON pe.participant_id = p.id JOIN assessment a ON a.period_id = pe.id
LEFT JOIN submission s ON s.assessment_id = a.id
LEFT JOIN item_value iv ON iv.submission_id = s.id AND iv.instrument = 'fatigue_vas' AND iv.item = 'fatigue'
WHERE pe.dose_start IS NOT NULL
GROUP BY pe.id
ORDER BY p.code, pe.number
""",
    "fatigue_timecourse": """
SELECT p.code AS participant_id, p.sequence, pe.number AS period, pe.treatment, a.timepoint,
       MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END) OVER (PARTITION BY pe.id) AS baseline,
       CAST(iv.value AS INTEGER) AS value,
       round(100.0 * (CAST(iv.value AS INTEGER)
             - MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END) OVER (PARTITION BY pe.id))
             / NULLIF(MAX(CASE WHEN a.timepoint = 'BL' THEN CAST(iv.value AS INTEGER) END) OVER (PARTITION BY pe.id), 0), 2)
             AS pct_change,
       round((julianday(s.collected_at) - julianday(pe.dose_start)) * 24, 2) AS hours_from_dose,
       CASE WHEN s.id IS NULL THEN 'missed' ELSE 'completed' END AS status, s.source
FROM participant p JOIN period pe ON pe.participant_id = p.id JOIN assessment a ON a.period_id = pe.id
LEFT JOIN submission s ON s.assessment_id = a.id
LEFT JOIN item_value iv ON iv.submission_id = s.id AND iv.instrument = 'fatigue_vas' AND iv.item = 'fatigue'
WHERE pe.dose_start IS NOT NULL
ORDER BY p.code, pe.number, a.target
""",
    "adherence": """
SELECT p.code AS participant_id, pe.number AS period, COUNT(*) AS scheduled,
       SUM(s.collected_at < a.window_close) AS completed,
       SUM(s.collected_at >= a.window_close) AS completed_late,
       SUM(s.id IS NULL) AS missed,
       round(100.0 * COUNT(s.id) / COUNT(*), 1) AS compliance_pct
FROM participant p JOIN period pe ON pe.participant_id = p.id JOIN assessment a ON a.period_id = pe.id
LEFT JOIN submission s ON s.assessment_id = a.id
GROUP BY pe.id
ORDER BY p.code, pe.number
""",
    "participants": """
SELECT p.code AS participant_id, p.site, p.timezone, p.sequence,
       strftime('%Y-%m-%dT%H:%M:%SZ', p.enrolled_at) AS enrolled_utc, p.status,
       strftime('%Y-%m-%dT%H:%M:%SZ', p.withdrawn_at) AS withdrawn_utc, p.withdrawal_reason,
       (SELECT COUNT(*) FROM period pe WHERE pe.participant_id = p.id AND pe.dose_start IS NOT NULL) AS periods_dosed,
       strftime('%Y-%m-%dT%H:%M:%SZ', p.code_broken_at) AS code_broken_utc
FROM participant p
ORDER BY p.code
""",
    "audit_trail": """
SELECT e.id, strftime('%Y-%m-%dT%H:%M:%SZ', e.at) AS at_utc, e.actor, e.action, e.entity, e.entity_id,
       p.code AS participant_id, e.field, e.old_value, e.new_value, e.reason
FROM audit_event e LEFT JOIN participant p ON p.id = e.participant_id
ORDER BY e.id
""",
}


def run_baseline(db_path: str, out: str) -> None:
    """Child process: per table, one SQL query into pyarrow, then pyarrow.csv.write_csv."""
    import sqlite3

    import pyarrow as pa
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    connection = sqlite3.connect(db_path)
    rows = {}
    for name, sql in BASELINE_SQL.items():
        cursor = connection.execute(sql)
        names = [d[0] for d in cursor.description]
        columns = list(zip(*cursor.fetchall())) or [[] for _ in names]
        table = pa.table({column: list(values) for column, values in zip(names, columns)})
        pacsv.write_csv(table, os.path.join(out, f"{name}.csv"))
        rows[name] = table.num_rows
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "rows": rows, "max_rss_mb": peak_rss_mb()}))


def child(kind: str, db_path: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, __file__, f"--{kind}", str(db_path), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--extra-items", type=int, default=0, help="a multi-item scale of N items at every entry")
    parser.add_argument("--rounds", type=int, default=3, help="baseline and export pairs (median ratio)")
    parser.add_argument("--export", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--standards", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        return run_export(*args.export)
    if args.standards:
        return run_export(*args.standards, standards=True)
    if args.baseline:
        return run_baseline(*args.baseline)
    with tempfile.TemporaryDirectory(prefix="diary-bench-") as folder:
        folder = Path(folder)
        db_path = folder / "bench.sqlite"
        started = time.perf_counter()
        counts = generate(db_path, args.participants, args.extra_items)
        print(
            f"generated {counts} in {time.perf_counter() - started:.1f} s "
            f"({db_path.stat().st_size / 1e6:.0f} MB SQLite file)"
        )
        # Baseline and export interleaved ``--rounds`` times, each in a fresh process: on a
        # shared machine one run can be a third slower than the next, so the ratio reported is
        # the median of the pairs' ratios (each pair ran back to back), with every pair shown.
        pairs = []
        for _ in range(args.rounds):
            baseline = child("baseline", db_path, folder / "baseline")
            export = child("export", db_path, folder / "export")
            pairs.append((baseline, export))
        for name, count in baseline["rows"].items():
            # The baseline writes what the export writes: the same rows of each table.
            assert export["rows"][f"{name}.csv"] == count, (name, export["rows"][f"{name}.csv"], count)
        ratios = [e["seconds"] / b["seconds"] for b, e in pairs]
        ratio = statistics.median(ratios)
        baseline, export = pairs[ratios.index(ratio)] if ratio in ratios else pairs[0]
        print(f"bundle rows: {export['rows']}")
        baseline_times = ", ".join(f"{b['seconds']:.2f}" for b, _ in pairs)
        export_times = ", ".join(f"{e['seconds']:.2f}" for _, e in pairs)
        peak = max(e["max_rss_mb"] for _, e in pairs)
        print(
            f"baseline (1 SQL query + pyarrow.csv.write_csv per table: {', '.join(baseline['rows'])}): "
            f"{baseline_times} s, peak RSS {baseline['max_rss_mb']:.0f} MB"
        )
        print(f"diary export (whole CSV bundle): {export_times} s, peak RSS {peak:.0f} MB")
        print(
            "  by table (the median pair): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in export["seconds_by_table"].items())
        )
        responses_time = export["seconds_by_table"].get("responses", float("nan"))
        print(
            f"ratio whole bundle / baseline: {ratio:.2f}x, median of {len(pairs)} pairs "
            f"({', '.join(f'{r:.2f}' for r in ratios)}) (goal <= 2x)"
        )
        print(f"ratio responses table / baseline: {responses_time / baseline['seconds']:.2f}x")
        print(f"peak memory of the export: {peak:.0f} MB (goal < 500 MB)")
        standards = child("standards", db_path, folder / "standards")
        baseline = child("baseline", db_path, folder / "baseline")  # right after it, as a pair
        extra = {k: v for k, v in standards["seconds_by_table"].items() if "/" in k}
        print(
            f"with --standards (SDTM + Dataset-JSON + FHIR): {standards['seconds']:.2f} s "
            f"(the baseline run after it: {baseline['seconds']:.2f} s), "
            f"peak RSS {standards['max_rss_mb']:.0f} MB; " + ", ".join(f"{k} {v:.2f} s" for k, v in extra.items())
        )
        print(f"RESULT export-bundle ratio={ratio:.2f} peak_mb={peak:.0f}")
        print(
            f"RESULT export-standards ratio={standards['seconds'] / baseline['seconds']:.2f} "
            f"peak_mb={standards['max_rss_mb']:.0f}"
        )


if __name__ == "__main__":
    main()
