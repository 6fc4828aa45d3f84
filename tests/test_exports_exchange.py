"""What a statistician and a sponsor's data manager take as they are: the new tables recomputed from
the database, the dummy allocation, SDTM domains and Dataset-JSON, FHIR, typed XLSX, free text
left out on request, and the starter programs run on a real export."""

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from diary.demo import build_demo
from diary.dosing.infusions import record_dose
from diary.entries.recording import record_submission
from diary.exports import write_bundle
from diary.exports.sdtm import DSDECOD
from diary.extensions import db
from diary.models import AuditEvent, ItemValue, Participant, RandomizationSlot, StaffUser, now_utc
from diary.participants.enrolment import enroll, withdraw
from diary.study.randomization import load_randomization_list
from diary.study.trial import protocol_of, unblind

from .conftest import answers_for, assessment_of, ready_for_the_truth
from .staff_helpers import any_csrf, login_as, make_staff

SCHEMAS = Path(__file__).parent / "schemas"
# File formats are the same whatever database the rows came from: these run on SQLite only.
FORMAT_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def demo(study):
    now = now_utc()
    build_demo(now=now)
    # One participant leaves, so the participants table has a withdrawal to carry.
    gone = db.session.scalars(select(Participant).order_by(Participant.code)).first()
    withdraw(
        gone,
        actor="staff:coordinator@site.test",
        now=now,
        reason="moved to another state",
        category="lost_to_follow_up",
    )
    db.session.commit()
    return now


@pytest.fixture
def bundle(demo, study, tmp_path):
    """The true allocation, so the tables can be held against the database as it is."""
    write_bundle(tmp_path, study=study, now=demo, true_allocation=True, standards=True)
    return tmp_path


def _vas(submission) -> int | None:
    for value in submission.values:
        if value.instrument == "fatigue_vas" and value.item == "fatigue":
            return int(value.value)
    return None


# --- The new tables, recomputed from the database ----------------------------------------------


def test_fatigue_timecourse_recomputed_from_the_database(bundle, study):
    protocol = protocol_of(study.current_protocol_version)
    order = {tp.code: n for n, tp in enumerate(protocol.timepoints, start=1)}
    statuses = {
        (r["participant_id"], r["period"], r["timepoint"]): r["status"] for r in read_csv(bundle / "assessments.csv")
    }
    expected = {}
    for participant in db.session.scalars(select(Participant)):
        for period in participant.periods:
            if period.dose_start is None:
                continue
            by_code = {a.timepoint: a for a in period.assessments}
            bl = by_code.get("BL")
            baseline = _vas(bl.submission) if bl and bl.submission else None
            for code, assessment in by_code.items():
                if "fatigue_vas" not in protocol.timepoint(code).instruments:
                    continue
                sub = assessment.submission
                vas = _vas(sub) if sub else None
                # At the second, as the export writes the times it derives from (tables.seconds_between).
                seconds = (
                    (sub.collected_at.replace(microsecond=0) - period.dose_start.replace(microsecond=0))
                    if sub
                    else None
                )
                hours = round(seconds.total_seconds() / 3600, 2) if sub else None
                pct = round((vas - baseline) / baseline * 100, 2) if vas is not None and baseline else None
                expected[(participant.code, str(period.number), code)] = (
                    participant.sequence,
                    period.treatment,
                    str(order[code]),
                    baseline,
                    vas,
                    pct,
                    hours,
                )
    rows = read_csv(bundle / "fatigue_timecourse.csv")
    assert len(rows) == len(expected) > 100
    for row in rows:
        key = (row["participant_id"], row["period"], row["timepoint"])
        sequence, code, position, baseline, vas, pct, hours = expected[key]
        assert (row["sequence"], row["treatment_code"], row["treatment"], row["timepoint_order"]) == (
            sequence,
            code,
            "",
            position,
        )
        assert row["status"] == statuses[key]
        assert row["baseline_vas"] == ("" if baseline is None else str(baseline))
        assert row["vas"] == ("" if vas is None else str(vas))
        assert (row["pct_change"] == "") == (pct is None) and (pct is None or float(row["pct_change"]) == pct)
        assert (row["hours_from_dose"] == "") == (hours is None)
        assert hours is None or float(row["hours_from_dose"]) == pytest.approx(hours, abs=0.006)
    # The D3 rows carry exactly the endpoint table's % change.
    endpoints = {
        (r["participant_id"], r["period"]): r["pct_change_d3"] for r in read_csv(bundle / "fatigue_endpoints.csv")
    }
    for row in rows:
        if row["timepoint"] == "D3":
            assert row["pct_change"] == endpoints[(row["participant_id"], row["period"])]


def test_participants_recomputed_from_the_database(bundle, study):
    rows = {r["participant_id"]: r for r in read_csv(bundle / "participants.csv")}
    people = db.session.scalars(select(Participant)).all()
    assert set(rows) == {p.code for p in people}
    for person in people:
        row = rows[person.code]
        dosed = [p for p in person.periods if p.dose_start is not None]
        primary = 0
        for period in person.periods:
            by_code = {a.timepoint: a for a in period.assessments}
            bl, d3 = by_code.get("BL"), by_code.get("D3")
            base = _vas(bl.submission) if bl and bl.submission else None
            value = _vas(d3.submission) if d3 and d3.submission else None
            primary += bool(period.dose_start and base and value is not None)
        assert (row["site"], row["timezone"], row["sequence"], row["status"]) == (
            person.site,
            person.timezone,
            person.sequence,
            person.status,
        )
        assert row["periods_dosed"] == str(len(dosed))
        assert row["has_primary_both_periods"] == ("TRUE" if primary == 2 else "FALSE")
        assert row["withdrawal_reason"] == (person.withdrawal_reason or "")
        assert (row["withdrawn_utc"] != "") == (person.withdrawn_at is not None)
        assert row["allocation_is_dummy"] == "FALSE"
    assert Counter(r["withdrawal_reason"] for r in rows.values())["lost_to_follow_up"] == 1
    assert any(r["has_primary_both_periods"] == "TRUE" for r in rows.values())
    assert any(r["has_primary_both_periods"] == "FALSE" for r in rows.values())


