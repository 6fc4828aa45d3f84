"""The export bundle: the contract, endpoints checked independently, integrity, blinding, formats."""

import csv
import hashlib
import io
import json
import re
import zipfile
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from diary.demo import build_demo
from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.exports import write_bundle
from diary.extensions import db
from diary.models import AuditEvent, now_utc
from diary.participants.enrolment import enroll
from diary.study.trial import protocol_of, unblind

from .conftest import answers_for, assessment_of, ready_for_the_truth
from .staff_helpers import any_csrf, login_as, make_staff

# The contract from DESIGN.md, written out here as the specification the export must meet.
CONTRACT = {
    "assessments": [
        "participant_id",
        "site",
        "sequence",
        "period",
        "treatment_code",
        "treatment",
        "planned_dose_utc",
        "dose_start_utc",
        "timepoint",
        "timepoint_order",
        "nominal_offset_min",
        "window_open_utc",
        "window_close_utc",
        "status",
        "submitted_utc",
        "collected_utc",
        "minutes_from_dose",
        "source",
        "submission_mode",
        "offline_delay_min",
        "viewport_width",
        "viewport_height",
        "device_pixel_ratio",
        "zoom",
        "text_scale",
        "browser",
        "code_broken_utc",
        "protocol_version",
        "allocation_is_dummy",
    ],
    "responses": [
        "participant_id",
        "sequence",
        "period",
        "treatment_code",
        "treatment",
        "timepoint",
        "timepoint_order",
        "instrument",
        "item",
        "value",
        "value_as_entered",
        "change_request_id",
        "days_entry_to_change",
        "submitted_utc",
        "collected_utc",
        "minutes_from_dose",
        "source",
        "submission_mode",
        "allocation_is_dummy",
    ],
    "fatigue_endpoints": [
        "participant_id",
        "sequence",
        "period",
        "treatment_code",
        "treatment",
        "baseline_vas",
        "vas_d1",
        "vas_d3",
        "vas_d7",
        "pct_change_d1",
        "pct_change_d3",
        "pct_change_d7",
        "responder_d3",
        "auc_pct_change_0_7d",
        "hours_from_dose_d1",
        "hours_from_dose_d3",
        "hours_from_dose_d7",
        "status_d3",
        "source_d3",
        "auc_n_points",
        "excluded_reason",
        "values_changed_late",
        "signature_status",
        "code_broken_utc",
        "allocation_is_dummy",
    ],
    "fatigue_timecourse": [
        "participant_id",
        "sequence",
        "period",
        "treatment_code",
        "treatment",
        "timepoint",
        "timepoint_order",
        "baseline_vas",
        "vas",
        "pct_change",
        "hours_from_dose",
        "status",
        "source",
        "allocation_is_dummy",
    ],
    "side_effects": [
        "participant_id",
        "period",
        "treatment_code",
        "treatment",
        "timepoint",
        "timepoint_order",
        "term",
        "severity",
        "solicited",
        "verbatim",
        "coded_term",
        "reported_utc",
        "minutes_from_dose",
        "allocation_is_dummy",
    ],
    "adherence": ["participant_id", "period", "scheduled", "completed", "completed_late", "missed", "compliance_pct"],
    "participants": [
        "participant_id",
        "site",
        "timezone",
        "sequence",
        "enrolled_utc",
        "status",
        "withdrawn_utc",
        "withdrawal_reason",
        "withdrawal_decided_by",
        "discontinued_utc",
        "discontinuation_reason",
        "discontinuation_decided_by",
        "periods_dosed",
        "has_baseline_all_periods",
        "has_primary_both_periods",
        "code_broken_utc",
        "allocation_is_dummy",
    ],
    "audit_trail": [
        "event_id",
        "time_utc",
        "actor_role",
        "action",
        "entity",
        "participant_id",
        "field",
        "old_value",
        "new_value",
        "reason",
    ],
    "audit_reviews": ["review_id", "check", "cases", "reviewer_role", "reviewed_utc", "note"],
    "data_dictionary": [
        "table",
        "column",
        "type",
        "unit",
        "allowed_values",
        "precision",
        "may_contain_identifiers",
        "description",
    ],
}
# File formats are the same whatever database the rows came from: these run on SQLite only.
FORMAT_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CHECKS = {
    "integer": lambda v: re.fullmatch(r"-?\d+", v) is not None,
    "number": lambda v: float(v) == float(v),
    "boolean": lambda v: v in ("TRUE", "FALSE"),
    "datetime": lambda v: ISO.match(v) is not None,
    "string": lambda v: True,
}