def test_audit_trail_names_roles_not_people_and_nothing_that_unblinds(bundle, study):
    rows = read_csv(bundle / "audit_trail.csv")
    events = {e.id: e for e in db.session.scalars(select(AuditEvent))}
    roles = dict(db.session.execute(select(StaffUser.email, StaffUser.role)).all())
    codes = dict(db.session.execute(select(Participant.id, Participant.code)).all())
    for row in rows:
        event = events[int(row["event_id"])]
        assert (row["action"], row["entity"], row["reason"]) == (event.action, event.entity, event.reason or "")
        assert row["participant_id"] == codes.get(event.participant_id, "")
        kind, _, who = event.actor.partition(":")
        want = (
            roles.get(who, "staff")
            if kind == "staff"
            else ("participant" if kind == "participant" else "operator" if event.actor == "cli" else "system")
        )
        assert row["actor_role"] == want
    text = (bundle / "audit_trail.csv").read_text()
    assert "@" not in text  # no staff emails, no participant emails
    assert "assign_randomization_slot" not in text and "sequence=" not in text
    exported = {row["action"] for row in rows}
    for action in ("enroll", "submit", "record_dose", "withdraw"):
        wanted = [e for e in events.values() if e.action == action]
        assert wanted and len([r for r in rows if r["action"] == action]) == len(wanted), action
    assert not exported & {"sign_in", "create_user", "set_pin", "upload_randomization"}


# --- The dummy allocation ----------------------------------------------------------------------


def _enrol_from_a_list(study, count=20):
    rows = ["site,position,sequence"] + [f"NIH-CC,{n},{'AB' if n % 2 else 'BA'}" for n in range(1, 2 * count + 1)]
    load_randomization_list(study, "\n".join(rows).encode(), actor="t", now=now_utc())
    for n in range(count):
        enroll(study, site="NIH-CC", timezone="UTC", actor="t", now=now_utc(), code=f"P-DUM{n:03d}")
    db.session.commit()


def test_the_dummy_allocation_is_stable_keeps_the_lists_counts_and_hides_the_truth(study, tmp_path):
    _enrol_from_a_list(study)
    enroll(study, site="NIH-CC", timezone="UTC", actor="t", now=now_utc(), code="P-NOSLOT", sequence="AB")
    db.session.commit()
    first, second = tmp_path / "one", tmp_path / "two"
    write_bundle(first, study=study, now=now_utc())
    write_bundle(second, study=study, now=now_utc())
    truth = dict(db.session.execute(select(Participant.code, Participant.sequence)).all())
    one = {r["participant_id"]: r["sequence"] for r in read_csv(first / "participants.csv")}
    two = {r["participant_id"]: r["sequence"] for r in read_csv(second / "participants.csv")}
    assert one == two  # the same dummy, export after export
    assert any(one[code] != truth[code] for code in truth)  # and not the truth
    assert set(one.values()) <= {"AB", "BA"} and one["P-NOSLOT"] in ("AB", "BA")
    slots = db.session.execute(select(RandomizationSlot.sequence, RandomizationSlot.dummy_sequence)).all()
    assert Counter(s for s, _ in slots) == Counter(d for _, d in slots)  # the list's AB/BA counts
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["allocation_is_dummy"] is True and "DUMMY" in manifest["allocation"]
    # Every table carries the same dummy: each period's code follows the dummy sequence.
    protocol = protocol_of(study.current_protocol_version)
    for row in read_csv(first / "assessments.csv"):
        assert row["allocation_is_dummy"] == "TRUE" and row["treatment"] == ""
        assert row["treatment_code"] == protocol.sequences[one[row["participant_id"]]][int(row["period"]) - 1]
    true = tmp_path / "true"
    write_bundle(true, study=study, now=now_utc(), true_allocation=True)
    assert {r["participant_id"]: r["sequence"] for r in read_csv(true / "participants.csv")} == truth


def test_a_dummy_export_keeps_the_side_effect_profile_under_dummy_codes(demo, study, tmp_path):
    """A/B side-effect profiles reveal the drug; under the dummy they follow the dummy codes."""
    write_bundle(tmp_path / "dummy", study=study, now=demo)
    write_bundle(tmp_path / "true", study=study, now=demo, true_allocation=True)
    dummy = {r["participant_id"]: r["sequence"] for r in read_csv(tmp_path / "dummy" / "participants.csv")}
    for row in read_csv(tmp_path / "dummy" / "side_effects.csv"):
        assert row["treatment_code"] == dummy[row["participant_id"]][int(row["period"]) - 1]
    true_rows = read_csv(tmp_path / "true" / "side_effects.csv")
    dummy_rows = read_csv(tmp_path / "dummy" / "side_effects.csv")

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("treatment_code", "allocation_is_dummy")} for r in rows]

    assert strip(true_rows) == strip(dummy_rows)  # only the allocation differs


@pytest.mark.parametrize("role, dummy", [("analyst", True), ("admin", True), ("unblinded", False)])
def test_web_exports_give_the_dummy_to_blinded_roles_and_the_truth_to_the_unblinded(client, demo, study, role, dummy):
    login_as(client, role)
    response = client.post("/staff/exports", data={"csrf_token": any_csrf(client), "format": "csv", "standards": "yes"})
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert json.loads(archive.read("manifest.json"))["allocation_is_dummy"] is dummy
    rows = list(csv.DictReader(io.StringIO(archive.read("participants.csv").decode())))
    assert {r["allocation_is_dummy"] for r in rows} == {"TRUE" if dummy else "FALSE"}
    assert {"sdtm/qs.json", "fhir/QuestionnaireResponse.ndjson", "analysis/primary.R"} <= set(archive.namelist())


def test_after_unblinding_every_role_gets_the_true_allocation_with_drug_names(client, demo, study):
    ready_for_the_truth(study)
    unblind(study, user=make_staff("unblinded"), now=demo)
    db.session.commit()
    login_as(client, "analyst")
    archive = zipfile.ZipFile(
        io.BytesIO(client.post("/staff/exports", data={"csrf_token": any_csrf(client), "format": "csv"}).data)
    )
    assert json.loads(archive.read("manifest.json"))["allocation_is_dummy"] is False
    rows = list(csv.DictReader(io.StringIO(archive.read("fatigue_endpoints.csv").decode())))
    names = {"A": "ketamine 0.5 mg/kg", "B": "midazolam 0.045 mg/kg"}
    assert rows and all(r["treatment"] == names[r["treatment_code"]] for r in rows)


def test_the_cli_asks_for_the_true_allocation_explicitly(runner, demo, tmp_path):
    dummy = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "d")])
    assert dummy.exit_code == 0 and "DUMMY allocation" in dummy.output
    refused = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "t"), "--true-allocation"])
    assert refused.exit_code == 1 and "Lock the study first" in refused.output
    from diary.study.trial import require_study

    ready_for_the_truth(require_study())
    true = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "t"), "--true-allocation"])
    assert true.exit_code == 0 and "DUMMY" not in true.output
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["allocation_is_dummy"] is False
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id.desc())
    ).first()
    assert "true allocation" in event.new_value


# --- SDTM and Dataset-JSON ---------------------------------------------------------------------


@FORMAT_ONLY
def test_sdtm_qs_rows_are_the_vas_and_nrs_responses(bundle, study):
    responses = [r for r in read_csv(bundle / "responses.csv") if r["item"] in ("fatigue", "energy")]
    qs = read_csv(bundle / "sdtm" / "qs.csv")
    protocol_id = protocol_of(study.current_protocol_version).id
    got = Counter((r["USUBJID"], r["VISIT"], r["QSTESTCD"], r["QSORRES"]) for r in qs)
    want = Counter(
        (
            f"{protocol_id}-{r['participant_id']}",
            f"PERIOD {r['period']} {r['timepoint']}",
            r["item"].upper(),
            r["value"],
        )
        for r in responses
    )
    assert got == want and len(qs) > 100
    assert all(float(r["QSSTRESN"]) == float(r["QSORRES"]) for r in qs)
    # Study days: the first infusion's (local) date is day 1, the day before it -1, no day 0.
    from datetime import date

    first = {
        r["USUBJID"]: date.fromisoformat(r["RFSTDTC"][:10])
        for r in read_csv(bundle / "sdtm" / "dm.csv")
        if r["RFSTDTC"]
    }
    for r in qs:
        days = (date.fromisoformat(r["QSDTC"][:10]) - first[r["USUBJID"]]).days
        assert int(r["QSDY"]) == (days + 1 if days >= 0 else days), r
    # D3 is made about 72 h after the infusion: on day 4, or a day either side by the clock time
    # of the infusion and the window (the demo's infusions are set from the time the suite runs).
    days = Counter(r["QSDY"] for r in qs if r["VISIT"].endswith(" D3") and r["VISIT"].startswith("PERIOD 1"))
    assert days and set(days) <= {"3", "4", "5"}
    assert {r["EPOCH"] for r in qs} >= {"TREATMENT 1", "TREATMENT 2"}
    assert all(r["EPOCH"] == "SCREENING" for r in qs if r["VISIT"] == "PERIOD 1 BL")


@FORMAT_ONLY
def test_sdtm_dm_se_ex_ae_follow_the_participants_and_periods(bundle, study):
    participants = {r["participant_id"]: r for r in read_csv(bundle / "participants.csv")}
    dm = read_csv(bundle / "sdtm" / "dm.csv")
    assert {r["SUBJID"] for r in dm} == set(participants)
    assert all(r["ARMCD"] == participants[r["SUBJID"]]["sequence"] for r in dm)
    dosed = sum(int(p["periods_dosed"]) for p in participants.values())
    assert len(read_csv(bundle / "sdtm" / "ex.csv")) == dosed
    se = read_csv(bundle / "sdtm" / "se.csv")
    assert len(se) == dosed + len(participants)  # a screening element each, then one per infusion
    assert {r["EPOCH"] for r in se} == {"SCREENING", "TREATMENT 1", "TREATMENT 2"}
    ae = read_csv(bundle / "sdtm" / "ae.csv")
    side_effects = read_csv(bundle / "side_effects.csv")
    assert len(ae) == len(side_effects)
    assert Counter(r["AESEV"] for r in ae) == Counter(r["severity"].upper() for r in side_effects)
    assert {r["AEPRESP"] for r in ae if r["AECAT"] == "SOLICITED"} == {"Y"}


@FORMAT_ONLY
def test_dataset_json_validates_against_the_v1_1_schema_and_matches_the_csv(bundle):
    """Every domain against CDISC's own published v1.1 schema (tests/schemas/README.md)."""
    from jsonschema import Draft201909Validator

    from diary.exports.sdtm import DOMAINS

    schema = json.loads((SCHEMAS / "dataset-json-1-1.schema.json").read_text())
    assert schema["$id"] == "https://cdisc.org/dataset-json/model" and schema["additionalProperties"] is False
    validator = Draft201909Validator(schema)
    kinds = {"integer": int, "double": (int, float), "string": str, "datetime": str}
    for domain in (name.lower() for name in DOMAINS):
        document = json.loads((bundle / "sdtm" / f"{domain}.json").read_text())
        errors = sorted(validator.iter_errors(document), key=str)
        assert errors == [], (domain, errors[:3])
        assert document["datasetJSONVersion"] == "1.1.0" and document["name"] == domain.upper()
        rows, columns = document["rows"], document["columns"]
        assert document["records"] == len(rows) == len(read_csv(bundle / "sdtm" / f"{domain}.csv"))
        for row, from_csv in zip(rows, read_csv(bundle / "sdtm" / f"{domain}.csv")):
            assert len(row) == len(columns)
            for value, column in zip(row, columns):
                assert value is None or isinstance(value, kinds[column["dataType"]]), (domain, column, value)
                if column["dataType"] == "datetime" and value is not None:
                    # ISO 8601, complete or (a year of birth) truncated, as SDTM allows.
                    assert re.fullmatch(r"\d{4}(-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})?", value), value
                assert ("" if value is None else str(value)) == from_csv[column["name"]]
                if column["dataType"] == "string" and value is not None:
                    assert len(value) <= column["length"]
    # The validator does refuse what the standard does not allow.
    broken = json.loads((bundle / "sdtm" / "dm.json").read_text())
    broken["datasetJSONVersion"], broken["columns"][0]["dataType"] = "1.0", "text"
    assert len(list(validator.iter_errors(broken))) == 2
    # v1.1 has no isReferenceData (a 1.0 attribute): the published schema refuses it.
    assert (
        len(
            list(
                validator.iter_errors(
                    {**json.loads((bundle / "sdtm" / "ds.json").read_text()), "isReferenceData": False}
                )
            )
        )
        == 1
    )