def read_csv(folder, table):
    with open(folder / f"{table}.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def demo(study):
    now = now_utc()
    build_demo(now=now)
    db.session.commit()
    return now


@pytest.fixture
def bundle(demo, study, tmp_path):
    out = tmp_path / "bundle"
    write_bundle(out, study=study, now=demo)
    return out


def test_tables_match_the_contract_and_the_dictionary(bundle):
    """Every table has exactly the contract's columns; each column is in the dictionary; values fit types."""
    dictionary = read_csv(bundle, "data_dictionary")
    declared = {(row["table"], row["column"]): row["type"] for row in dictionary}
    assert {row["table"] for row in dictionary} == set(CONTRACT)
    for table, columns in CONTRACT.items():
        with open(bundle / f"{table}.csv", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == columns
        assert [c for (t, c) in declared if t == table] == columns
        for row in read_csv(bundle, table):
            for column in columns:
                value = row[column]
                assert value == "" or CHECKS[declared[(table, column)]](value), (table, column, value)


def test_codes_are_lower_case_and_listed_in_the_dictionary(bundle):
    dictionary = {(r["table"], r["column"]): r["allowed_values"] for r in read_csv(bundle, "data_dictionary")}
    for table, column in (
        ("assessments", "status"),
        ("side_effects", "severity"),
        ("assessments", "source"),
        ("side_effects", "term"),
        ("assessments", "timepoint"),
    ):
        allowed = {code.strip() for code in dictionary[(table, column)].split(";")}
        values = {row[column] for row in read_csv(bundle, table)} - {""}
        assert values and values <= allowed, (table, column, values - allowed)
        assert all(value == value.lower() or column == "timepoint" for value in values)


def test_missing_values_are_empty_cells(bundle):
    missed = [r for r in read_csv(bundle, "assessments") if r["status"] == "missed"]
    assert missed
    assert all(r["submitted_utc"] == r["minutes_from_dose"] == r["source"] == "" for r in missed)
    text = "".join(open(p, encoding="utf-8").read() for p in bundle.glob("*.csv") if p.stem != "data_dictionary")
    assert ",NA," not in text and ",nan," not in text.lower() and ",None," not in text


def independent_endpoints(bundle) -> pd.DataFrame:
    """The endpoints recomputed with pandas and numpy from responses and assessments alone."""
    responses = pd.read_csv(bundle / "responses.csv", dtype=str, keep_default_na=False)
    assessments = pd.read_csv(bundle / "assessments.csv", dtype=str, keep_default_na=False)
    vas = responses[(responses.instrument == "fatigue_vas") & (responses.item == "fatigue")].merge(
        assessments[["participant_id", "period", "timepoint", "dose_start_utc", "status"]],
        on=["participant_id", "period", "timepoint"],
    )
    # Entries judged outside their windows stand for nothing; the rest count when they were given.
    vas = vas[~vas.status.isin(["after_dose", "out_of_window"])].copy()
    vas["hours"] = (pd.to_datetime(vas.collected_utc) - pd.to_datetime(vas.dose_start_utc)).dt.total_seconds() / 3600
    vas["score"] = vas.value.astype(int)
    results = {}
    for (pid, period), group in vas.groupby(["participant_id", "period"]):
        scores = dict(zip(group.timepoint, group.score))
        base = scores.get("BL")
        pct = {tp: (scores[tp] - base) / base * 100 if base else None for tp in scores}
        auc = None
        if base and "D7" in scores:
            post = group[group.timepoint.isin(["M40", "M80", "M120", "M230", "D1", "D2", "D3", "D7"])]
            post = post.sort_values("hours")
            t = np.concatenate([[0.0], post.hours.to_numpy()])
            p = np.concatenate([[0.0], [(s - base) / base * 100 for s in post.score]])
            value_at_end = np.interp(168, t, p)  # carries the last value when t ends early
            keep = t < 168
            auc = np.trapezoid(np.append(p[keep], value_at_end), np.append(t[keep], 168.0))
        results[(pid, period)] = {
            "d3": pct.get("D3"),
            "d1": pct.get("D1"),
            "d7": pct.get("D7"),
            "auc": auc,
            "base": base,
        }
    return results


def _num(text):
    return None if text == "" else float(text)


def assert_endpoints_agree(bundle):
    expected = independent_endpoints(bundle)
    rows = read_csv(bundle, "fatigue_endpoints")
    assert rows
    for row in rows:
        want = expected.get((row["participant_id"], row["period"]), {"d1": None, "d3": None, "d7": None, "auc": None})
        for day in ("d1", "d3", "d7"):
            got = _num(row[f"pct_change_{day}"])
            assert (got is None) == (want[day] is None), (row, day)
            if got is not None:
                assert got == pytest.approx(want[day], abs=0.006)
        assert row["responder_d3"] == ("" if want["d3"] is None else ("TRUE" if want["d3"] <= -20 else "FALSE"))
        got_auc = _num(row["auc_pct_change_0_7d"])
        assert (got_auc is None) == (want["auc"] is None), row
        if got_auc is not None:
            assert got_auc == pytest.approx(want["auc"], abs=0.1)
    return rows


def test_endpoints_match_an_independent_computation_on_the_demo(bundle):
    rows = assert_endpoints_agree(bundle)
    assert any(row["pct_change_d3"] for row in rows)  # D3 % change readable straight from the file


def _participant(study, code, *, days_ago=20):
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=days_ago + 1),
        code=code,
    )
    dose = (now_utc() - timedelta(days=days_ago)).replace(second=0, microsecond=0)
    record_dose(participant, 1, dose, actor="t", now=now_utc())
    return participant