@FORMAT_ONLY
def test_define_xml_is_valid_define_2_1_and_describes_every_variable(bundle):
    """define.xml against the published Define-XML 2.1 XSDs (shipped by odmlib): valid; every
    variable of every domain has an ItemDef with its origin, every derived one a method, every
    codelist exactly the values the domain holds; the HTML lists the same variables."""
    import xml.etree.ElementTree as ET

    import odmlib
    import xmlschema

    from diary.exports.define import DEF, ODM
    from diary.exports.sdtm import DOMAINS

    schema = xmlschema.XMLSchema(str(Path(odmlib.__file__).parent / "schemas" / "define" / "2.1" / "define2-1-0.xsd"))
    define = bundle / "sdtm" / "define.xml"
    assert list(schema.iter_errors(str(define))) == []
    ns = {"odm": ODM, "def": DEF}
    root = ET.parse(define).getroot()
    items = {item.get("OID"): item for item in root.iterfind(".//odm:ItemDef", ns)}
    methods = {method.get("OID") for method in root.iterfind(".//odm:MethodDef", ns)}
    codelists = {cl.get("OID"): cl for cl in root.iterfind(".//odm:CodeList", ns)}
    described = 0
    for name, (_, variables) in DOMAINS.items():
        group = root.find(f".//odm:ItemGroupDef[@OID='IG.{name}']", ns)
        refs = {ref.get("ItemOID"): ref for ref in group.iterfind("odm:ItemRef", ns)}
        assert list(refs) == [f"IT.{name}.{v.name}" for v in variables]
        rows = read_csv(bundle / "sdtm" / f"{name.lower()}.csv")
        for variable in variables:
            item = items[f"IT.{name}.{variable.name}"]
            origin = item.find("def:Origin", ns).get("Type")
            assert origin in {"Collected", "Derived", "Assigned", "Protocol", "Not Available"}
            if origin == "Not Available":  # not collected: always null, and the define says why
                assert {row[variable.name] for row in rows} <= {""}
                comment = root.find(f".//def:CommentDef[@OID='{item.get(f'{{{DEF}}}CommentOID')}']", ns)
                assert "Not collected by the diary" in "".join(comment.itertext())
            if origin == "Derived":
                assert refs[item.get("OID")].get("MethodOID") in methods, variable.name
            reference = item.find("odm:CodeListRef", ns)
            external = reference is not None and codelists[reference.get("CodeListOID")].find(
                "odm:ExternalCodeList", ns
            )
            if external is not None and reference is not None:  # the coding dictionary, named by the protocol
                assert (variable.name, external.get("Dictionary"), external.get("Version")) == (
                    "AEDECOD",
                    "MedDRA",
                    "27.1",
                )
            elif reference is not None:
                listed = {entry.get("CodedValue") for entry in codelists[reference.get("CodeListOID")]}
                assert listed == {row[variable.name] for row in rows if row[variable.name]}, variable.name
            described += 1
    assert described == len(items) > 60
    page = (bundle / "sdtm" / "define.html").read_text()
    assert page.count("<tr><td>") == described and "<script" not in page and "stylesheet" not in page
    # The schema does refuse what Define-XML 2.1 does not allow.
    broken = define.read_text().replace('def:DefineVersion="2.1.0"', 'def:DefineVersion="2.1.0" Bogus="x"', 1)
    assert len(list(schema.iter_errors(broken))) == 1


@FORMAT_ONLY
def test_sdtm_demographics_arms_baseline_flag_and_visits_follow_sdtmig(study, demo, tmp_path):
    """DM: SEX and COUNTRY never null, AGE from the year of birth, the arm null rules (not treated:
    ACTARMCD null and ARMNRS; stopped after infusion 1: the planned arm, never a lone code); QS:
    one QSLOBXFL per subject and test, on the last record before the first infusion; EX: the
    infusion day's VISITNUM is the pre-dose entry's."""
    from diary.exports.sdtm import DOMAINS

    untreated, _ = enroll(
        study, site="NIH-CC", timezone="UTC", sequence="AB", actor="t", now=demo, sex="F", birth_year=1970
    )
    half, _ = enroll(study, site="NIH-CC", timezone="UTC", sequence="BA", actor="t", now=demo - timedelta(days=9))
    record_dose(half, 1, demo - timedelta(days=8), actor="t", now=demo - timedelta(days=8))
    withdraw(half, actor="t", now=demo - timedelta(days=1), reason="moved away", category="lost_to_follow_up")
    db.session.commit()
    write_bundle(tmp_path, study=study, now=demo, true_allocation=True, standards=True)
    dm = {row["SUBJID"]: row for row in read_csv(tmp_path / "sdtm" / "dm.csv")}
    people = {p.code: p for p in db.session.scalars(select(Participant))}
    assert [v.name for v in DOMAINS["DM"][1]][-3:] == ["ARMNRS", "ACTARMUD", "COUNTRY"]
    for code, row in dm.items():
        person = people[code]
        assert row["SEX"] == person.sex and row["SEX"] in {"F", "M", "U"}
        assert row["COUNTRY"] == "USA"
        if person.birth_year:
            assert (row["BRTHDTC"], row["AGEU"]) == (str(person.birth_year), "YEARS")
            assert int(row["AGE"]) == int(row["RFICDTC"][:4]) - person.birth_year
        else:
            assert row["AGE"] == row["AGEU"] == row["BRTHDTC"] == ""
        if row["RFXSTDTC"]:
            assert row["ACTARMCD"] == row["ARMCD"] and row["ACTARM"] == row["ARM"] and row["ARMNRS"] == ""
    assert {row["SEX"] for row in dm.values()} >= {"F", "M", "U"}
    assert (dm[untreated.code]["ACTARMCD"], dm[untreated.code]["ARMNRS"]) == ("", "ASSIGNED, NOT TREATED")
    assert dm[untreated.code]["SEX"] == "F" and dm[untreated.code]["ARMCD"] == "AB"
    assert (dm[half.code]["ARMCD"], dm[half.code]["ACTARMCD"]) == ("BA", "BA")

    qs = read_csv(tmp_path / "sdtm" / "qs.csv")
    first_dose = {row["USUBJID"]: row["RFXSTDTC"] for row in dm.values()}
    flagged = Counter((row["USUBJID"], row["QSTESTCD"]) for row in qs if row["QSLOBXFL"] == "Y")
    assert flagged and set(flagged.values()) == {1}
    for (subject, test), _ in flagged.items():
        before = [
            r for r in qs if r["USUBJID"] == subject and r["QSTESTCD"] == test and r["QSDTC"] < first_dose[subject]
        ]
        assert max(before, key=lambda r: r["QSDTC"])["QSLOBXFL"] == "Y"
    assert {row["QSLOBXFL"] for row in qs} == {"", "Y"}
    baseline_visits = {(r["USUBJID"], r["VISITNUM"]) for r in qs if r["VISIT"].endswith(" BL")}
    ex = read_csv(tmp_path / "sdtm" / "ex.csv")
    assert ex and all((r["USUBJID"], r["VISITNUM"]) in baseline_visits or r["USUBJID"].endswith(half.code) for r in ex)
    assert {r["VISIT"].split()[-1] for r in ex} == {"BL"}