def _answer(participant, protocol, code, vas, *, late=False, proxy=False):
    assessment = assessment_of(participant, 1, code)
    at = assessment.window_close + timedelta(minutes=30) if late else assessment.target
    if proxy:
        # A paper diary filled in at the target time, keyed in days later.
        record_submission(
            assessment,
            answers_for(protocol, code, vas=vas),
            now=assessment.late_close + timedelta(days=5),
            actor="t",
            source="paper",
            reason="paper diary returned at the visit",
            collected_at=at,
        )
        return
    record_submission(assessment, answers_for(protocol, code, vas=vas), now=at, actor="t")


def test_endpoints_on_hand_made_cases(study, tmp_path):
    """Baseline 0, missing D3, a late D3 and a coordinator-entered D3, each as TRIAL.md says."""
    protocol = protocol_of(study.current_protocol_version)
    cases = {
        "P-ZERO01": {"BL": 0, "D1": 10, "D3": 20, "D7": 5},
        "P-NOD301": {"BL": 50, "D1": 40, "D7": 45},
        "P-LATE01": {"BL": 50, "M40": 45, "D1": 40, "D3": 35, "D7": 30},
        "P-PROXY1": {"BL": 80, "D1": 60, "D3": 60, "D7": 70},
    }
    for code, scores in cases.items():
        participant = _participant(study, code)
        for timepoint, vas in scores.items():
            _answer(
                participant,
                protocol,
                timepoint,
                vas,
                late=(code == "P-LATE01" and timepoint == "D3"),
                proxy=(code == "P-PROXY1" and timepoint == "D3"),
            )
    db.session.commit()
    out = tmp_path / "out"
    write_bundle(out, study=study, now=now_utc())
    rows = {row["participant_id"]: row for row in assert_endpoints_agree(out)}

    zero = rows["P-ZERO01"]
    assert (
        zero["baseline_vas"] == "0"
        and zero["pct_change_d3"] == zero["responder_d3"] == zero["auc_pct_change_0_7d"] == ""
    )
    assert zero["excluded_reason"] == "baseline is 0: percent changes from it are undefined"
    assert rows["P-NOD301"]["excluded_reason"] == ""
    no_d3 = rows["P-NOD301"]
    assert no_d3["vas_d3"] == no_d3["pct_change_d3"] == no_d3["responder_d3"] == ""
    assert no_d3["pct_change_d1"] == "-20.0" and no_d3["auc_pct_change_0_7d"] != ""
    late = rows["P-LATE01"]
    assert (late["pct_change_d3"], late["responder_d3"]) == ("-30.0", "TRUE")
    statuses = {(r["participant_id"], r["timepoint"]): r["status"] for r in read_csv(out, "assessments")}
    assert statuses[("P-LATE01", "D3")] == "completed_late"
    # D2 is optional: left unanswered it is not done, not missed (D1, which is not, is missed).
    assert statuses[("P-ZERO01", "D2")] == "not_done" and statuses[("P-LATE01", "M80")] == "missed"
    dictionary = {(r["table"], r["column"]): r["allowed_values"] for r in read_csv(out, "data_dictionary")}
    assert "not_done" in dictionary[("assessments", "status")].split("; ")
    assert dictionary[("fatigue_endpoints", "responder_d3")] == "TRUE; FALSE"
    proxy = rows["P-PROXY1"]
    assert (proxy["pct_change_d3"], proxy["responder_d3"]) == ("-25.0", "TRUE")
    sources = {(r["participant_id"], r["timepoint"]): r["source"] for r in read_csv(out, "responses")}
    assert sources[("P-PROXY1", "D3")] == "paper"


def test_auc_carries_and_interpolates_to_168_hours():
    from diary.exports.endpoints import auc_pct_change

    assert auc_pct_change([(24, -20), (168, -20)]) == pytest.approx(24 * -10 + 144 * -20)
    assert auc_pct_change([(24, -20)]) == pytest.approx(24 * -10 + 144 * -20)  # carried forward
    # -48 at 192 h is -44 at 168 h on the straight line between 24 h and 192 h
    assert auc_pct_change([(24, -20), (192, -48)]) == pytest.approx(24 * -10 + 144 * (-20 + -44) / 2)


def test_manifest_counts_and_checksums_match_the_files(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["blinded"] is True and manifest["protocol_id"] == "ketamine-fatigue-crossover"
    extras = {"analysis/primary.py", "analysis/primary.R"}  # sdtm/ and fhir/ only when asked for
    assert set(manifest["files"]) == {f"{t}.csv" for t in CONTRACT} | extras
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    assert files == set(manifest["files"]) | {"manifest.json"}
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        if name.endswith(".csv"):
            with open(bundle / name, encoding="utf-8", newline="") as handle:
                assert len(list(csv.DictReader(handle))) == entry["rows"], name
        elif name.endswith(".ndjson"):
            assert len(data.decode().splitlines()) == entry["rows"]


def test_no_identifiers_in_the_export(study, tmp_path, client):
    """No email, no link token, no IP address, whatever the participant gave us."""
    participant, token = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="BA",
        actor="t",
        now=now_utc() - timedelta(days=2),
        code="P-IDENT1",
        email="jane.doe@example.org",
        phone="+1 555 0199",
    )
    record_dose(participant, 1, now_utc() - timedelta(hours=30), actor="t", now=now_utc())
    protocol = protocol_of(study.current_protocol_version)
    record_submission(
        assessment_of(participant, 1, "D1"),
        answers_for(protocol, "D1", **{"side_effects.other": "mild itch"}),
        now=assessment_of(participant, 1, "D1").target,
        actor="t",
        device_time="2026-01-01T00:00:00Z",
    )
    db.session.commit()
    client.get(f"/p/{token}")  # the participant's visit leaves an address in the web logs, never in data
    write_bundle(tmp_path / "out", study=study, now=now_utc())
    text = "\n".join(p.read_text(encoding="utf-8") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert "P-IDENT1" in text
    for forbidden in ("jane.doe", "@example.org", token, token[:20], "555 0199", "127.0.0.1"):
        assert forbidden not in text
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", text)


def test_blinded_and_unblinded_exports_differ_only_in_treatment(demo, study, tmp_path):
    """With the true allocation, unblinding fills in the drug names and changes nothing else."""
    blinded_dir, unblinded_dir = tmp_path / "blinded", tmp_path / "unblinded"
    ready_for_the_truth(study)
    write_bundle(blinded_dir, study=study, now=demo, true_allocation=True)
    unblind(study, user=make_staff("unblinded"), now=demo)
    db.session.commit()
    write_bundle(unblinded_dir, study=study, now=demo)
    names = {"A": "ketamine 0.5 mg/kg", "B": "midazolam 0.045 mg/kg"}
    for table in CONTRACT:
        if table == "audit_trail":
            continue  # unblinding is itself an event
        before, after = read_csv(blinded_dir, table), read_csv(unblinded_dir, table)
        assert len(before) == len(after)
        for old, new in zip(before, after):
            if "treatment" in old:
                assert old["treatment"] == "" and new["treatment"] == names[old["treatment_code"]]
                old, new = {**old, "treatment": ""}, {**new, "treatment": ""}
            assert old == new
    manifest = json.loads((unblinded_dir / "manifest.json").read_text())
    assert manifest["blinded"] is False and manifest["unblinded_utc"] and manifest["allocation_is_dummy"] is False
    assert {r["sequence"] for r in read_csv(unblinded_dir, "assessments")} == {"AB", "BA"}
    assert "unblind" in {r["action"] for r in read_csv(unblinded_dir, "audit_trail")}


def _normal(value):
    """One representation for a cell from any writer: text as the CSV has it."""
    from datetime import datetime

    if value is None or (isinstance(value, float) and value != value):
        return ""
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@FORMAT_ONLY
def test_csv_parquet_and_xlsx_hold_the_same_values(demo, study, tmp_path):
    import pyarrow.parquet as pq
    from openpyxl import load_workbook

    for fmt in ("csv", "parquet", "xlsx"):
        write_bundle(tmp_path / fmt, study=study, now=demo, fmt=fmt)
    types = {(r["table"], r["column"]): r["type"] for r in read_csv(tmp_path / "csv", "data_dictionary")}
    for table, columns in CONTRACT.items():
        numeric = [types[(table, c)] in ("integer", "number") for c in columns]

        def same(cells, numeric=numeric):
            # Excel keeps one kind of number, so -1.0 comes back as -1: compare numbers as numbers.
            return tuple(float(v) if n and v != "" else v for v, n in zip((_normal(c) for c in cells), numeric))

        from_csv = [same(row[c] for c in columns) for row in read_csv(tmp_path / "csv", table)]
        parquet = pq.read_table(tmp_path / "parquet" / f"{table}.parquet")
        assert parquet.column_names == columns
        from_parquet = [same(row.values()) for row in parquet.to_pylist()]
        sheet = load_workbook(tmp_path / "xlsx" / f"{table}.xlsx", read_only=True).active
        cells = list(sheet.iter_rows(values_only=True))
        assert list(cells[0]) == columns
        # The sheet says its own size (readers that trust <dimension> see every row).
        assert (sheet.max_row, sheet.max_column) == (len(cells), len(columns)), table
        # A row's empty trailing cells do not exist in the sheet: pad them back as empty.
        from_xlsx = [same(tuple(row) + (None,) * (len(columns) - len(row))) for row in cells[1:]]
        assert from_csv and from_csv == from_parquet == from_xlsx, table


@FORMAT_ONLY
def test_parquet_types_follow_the_dictionary(demo, study, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_bundle(tmp_path, study=study, now=demo, fmt="parquet")
    schema = pq.read_schema(tmp_path / "fatigue_endpoints.parquet")
    assert schema.field("baseline_vas").type == pa.int64()
    assert schema.field("pct_change_d3").type == pa.float64()
    assert schema.field("responder_d3").type == pa.bool_()
    assert pa.types.is_timestamp(pq.read_schema(tmp_path / "assessments.parquet").field("dose_start_utc").type)


# --- Download and unblinding through the web ---------------------------------------------------


@pytest.mark.parametrize(
    "role, status", [("analyst", 200), ("unblinded", 200), ("admin", 200), ("coordinator", 403), (None, 302)]
)
def test_download_only_for_analyst_unblinded_and_admin(client, study, role, status):
    if role:
        login_as(client, role)
    response = client.post("/staff/exports", data={"csrf_token": any_csrf(client), "format": "csv"})
    assert response.status_code == status
    if status == 200:
        archive = zipfile.ZipFile(io.BytesIO(response.data))
        assert {"manifest.json", "responses.csv", "fatigue_endpoints.csv"} <= set(archive.namelist())
        assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.action == "export")) == "export"