@FORMAT_ONLY
def test_the_trial_design_domains_describe_two_sequences_three_epochs_and_every_visit(bundle, study):
    protocol = protocol_of(study.current_protocol_version)
    te = read_csv(bundle / "sdtm" / "te.csv")
    ta = read_csv(bundle / "sdtm" / "ta.csv")
    tv = read_csv(bundle / "sdtm" / "tv.csv")
    ts = {row["TSPARMCD"]: row["TSVAL"] for row in read_csv(bundle / "sdtm" / "ts.csv")}
    assert [row["ETCD"] for row in te] == ["SCRN", "A", "B"]
    arms = {arm: [(r["TAETORD"], r["ETCD"], r["EPOCH"]) for r in ta if r["ARMCD"] == arm] for arm in protocol.sequences}
    assert arms == {
        "AB": [("1", "SCRN", "SCREENING"), ("2", "A", "TREATMENT 1"), ("3", "B", "TREATMENT 2")],
        "BA": [("1", "SCRN", "SCREENING"), ("2", "B", "TREATMENT 1"), ("3", "A", "TREATMENT 2")],
    }
    # Every subject's elements (SE) follow their arm's design, epoch by epoch.
    arm_of = {row["USUBJID"]: row["ARMCD"] for row in read_csv(bundle / "sdtm" / "dm.csv")}
    for element in read_csv(bundle / "sdtm" / "se.csv"):
        planned = {(etcd, epoch) for _, etcd, epoch in arms[arm_of[element["USUBJID"]]]}
        assert (element["ETCD"], element["EPOCH"]) in planned, element
    visits = {row["VISITNUM"] for row in tv}
    assert len(tv) == protocol.periods * len(protocol.timepoints) == len(visits)
    for domain in ("qs", "ex"):
        assert {row["VISITNUM"] for row in read_csv(bundle / "sdtm" / f"{domain}.csv")} <= visits, domain
    assert ts["TITLE"] == protocol.title and ts["INTMODEL"] == "CROSS-OVER" and ts["NARMS"] == "2"
    assert ts["TBLIND"] == "DOUBLE BLIND" and ts["RANDOM"] == "Y"


def test_demographics_refusals_where_the_rule_lives():
    from diary.errors import Refused
    from diary.participants.enrolment import check_demographics

    now = now_utc()
    assert check_demographics("", None, now) == ("U", None)
    assert check_demographics(" f ", "1968", now) == ("F", 1968)
    for sex, year, field in (
        ("X", None, "sex"),
        ("M", "nineteen", "birth_year"),
        ("M", now.year, "birth_year"),
        ("M", 1800, "birth_year"),
    ):
        with pytest.raises(Refused) as refused:
            check_demographics(sex, year, now)
        assert refused.value.field == field and refused.value.status == 422


# --- FHIR --------------------------------------------------------------------------------------


@FORMAT_ONLY
def test_fhir_resources_validate_and_carry_every_entry(bundle, study):
    from fhir.resources.R4B.questionnaire import Questionnaire
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
    from pydantic import ValidationError

    folder = bundle / "fhir"
    questionnaires = [json.loads(line) for line in (folder / "Questionnaire.ndjson").read_text().splitlines()]
    responses = [json.loads(line) for line in (folder / "QuestionnaireResponse.ndjson").read_text().splitlines()]
    for resource in questionnaires:
        Questionnaire.model_validate(resource)
    for resource in responses:
        QuestionnaireResponse.model_validate(resource)
    protocol = protocol_of(study.current_protocol_version)
    assert len(questionnaires) == len(protocol.instruments)
    pairs = db.session.execute(select(ItemValue.submission_id, ItemValue.instrument).distinct()).all()
    assert len(responses) == len(pairs) > 100
    assert len({r["id"] for r in responses}) == len(responses)
    # The fatigue answers are the responses table's values, for the same participant and time point.
    fatigue = Counter(
        (
            r["subject"]["identifier"]["value"],
            r["identifier"]["value"].split("/")[1],
            r["identifier"]["value"].split("/")[2],
            str(item["answer"][0]["valueInteger"]),
        )
        for r in responses
        for item in r.get("item", [])
        if item["linkId"] == "fatigue"
    )
    table = Counter(
        (r["participant_id"], r["period"], r["timepoint"], r["value"])
        for r in read_csv(bundle / "responses.csv")
        if r["item"] == "fatigue"
    )
    assert fatigue == table
    text = (folder / "QuestionnaireResponse.ndjson").read_text()
    assert "@" not in text
    with pytest.raises(ValidationError):
        QuestionnaireResponse.model_validate({**responses[0], "authored": "yesterday evening"})
    with pytest.raises(ValidationError):
        QuestionnaireResponse.model_validate({**responses[0], "subject": "P-123"})


# --- Typed XLSX and free text ------------------------------------------------------------------


@FORMAT_ONLY
def test_xlsx_cells_are_typed(bundle, study, tmp_path):
    from datetime import datetime

    from openpyxl import load_workbook

    write_bundle(tmp_path / "x", study=study, now=now_utc(), fmt="xlsx", true_allocation=True)

    def columns(table):
        rows = list(load_workbook(tmp_path / "x" / f"{table}.xlsx").active.iter_rows(values_only=True))
        header = rows[0]
        return {name: [row[i] for row in rows[1:] if i < len(row)] for i, name in enumerate(header)}

    endpoints = columns("fatigue_endpoints")
    assert {type(v) for v in endpoints["baseline_vas"] if v is not None} == {int}
    assert {type(v) for v in endpoints["pct_change_d3"] if v is not None} <= {int, float}
    assert {type(v) for v in endpoints["responder_d3"] if v is not None} == {bool}
    assessments = columns("assessments")
    starts = [v for v in assessments["dose_start_utc"] if v is not None]
    assert starts and all(isinstance(v, datetime) for v in starts)
    from_csv = [r["dose_start_utc"] for r in read_csv(bundle / "assessments.csv") if r["dose_start_utc"]]
    assert sorted(v.strftime("%Y-%m-%dT%H:%M:%SZ") for v in starts) == sorted(from_csv)


def _free_text_participant(study):
    participant, _ = enroll(
        study,
        site="NIH-CC",
        timezone="UTC",
        sequence="AB",
        actor="t",
        now=now_utc() - timedelta(days=3),
        code="P-FREE01",
    )
    record_dose(participant, 1, now_utc() - timedelta(hours=30), actor="t", now=now_utc())
    protocol = protocol_of(study.current_protocol_version)
    d1 = assessment_of(participant, 1, "D1")
    record_submission(
        d1,
        answers_for(protocol, "D1", **{"side_effects.other": "Dr Jane Roe said call 555 0100"}),
        now=d1.target,
        actor="t",
    )
    withdraw(
        participant,
        actor="t",
        now=now_utc(),
        reason="Jane Roe's husband phoned to say stop",
        category="participant_decision",
    )
    db.session.commit()