def test_download_with_a_forged_format_is_refused(client, study):
    login_as(client, "analyst")
    response = client.post("/staff/exports", data={"csrf_token": any_csrf(client), "format": "../etc"})
    assert response.status_code == 422


@pytest.mark.parametrize("role", ["analyst", "admin", "coordinator"])
def test_only_the_unblinded_role_can_unblind(client, study, role):
    login_as(client, role)
    response = client.post("/staff/unblind", data={"csrf_token": any_csrf(client), "confirm": "UNBLIND"})
    assert response.status_code == 403
    db.session.refresh(study)
    assert study.unblinded_at is None


def test_unblinding_is_confirmed_audited_and_irreversible(client, study):
    user = login_as(client, "unblinded")
    unconfirmed = client.post("/staff/unblind", data={"csrf_token": any_csrf(client), "confirm": "yes"})
    assert unconfirmed.status_code == 422
    db.session.refresh(study)
    assert study.unblinded_at is None
    refused = client.post("/staff/unblind", data={"csrf_token": any_csrf(client), "confirm": "UNBLIND"})
    assert refused.status_code == 409 and "Lock the study first" in refused.get_data(as_text=True)
    ready_for_the_truth(study)
    assert client.post("/staff/unblind", data={"csrf_token": any_csrf(client), "confirm": "UNBLIND"}).status_code == 302
    db.session.refresh(study)
    assert study.unblinded_at is not None and study.unblinded_by_id == user.id
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "unblind")).one()
    assert event_.actor == "staff:unblinded@site.test"
    with pytest.raises(Exception, match="already unblinded"):
        unblind(study, user=user, now=now_utc())
    assert "cannot be undone" in client.get("/staff/unblind").get_data(as_text=True)


def test_summary_hides_allocation_from_coordinators(client, demo, study):
    login_as(client, "coordinator")
    html = client.get("/staff/summary").get_data(as_text=True)
    assert "all participants" in html and "sequence AB" not in html and "sequence BA" not in html
    assert html.count("<tr>") > 5


def test_summary_table_carries_the_chart_numbers(client, demo, study):
    login_as(client, "analyst")
    html = client.get("/staff/summary").get_data(as_text=True)
    assert "dummy sequence AB" in html and "dummy sequence BA" in html
    points = re.findall(r"<title>([^<]+): (\w+): mean (-?[\d.]+)%", html)
    assert points
    for _series, timepoint, mean in points:
        assert f"<td>{timepoint}</td>" in html and f"<td>{mean}</td>" in html


def test_cli_export_writes_zip_and_parquet(runner, demo, tmp_path):
    result = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "x"), "--zip"])
    assert result.exit_code == 0, result.output
    assert "fatigue_endpoints.csv" in result.output and "blinded" in result.output
    names = set(zipfile.ZipFile(tmp_path / "x" / "diary-export.zip").namelist())
    assert {"manifest.json", "assessments.csv", "data_dictionary.csv"} <= names
    parquet = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "p"), "--format", "parquet"])
    assert parquet.exit_code == 0 and (tmp_path / "p" / "responses.parquet").exists()


def test_download_leaves_nothing_on_the_servers_disk(client, study):
    import tempfile
    from pathlib import Path

    before = {p.name for p in Path(tempfile.gettempdir()).glob("diary-export-*")}
    login_as(client, "analyst")
    response = client.post("/staff/exports", data={"csrf_token": any_csrf(client), "format": "csv"})
    assert response.status_code == 200 and zipfile.ZipFile(io.BytesIO(response.data)).testzip() is None
    response.close()
    assert {p.name for p in Path(tempfile.gettempdir()).glob("diary-export-*")} == before