def test_free_text_is_flagged_and_left_out_on_request(study, tmp_path, runner):
    _free_text_participant(study)
    write_bundle(tmp_path / "with", study=study, now=now_utc(), standards=True)
    manifest = write_bundle(tmp_path / "without", study=study, now=now_utc(), free_text=False, standards=True)

    def everything(folder):
        return "\n".join(
            p.read_text(encoding="utf-8")
            for p in folder.rglob("*")
            if p.is_file() and p.parent.name != "analysis" and p.name != "data_dictionary.csv"
        )

    assert "Jane Roe" in everything(tmp_path / "with")
    assert "Jane" not in everything(tmp_path / "without") and "555 0100" not in everything(tmp_path / "without")
    assert manifest["free_text"].startswith("removed")
    assert [r for r in read_csv(tmp_path / "without" / "side_effects.csv") if r["term"] == "other"][0]["verbatim"] == ""
    flagged = {
        (r["table"], r["column"])
        for r in read_csv(tmp_path / "without" / "data_dictionary.csv")
        if r["may_contain_identifiers"] == "TRUE"
    }
    assert {("side_effects", "verbatim"), ("responses", "value"), ("audit_trail", "reason")} <= flagged
    assert ("fatigue_endpoints", "pct_change_d3") not in flagged
    cli = runner.invoke(args=["diary", "export", "--out", str(tmp_path / "cli"), "--no-free-text", "--standards"])
    assert cli.exit_code == 0 and "free text removed" in cli.output
    assert "Jane" not in everything(tmp_path / "cli")


def test_the_web_export_can_leave_free_text_out(client, study):
    _free_text_participant(study)
    login_as(client, "analyst")
    response = client.post(
        "/staff/exports", data={"csrf_token": any_csrf(client), "format": "csv", "free_text": "no", "standards": "yes"}
    )
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert not any("Jane" in archive.read(name).decode() for name in archive.namelist())
    assert json.loads(archive.read("manifest.json"))["free_text"].startswith("removed")


@FORMAT_ONLY
def test_the_dictionary_documents_precision_per_column(bundle):
    precision = {
        (r["table"], r["column"]): r["precision"]
        for r in read_csv(bundle / "data_dictionary.csv")
        if r["type"] == "number"
    }
    assert precision and all(precision.values())
    assert precision[("fatigue_endpoints", "pct_change_d3")].startswith("rounded to 2 decimals")
    assert precision[("fatigue_endpoints", "auc_pct_change_0_7d")] == "rounded to 1 decimal"
    # And the file holds no more digits than it says.
    for row in read_csv(bundle / "fatigue_endpoints.csv"):
        assert not row["pct_change_d3"] or len(row["pct_change_d3"].partition(".")[2]) <= 2
        assert not row["auc_pct_change_0_7d"] or len(row["auc_pct_change_0_7d"].partition(".")[2]) <= 1


# --- The starter programs ----------------------------------------------------------------------