def test_identified_export_only_for_admin_with_a_reason(client, study):
    enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc(),
        code="P-WHO001",
        email="who@example.org",
    )
    db.session.commit()
    login_as(client, "analyst")
    refused = client.post(
        "/staff/exports",
        data={"csrf_token": any_csrf(client), "format": "csv", "identified": "yes", "reason": "monitor visit"},
    )
    assert refused.status_code == 403
    admin = client.application.test_client()
    login_as(admin, "admin")
    no_reason = admin.post("/staff/exports", data={"csrf_token": any_csrf(admin), "format": "csv", "identified": "yes"})
    assert no_reason.status_code == 422
    response = admin.post(
        "/staff/exports",
        data={"csrf_token": any_csrf(admin), "format": "csv", "identified": "yes", "reason": "site needs to call back"},
    )
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert "who@example.org" in archive.read("participants_identified.csv").decode()
    assert json.loads(archive.read("manifest.json"))["identified"] is True
    event_ = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "identified_export")).one()
    assert event_.reason == "site needs to call back" and event_.actor == "staff:admin@site.test"


def test_cli_identified_export_needs_a_reason(runner, study, tmp_path):
    refused = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "a"), "--identified"])
    assert refused.exit_code != 0 and "needs --reason" in refused.output
    done = runner.invoke(
        args=["diary", "export", "--out", str(tmp_path / "b"), "--identified", "--reason", "ethics audit"]
    )
    assert done.exit_code == 0 and "IDENTIFIED" in done.output
    assert (tmp_path / "b" / "participants_identified.csv").exists()
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "participants_identified.csv").exists()


OTHER_PROTOCOL = """
id: pain-parallel
version: "2.0"
title: A three-period study of pain
periods: 3
treatments:
  X: {sealed_name: "drug x"}
  Y: {sealed_name: "drug y"}
  Z: {sealed_name: "placebo"}
sequences:
  XYZ: [X, Y, Z]
  ZYX: [Z, Y, X]
min_days_between_doses: 7
timepoints:
  - {code: PRE, label: Before the dose, target: -30m, window: {open: -12h, close: 0m},
     setting: clinic, instruments: [pain_vas]}
  - {code: H6, label: Six hours, target: 6h, window: {open: 5h, close: 7h},
     setting: home, instruments: [pain_vas, nausea]}
  - {code: W1, label: Week 1, target: 7d, window: {open: 6d, close: next_dose, fallback_close: 8d},
     setting: home, instruments: [pain_vas, mood]}
instruments:
  pain_vas:
    title: Pain now
    items:
      - {id: pain, type: vas, text: "How much pain do you have?", min_label: None, max_label: Worst}
  nausea:
    title: Sickness
    side_effects: true
    items:
      - id: sickness
        type: severity_checklist
        text: Any of these?
        terms:
          - {code: nausea, label: Nausea}
          - {code: rash, label: Rash}
  mood:
    title: Mood
    items:
      - id: mood
        type: single_choice
        text: How is your mood?
        choices:
          - {code: low, label: Low}
          - {code: ok, label: OK}
"""


def test_the_data_dictionary_follows_the_studys_own_protocol(tmp_path):
    """A different protocol file yields its own time points, instruments, items, values and terms."""
    from diary.study.trial import ensure_study, require_study

    from .conftest import make_app

    own = tmp_path / "pain.yaml"
    own.write_text(OTHER_PROTOCOL)
    app = make_app(f"sqlite:///{tmp_path / 'pain.sqlite'}", PROTOCOL_FILE=str(own))
    with app.app_context():
        db.create_all()
        ensure_study()
        db.session.commit()
        write_bundle(tmp_path / "out", study=require_study(), now=now_utc())
    allowed = {(r["table"], r["column"]): r["allowed_values"] for r in read_csv(tmp_path / "out", "data_dictionary")}
    assert allowed[("assessments", "timepoint")] == "PRE; H6; W1"
    assert allowed[("side_effects", "timepoint")] == "H6"
    assert allowed[("assessments", "sequence")] == "XYZ; ZYX"
    assert allowed[("assessments", "period")] == "1; 2; 3"
    assert allowed[("responses", "instrument")] == "pain_vas; mood"
    assert allowed[("responses", "item")] == "pain; mood"
    assert allowed[("responses", "value")] == "pain: 0-100; mood: low, ok"
    assert allowed[("side_effects", "term")] == "nausea; rash; other"
    assert allowed[("assessments", "treatment_code")] == "X; Y; Z"
    # Drug names sorted by name, never in code order: a blinded dictionary must not map the codes.
    assert allowed[("assessments", "treatment")] == "empty while blinded; after unblinding drug x; drug y; placebo"
    assert not any("fatigue" in value or "BL" in value.split("; ") for value in allowed.values())