@pytest.fixture
def crossover(study, tmp_path):
    """Eight participants with BL, D1, D3 and D7 in both periods (4 AB, 4 BA), exported."""
    protocol = protocol_of(study.current_protocol_version)
    now = now_utc().replace(second=0, microsecond=0)
    for n in range(8):
        participant, _ = enroll(
            study,
            site="NIH-CC",
            timezone="America/New_York",
            sequence="AB" if n % 2 else "BA",
            actor="t",
            now=now - timedelta(days=45),
            code=f"P-XOV{n:03d}",
        )
        for number, days_ago in ((1, 40), (2, 20)):
            record_dose(participant, number, now - timedelta(days=days_ago, hours=n), actor="t", now=now)
            # Lower fatigue under A in this simulation, with a different spread per participant.
            drop = 30 if participant.periods[number - 1].treatment == "A" else 10
            for code, vas in (
                ("BL", 60 + n),
                ("D1", 55 + n - drop // 2),
                ("D3", 60 + n - drop + n % 3),
                ("D7", 58 + n - drop // 3),
            ):
                assessment = assessment_of(participant, number, code)
                extra = {"side_effects.symptoms.headache": "mild"} if code == "D1" and n % 2 else {}
                record_submission(
                    assessment, answers_for(protocol, code, vas=vas, **extra), now=assessment.target, actor="t"
                )
    db.session.commit()
    write_bundle(tmp_path / "x", study=study, now=now, true_allocation=True)
    return tmp_path / "x"


def _means_from_the_file(bundle):
    cells: dict[tuple[str, str], list[float]] = {}
    for row in read_csv(bundle / "fatigue_endpoints.csv"):
        if row["pct_change_d3"]:
            arm = row["treatment"] or row["treatment_code"]
            cells.setdefault((arm, row["period"]), []).append(float(row["pct_change_d3"]))
    return {key: (len(values), sum(values) / len(values)) for key, values in cells.items()}


def _printed_means(output):
    return {
        (arm, period): (int(n), float(mean))
        for arm, period, n, mean in re.findall(r"^MEAN arm=(\S+) period=(\d+) n=(\d+) mean=(-?[\d.]+)", output, re.M)
    }


def _check_program_output(output, bundle):
    expected = _means_from_the_file(bundle)
    printed = _printed_means(output)
    assert printed.keys() == expected.keys() and len(expected) >= 3
    for key, (n, mean) in expected.items():
        assert printed[key][0] == n and printed[key][1] == pytest.approx(mean, abs=1e-4)
    assert re.search(r"^COMPLETE participants=8$", output, re.M), output


@FORMAT_ONLY
def test_the_python_starter_program_reproduces_the_d3_means_and_fits_the_model(crossover):
    bundle = crossover
    result = subprocess.run(
        [sys.executable, str(bundle / "analysis" / "primary.py"), str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    _check_program_output(result.stdout, bundle)
    assert "ALLOCATION true" in result.stdout
    assert re.search(r"^MIXED term=C\(arm\)\[T\.B\] estimate=-?[\d.]+", result.stdout, re.M), result.stdout
    assert re.search(r"^PERIOD1 term=C\(arm\)\[T\.B\] estimate=-?[\d.]+", result.stdout, re.M), result.stdout


def _models(output) -> dict[str, tuple[float, float, float, int]]:
    return {
        label: (float(estimate), float(low), float(high), int(df))
        for label, estimate, low, high, df in re.findall(
            r"^(MIXED|MIXEDALL) term=\S+ estimate=(-?[\d.]+) ci_low=(-?[\d.]+) ci_high=(-?[\d.]+) df=(\d+)",
            output,
            re.M,
        )
    }


@FORMAT_ONLY
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed (.ci/run installs r-base-core)")
def test_both_starter_programs_give_the_same_t_based_intervals_on_complete_cases_and_all_data(crossover, study):
    """One participant has D3 in period 1 only: the complete-case model leaves them out, the
    all-data one keeps them; Python's interval is t-based on nlme's degrees of freedom, so it
    agrees with R's (a normal interval would be narrower)."""
    bundle = crossover
    rows = read_csv(bundle / "fatigue_endpoints.csv")
    dropped = next(r for r in rows if r["period"] == "2")
    dropped["pct_change_d3"] = ""
    with open(bundle / "fatigue_endpoints.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    people = read_csv(bundle / "participants.csv")
    for person in people:
        if person["participant_id"] == dropped["participant_id"]:
            person["has_primary_both_periods"] = "FALSE"
    with open(bundle / "participants.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(people[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(people)
    python = subprocess.run(
        [sys.executable, str(bundle / "analysis" / "primary.py"), str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    r = subprocess.run(
        ["Rscript", str(bundle / "analysis" / "primary.R"), str(bundle)], capture_output=True, text=True, timeout=120
    )
    assert python.returncode == 0 and r.returncode == 0, python.stderr + r.stderr
    assert "complete cases" in python.stdout and "complete cases" in r.stdout
    from_python, from_r = _models(python.stdout), _models(r.stdout)
    assert from_python.keys() == from_r.keys() == {"MIXED", "MIXEDALL"}
    assert from_python["MIXED"][3] == 7 - 2 and from_python["MIXEDALL"][3] == 15 - 8 - 2
    for label in ("MIXED", "MIXEDALL"):
        assert from_python[label][3] == from_r[label][3]
        for mine, theirs in zip(from_python[label][:3], from_r[label][:3]):
            assert mine == pytest.approx(theirs, abs=0.05), (label, from_python, from_r)


@FORMAT_ONLY
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed (.ci/run installs r-base-core)")
def test_the_r_starter_program_reads_the_csv_as_it_is_and_agrees(crossover):
    bundle = crossover
    result = subprocess.run(
        ["Rscript", str(bundle / "analysis" / "primary.R"), str(bundle)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    _check_program_output(result.stdout, bundle)
    assert re.search(r"^MIXED term=armB estimate=-?[\d.]+", result.stdout, re.M), result.stdout + result.stderr
    # R's read.csv with na.strings = "" reads the flags as logical, empty cells as NA.
    types = subprocess.run(
        [
            "Rscript",
            "-e",
            f"""x <- read.csv('{bundle / "fatigue_endpoints.csv"}', na.strings = "");
        s <- read.csv('{bundle / "side_effects.csv"}', na.strings = "");
        cat(class(x$responder_d3), class(s$solicited), class(x$pct_change_d3))""",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert types.stdout.split() == ["logical", "logical", "numeric"], types.stdout + types.stderr
    assert len(read_csv(bundle / "side_effects.csv")) == 8  # the flag was read from real rows


@FORMAT_ONLY
def test_sex_and_year_of_birth_are_taken_at_enrolment_on_the_web_and_the_command_line(runner, client, study):
    load_randomization_list(study, b"site,position,sequence\nNIH-CC,1,AB\n", actor="t", now=now_utc())
    db.session.commit()
    result = runner.invoke(
        args=[
            "diary",
            "enroll",
            "--site",
            "NIH-CC",
            "--code",
            "P-DM01",
            "--sequence",
            "AB",
            "--sex",
            "M",
            "--birth-year",
            "1960",
        ]
    )
    assert result.exit_code == 0, result.output
    login_as(client, "coordinator")
    form = client.get("/staff/enrol").get_data(as_text=True)
    assert 'name="sex"' in form and 'name="birth_year"' in form
    from .participant_helpers import action_key_from, csrf_from

    posted = client.post(
        "/staff/enrol",
        data={
            "csrf_token": csrf_from(form),
            "action_key": action_key_from(form),
            "site": "NIH-CC",
            "timezone": "UTC",
            "sex": "F",
            "birth_year": "1975",
        },
    )
    assert posted.status_code == 303, posted.get_data(as_text=True)[:500]
    people = {p.code: (p.sex, p.birth_year) for p in db.session.scalars(select(Participant))}
    assert people.pop("P-DM01") == ("M", 1960)
    assert list(people.values()) == [("F", 1975)]
    refused = runner.invoke(args=["diary", "enroll", "--site", "NIH-CC", "--sequence", "AB", "--birth-year", "1800"])
    assert refused.exit_code != 0 and "year of birth" in refused.output


# SDTMIG 3.4's Expected variables of the domains written (Core "Exp"), which must be present.
EXPECTED = {
    "DM": {
        "RFSTDTC",
        "RFENDTC",
        "RFXSTDTC",
        "RFXENDTC",
        "RFICDTC",
        "AGE",
        "AGEU",
        "ARMCD",
        "ARM",
        "ACTARMCD",
        "ACTARM",
    },
    "SE": {"TAETORD", "EPOCH", "SEENDTC", "SESTDY", "SEENDY"},
    "EX": {"EXSTDTC", "EPOCH", "EXSTDY"},
    "QS": {"QSCAT", "QSORRES", "QSSTRESC", "QSSTRESN", "QSLOBXFL", "VISITNUM", "QSDTC", "QSDY"},
    "AE": {"AESER", "AEACN", "AEREL", "AESTDTC", "AEENDTC", "AESTDY", "AEENDY", "EPOCH"},
    "DS": {"EPOCH", "DSSTDTC", "DSSTDY"},
    "TA": {"TABRANCH", "EPOCH"},
    "TE": {"TEENRL"},
    "TV": {"VISIT", "TVSTRL"},
}
ISO_8601 = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2})?)?)?)?")


@FORMAT_ONLY
def test_sdtmig_variable_level_rules_hold_for_every_domain(bundle):
    """What the open CORE engine checks at the variable level, written as tests (CORE itself does
    not install here: its pinned dependencies build from source): names and labels within SAS
    limits, Required variables never null (AEDECOD null only for a verbatim report not coded),
    Expected variables present, --SEQ unique per subject, no study day 0, --DTC in ISO 8601."""
    from diary.exports.define import REQUIRED
    from diary.exports.sdtm import DOMAINS

    for domain, (label, variables) in DOMAINS.items():
        names = [v.name for v in variables]
        assert len(label) <= 40 and all(re.fullmatch(r"[A-Z][A-Z0-9]{0,7}", n) for n in names), domain
        assert all(len(v.label) <= 40 for v in variables), domain
        assert EXPECTED.get(domain, set()) <= set(names), (domain, EXPECTED[domain] - set(names))
        rows = read_csv(bundle / "sdtm" / f"{domain.lower()}.csv")
        assert rows, domain
        for row in rows:
            for name in set(names) & REQUIRED:
                if name == "AEDECOD" and row["AECAT"] == "UNSOLICITED":
                    continue
                assert row[name] != "", (domain, name, row)
            assert row["DOMAIN"] == domain
            for name in names:
                if name.endswith("DY") and row[name]:
                    assert int(row[name]) != 0, (domain, name)
                if name.endswith("DTC") and row[name]:
                    assert ISO_8601.fullmatch(row[name]), (domain, name, row[name])
        sequence = next((n for n in names if n.endswith("SEQ") and n != "TSSEQ"), None)
        if sequence:
            keys = [(row["USUBJID"], row[sequence]) for row in rows]
            assert len(keys) == len(set(keys)), domain


@FORMAT_ONLY
def test_ex_carries_the_protocols_dose_only_with_the_drug_names_and_sv_every_visit(study, demo, tmp_path):
    """EX: form, route and the infusion's end (start + the protocol's 40 minutes) always; dose and
    unit, which differ between the drugs, only once the names are shown. SV: a visit for every
    VISITNUM of QS and EX, spanning its records."""
    protocol = protocol_of(study.current_protocol_version)
    write_bundle(tmp_path / "blinded", study=study, now=demo, true_allocation=True, standards=True)
    ex = read_csv(tmp_path / "blinded" / "sdtm" / "ex.csv")
    assert ex and {(r["EXDOSE"], r["EXDOSU"], r["EXDOSFRM"], r["EXROUTE"]) for r in ex} == {
        ("", "", "SOLUTION", "INTRAVENOUS")
    }
    for row in ex:
        start = datetime.fromisoformat(row["EXSTDTC"])
        assert datetime.fromisoformat(row["EXENDTC"]) - start == timedelta(minutes=40)
    qs = read_csv(tmp_path / "blinded" / "sdtm" / "qs.csv")
    sv = read_csv(tmp_path / "blinded" / "sdtm" / "sv.csv")
    visits = {(r["USUBJID"], r["VISITNUM"]): r for r in sv}
    assert len(visits) == len(sv)
    for row in qs:
        visit = visits[(row["USUBJID"], row["VISITNUM"])]
        assert visit["SVSTDTC"] <= row["QSDTC"] <= visit["SVENDTC"] and visit["VISIT"] == row["VISIT"]
    for row in ex:
        assert visits[(row["USUBJID"], row["VISITNUM"])]["SVSTDTC"] <= row["EXSTDTC"]

    ready_for_the_truth(study)
    unblind(study, user=make_staff("unblinded"), now=now_utc())
    db.session.commit()
    write_bundle(tmp_path / "open", study=study, now=demo, standards=True)
    sequences = {r["USUBJID"]: r["ARMCD"] for r in read_csv(tmp_path / "open" / "sdtm" / "dm.csv")}
    for row in read_csv(tmp_path / "open" / "sdtm" / "ex.csv"):
        code = protocol.sequences[sequences[row["USUBJID"]]][int(row["EXSEQ"]) - 1]
        assert (float(row["EXDOSE"]), row["EXDOSU"]) == (protocol.doses[code].dose, "mg/kg")
        assert row["EXTRT"] == protocol.treatments[code]


@FORMAT_ONLY
def test_minutes_and_hours_from_dose_recompute_exactly_from_the_exported_times(bundle):
    """Derived times come from the times as written (to the second), so an analyst recomputing
    them from the CSV gets every value, to the last digit."""

    def moment(text):
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")

    checked = 0
    for table in ("assessments", "responses"):
        rows = read_csv(bundle / f"{table}.csv")
        doses = {}
        if table == "responses":
            doses = {
                (r["participant_id"], r["period"]): r["dose_start_utc"]
                for r in read_csv(bundle / "assessments.csv")
                if r["dose_start_utc"]
            }
        for row in rows:
            dose = row.get("dose_start_utc") or doses.get((row["participant_id"], row["period"]))
            if not row["minutes_from_dose"] or not dose:
                continue
            minutes = round((moment(row["collected_utc"]) - moment(dose)).total_seconds() / 60, 1)
            assert float(row["minutes_from_dose"]) == minutes, (table, row)
            checked += 1
    assert checked > 200
    for row in read_csv(bundle / "fatigue_timecourse.csv"):
        if row["hours_from_dose"]:
            assert float(row["hours_from_dose"]) == round(float(row["hours_from_dose"]), 2)


@FORMAT_ONLY
def test_ds_rows_equal_the_participants_dispositions(study, demo, tmp_path):
    """DS: consent for every subject; treatment discontinued, withdrawn or completed exactly as the
    participants table says, with the dates it gives (on the participant's clock)."""
    from zoneinfo import ZoneInfo

    from diary.participants.enrolment import discontinue

    stopping = db.session.scalars(
        select(Participant).where(Participant.withdrawn_at.is_(None)).order_by(Participant.code.desc())
    ).first()
    discontinue(stopping, actor="t", now=demo, reason="nausea after infusion 1", category="adverse_event")
    db.session.commit()
    write_bundle(tmp_path, study=study, now=demo, true_allocation=True, standards=True)
    people = {row["participant_id"]: row for row in read_csv(tmp_path / "participants.csv")}
    zones = {p.code: ZoneInfo(p.timezone) for p in db.session.scalars(select(Participant))}
    ds: dict[str, dict[str, dict]] = {}
    for row in read_csv(tmp_path / "sdtm" / "ds.csv"):
        ds.setdefault(row["USUBJID"].removeprefix(f"{row['STUDYID']}-"), {})[row["DSSCAT"] or row["DSDECOD"]] = row

    def local(utc_text):
        return datetime.strptime(utc_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    assert ds.keys() == people.keys()
    for code, person in people.items():
        events = ds[code]
        assert "INFORMED CONSENT OBTAINED" in events
        zone = zones[code]
        if person["status"] == "withdrawn":
            row = events["STUDY PARTICIPATION"]
            assert row["DSDECOD"] == DSDECOD[person["withdrawal_reason"]]
            assert row["DSSTDTC"] == local(person["withdrawn_utc"]).astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
        elif "STUDY PARTICIPATION" in events:
            assert events["STUDY PARTICIPATION"]["DSDECOD"] == "COMPLETED" and person["status"] != "withdrawn"
        if person["discontinued_utc"]:
            row = events["STUDY TREATMENT"]
            assert row["DSDECOD"] == DSDECOD[person["discontinuation_reason"]]
            assert row["DSSTDTC"] == local(person["discontinued_utc"]).astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
        else:
            assert "STUDY TREATMENT" not in events
    assert (
        people[stopping.code]["status"] == "discontinued"
        and ds[stopping.code]["STUDY TREATMENT"]["DSDECOD"] == "ADVERSE EVENT"
    )
    assert any(p["status"] == "withdrawn" for p in people.values())