def test_summary_means_and_sds_agree_with_the_exported_data(client, demo, study, tmp_path):
    """The summary's figures, counted by the database, equal a pandas computation from the export."""
    from diary.reporting.summary import vas_change_summary

    write_bundle(tmp_path, study=study, now=now_utc(), true_allocation=True)
    responses = pd.read_csv(tmp_path / "responses.csv", dtype=str, keep_default_na=False)
    assessments = pd.read_csv(tmp_path / "assessments.csv", dtype=str, keep_default_na=False)
    vas = responses[responses["item"] == "fatigue"].merge(
        assessments[["participant_id", "period", "timepoint", "status"]], on=["participant_id", "period", "timepoint"]
    )
    vas = vas[vas.status.isin(["completed", "completed_late"])].copy()
    vas["score"] = vas.value.astype(float)
    base = vas[vas.timepoint == "BL"][["participant_id", "period", "score"]].rename(columns={"score": "base"})
    post = vas[vas.timepoint != "BL"].merge(base, on=["participant_id", "period"])
    post = post[post.base != 0]
    post["pct"] = (post.score - post.base) / post.base * 100
    expected = post.groupby(["sequence", "period", "timepoint"]).pct.agg(["count", "mean", "std"])
    rows = vas_change_summary(study, protocol_of(study.current_protocol_version), "sequence", now_utc())
    assert len(rows) == len(expected)
    for row in rows:
        count, mean, std = expected.loc[(row.group.split()[-1], str(row.period), row.timepoint)]
        assert row.n == count and row.mean == pytest.approx(round(mean, 1), abs=0.051)
        assert (row.sd is None) == (count < 2) and (row.sd is None or row.sd == pytest.approx(round(std, 1), abs=0.051))


FORMULAS = ['=HYPERLINK("http://evil.example","click")', "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1,1)"]


@FORMAT_ONLY
def test_xlsx_writes_typed_text_never_formulas_and_survives_control_characters(study, tmp_path):
    """Five formula payloads and a vertical tab in free text: all text in the XLSX, the export works."""
    from openpyxl import load_workbook

    protocol = protocol_of(study.current_protocol_version)
    for number, payload in enumerate(FORMULAS + ["line one\x0bline two"]):
        participant = _participant(study, f"P-XLS{number:03d}")
        d1 = assessment_of(participant, 1, "D1")
        record_submission(d1, answers_for(protocol, "D1", **{"side_effects.other": payload}), now=d1.target, actor="t")
    db.session.commit()
    manifest = write_bundle(tmp_path, study=study, now=now_utc(), fmt="xlsx")
    sheet = load_workbook(tmp_path / "side_effects.xlsx").active
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    cells = [row[header.index("verbatim")] for row in sheet.iter_rows(min_row=2)]
    texts = [c.value for c in cells if c.value]
    assert sorted(texts) == sorted(FORMULAS + ["line one\ufffdline two"])
    assert all(c.data_type == "s" for c in cells if c.value)  # strings, not formulas
    # Counted wherever the text appears: the report, and the audit trail's record of the entry.
    replaced = sum(
        str(value).count("\ufffd")
        for path in tmp_path.glob("*.xlsx")
        for row in load_workbook(path, read_only=True).active.iter_rows(values_only=True)
        for value in row
        if isinstance(value, str)
    )
    assert manifest["xlsx_characters_replaced"] == replaced == 2
