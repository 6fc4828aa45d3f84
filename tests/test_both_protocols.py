"""The participant's, the coordinator's, the reminders' and the exports' paths, run on both
shipped protocols: the ketamine crossover (two infusions, recorded by the study team) and the
parallel-group daily pain diary (one arm, no infusions: day 1 is the randomization date, every
entry an evening one). Nothing here names a time point: each test asks the protocol."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from diary.demo import build_demo
from diary.dosing import assessments
from diary.dosing.infusions import record_dose
from diary.errors import Refused
from diary.exports import write_bundle
from diary.extensions import db
from diary.models import AuditEvent, Reminder, now_utc
from diary.participants.enrolment import enroll
from diary.reminders.dispatch import run_pass
from diary.reminders.planning import plan
from diary.study.trial import protocol_of
from diary.vocabulary import AssessmentState, ReminderKind, Role

from .conftest import NOW, answers_for
from .participant_helpers import csrf_from, key_from, sign_in, zone_at
from .staff_helpers import any_csrf, login_as
from .test_exports import read_csv
from .test_reminders import smtp, text_of  # noqa: F401  (smtp: the fixture)

PROTOCOLS = ["ketamine-fatigue-crossover", "daily-pain-parallel"]
both = pytest.mark.parametrize("app", [{"PROTOCOL": name} for name in PROTOCOLS], indirect=True, ids=PROTOCOLS)


def evening_zone(now) -> str:
    """A fixed-offset zone whose clock reads 20:xx at ``now``: the daily diary's evening."""
    return zone_at(now, 20)


def with_an_open_entry(study, code: str):
    """A participant with a home entry open now, whichever the protocol: an infusion 22 hours ago
    (Day 1 is open, in the participant's afternoon, so its reminder is not held for quiet hours),
    or a randomization this evening (tonight's entry is open)."""
    protocol = protocol_of(study.current_protocol_version)
    now = now_utc()
    first_sequence = next(iter(protocol.sequences))
    if protocol.has_infusions:
        participant, token = enroll(
            study,
            site="NIH-CC",
            timezone=zone_at(now, 14),
            sequence=first_sequence,
            actor="test",
            now=now - timedelta(days=5),
            code=code,
            email=f"{code.lower()}@example.org",
        )
        record_dose(participant, 1, (now - timedelta(hours=22)).replace(second=0, microsecond=0), actor="t", now=now)
    else:
        participant, token = enroll(
            study,
            site="NIH-CC",
            timezone=evening_zone(now),
            sequence=first_sequence,
            actor="test",
            now=now - timedelta(minutes=5),
            code=code,
            email=f"{code.lower()}@example.org",
        )
    db.session.commit()
    rows = assessments.load(now, participant_ids=[participant.id])
    timepoints = {tp.code: tp for tp in protocol.timepoints}
    entry = next(r for r in rows if r.state == AssessmentState.OPEN and timepoints[r.timepoint].at_home)
    later = next(r for r in rows if r.state == AssessmentState.UPCOMING and r.target > entry.target)
    return protocol, participant, token, entry, later


@both
def test_a_participant_makes_the_open_entry_and_sees_it_kept(client, study):
    """Today names the open entry as the protocol does; the form takes a complete answer once
    (a retry of the same submit stores nothing twice); a later entry is refused as not open."""
    protocol, participant, token, entry, later = with_an_open_entry(study, "P-BOTH01")
    today = sign_in(client, token).get_data(as_text=True)
    label = str(protocol.timepoint(entry.timepoint).participant_label)
    title = f"Infusion 1 · {label}" if protocol.has_infusions else label
    assert f"<h2>{title}</h2>" in today and f"/p/entry/{entry.id}" in today
    assert protocol.has_infusions or "Infusion" not in today
    html = client.get(f"/p/entry/{entry.id}").get_data(as_text=True)
    form = {
        **answers_for(protocol, entry.timepoint, vas=37),
        "csrf_token": csrf_from(html),
        "idempotency_key": key_from(html),
        "step": "submit",
    }
    saved = client.post(f"/p/entry/{entry.id}", data=form, follow_redirects=True)
    assert saved.status_code == 200 and "Saved" in saved.get_data(as_text=True)
    assert client.post(f"/p/entry/{entry.id}", data=form).status_code in (200, 302, 409)
    rows = {r.id: r for r in assessments.load(now_utc(), participant_ids=[participant.id])}
    assert rows[entry.id].state == AssessmentState.COMPLETED and rows[entry.id].source == "participant"
    submissions = db.session.scalars(
        select(AuditEvent).where(AuditEvent.participant_id == participant.id, AuditEvent.action == "submit")
    ).all()
    assert len(submissions) == 1
    refused = client.get(f"/p/entry/{later.id}")
    assert refused.status_code == 409 and "not open yet" in refused.get_data(as_text=True)


@both
def test_the_coordinator_sees_the_participant_and_records_infusions_only_where_there_are_some(client, study):
    protocol, participant, _, entry, _ = with_an_open_entry(study, "P-BOTH02")
    login_as(client, Role.COORDINATOR)
    home = client.get("/staff/")
    assert home.status_code == 200 and participant.code in home.get_data(as_text=True)
    page = client.get(f"/staff/participants/{participant.code}").get_data(as_text=True)
    assert entry.timepoint in page
    assert ("Record infusion" in page or "Correct infusion" in page) == protocol.has_infusions
    assert ("day 1 from randomization" in page) != protocol.has_infusions
    dose_page = client.get(f"/staff/participants/{participant.code}/dose/1")
    if protocol.has_infusions:
        assert dose_page.status_code == 200
    else:
        assert dose_page.status_code == 409 and "no infusions" in dose_page.get_data(as_text=True)
        posted = client.post(
            f"/staff/participants/{participant.code}/dose/1",
            data={"csrf_token": any_csrf(client), "start": "2026-01-01 09:00", "reason": "x", "key": "k"},
        )
        assert posted.status_code == 409
        with pytest.raises(Refused, match="no infusions"):
            record_dose(participant, 1, now_utc(), actor="t", now=now_utc())


@both
def test_reminders_go_out_for_the_open_home_entry_named_as_the_protocol_names_it(app, smtp, study):  # noqa: F811
    protocol, participant, _, entry, _ = with_an_open_entry(study, "P-BOTH03")
    plan(now_utc())
    db.session.commit()
    reminder = db.session.scalars(
        select(Reminder).where(Reminder.assessment_id == entry.id, Reminder.kind == ReminderKind.WINDOW_OPEN)
    ).one()
    assert entry.window_open <= reminder.due_at < entry.window_close
    result = run_pass(app, now=reminder.due_at + timedelta(minutes=1))
    assert result.sent >= 1
    body = text_of(next(m for m in smtp.inbox.messages if m["To"] == participant.email))
    label = str(protocol.timepoint(entry.timepoint).participant_label)
    assert (f"Infusion 1 · {label}" if protocol.has_infusions else label) in body
    assert protocol.has_infusions or "Infusion" not in body
    if not protocol.has_infusions:  # the evening entry opens at 18:00 on the participant's clock
        assert entry.window_open.astimezone(_zone(participant)).strftime("%H:%M") == "18:00"


def _zone(participant):
    from zoneinfo import ZoneInfo

    return ZoneInfo(participant.timezone)


@both
def test_the_demo_exports_the_protocols_endpoints_and_its_programs_agree(study, tmp_path):
    """The demo under each protocol, exported: its endpoint tables by its names, each row's
    primary endpoint the declared change of the measure from the declared baseline, the data
    dictionary describing them, and (where R is installed) both starter programs agreeing."""
    protocol = protocol_of(study.current_protocol_version)
    build_demo(now=NOW)
    db.session.commit()
    out = tmp_path / "bundle"
    write_bundle(out, study=study, now=NOW, standards=True, true_allocation=True)
    plan_ = protocol.endpoints
    rows = read_csv(out, plan_.endpoints_table)
    course = read_csv(out, plan_.timecourse_table)
    assert rows and course
    primary, measure = plan_.primary, f"{plan_.name}_{plan_.primary_at.lower()}"
    checked = 0
    for row in rows:
        if row[primary] == "":
            continue
        baseline, value = float(row[f"baseline_{plan_.name}"]), float(row[measure])
        expected = value - baseline if plan_.primary_change == "change" else (value - baseline) / baseline * 100
        assert float(row[primary]) == pytest.approx(expected, abs=0.01)
        checked += 1
    assert checked >= 3
    dictionary = {(r["table"], r["column"]) for r in read_csv(out, "data_dictionary")}
    assert (plan_.endpoints_table, primary) in dictionary
    if not protocol.has_infusions:
        scores = read_csv(out, "scores")
        assert scores and all(0 <= int(r["value"]) <= 40 for r in scores if r["value"])
        assert ("scores", "value") in dictionary
        assert {r["period"] for r in rows} == {"1"} and {r["sequence"] for r in rows} <= set(protocol.sequences)
    if shutil.which("Rscript") is None:
        return
    python = subprocess.run(
        [sys.executable, str(out / "analysis" / "primary.py"), str(out)], capture_output=True, text=True, timeout=120
    )
    r = subprocess.run(["Rscript", str(out / "analysis" / "primary.R"), str(out)], capture_output=True, text=True)
    assert python.returncode == 0 and r.returncode == 0, python.stderr + r.stderr
    # The same means, and the same estimate of the model each design calls for.
    means = re.compile(r"^MEAN (.*) mean=(-?[\d.]+)", re.M)
    assert means.findall(python.stdout) == means.findall(r.stdout) != []
    label = "MIXEDALL" if plan_.split == "period" else "ANCOVA"
    estimate = re.compile(rf"^{label} term=\S+ estimate=(-?[\d.]+)", re.M)
    mine, theirs = estimate.search(python.stdout), estimate.search(r.stdout)
    assert mine and theirs, python.stdout + r.stdout
    assert float(mine.group(1)) == pytest.approx(float(theirs.group(1)), abs=0.05)


@both
def test_the_protocols_standards_exports_validate(study, tmp_path):
    """SDTM as Dataset-JSON v1.1 against CDISC's schema, and define.xml against the Define-XML
    2.1 XSDs, under either protocol."""
    import json
    from pathlib import Path

    import odmlib
    import xmlschema
    from jsonschema import Draft201909Validator

    from .test_exports_exchange import SCHEMAS

    build_demo(now=NOW)
    db.session.commit()
    out = tmp_path / "bundle"
    write_bundle(out, study=study, now=NOW, standards=True)
    validator = Draft201909Validator(json.loads((SCHEMAS / "dataset-json-1-1.schema.json").read_text()))
    for document in sorted((out / "sdtm").glob("*.json")):
        assert list(validator.iter_errors(json.loads(document.read_text()))) == [], document.name
    schema = xmlschema.XMLSchema(str(Path(odmlib.__file__).parent / "schemas" / "define" / "2.1" / "define2-1-0.xsd"))
    assert list(schema.iter_errors(str(out / "sdtm" / "define.xml"))) == []


PAGES = {
    Role.COORDINATOR: [
        "/staff/",
        "/staff/follow-up",
        "/staff/enrol",
        "/staff/side-effects",
        "/staff/summary",
        "/staff/protocol",
        "/staff/change-requests",
        "/staff/audit-review",
        "/staff/archive",
        "/staff/coding",
    ],
    Role.INVESTIGATOR: ["/staff/sign-off", "/staff/change-requests", "/staff/protocol"],
    Role.ANALYST: ["/staff/summary", "/staff/exports"],
    Role.ADMIN: ["/staff/audit", "/staff/admin/lock", "/staff/protocol", "/staff/status"],
}


@both
def test_every_staff_page_shows_the_demo_under_either_protocol(client, study):
    """The demo loaded around now: each role's pages render, each participant's page too, and
    the summary speaks of the protocol's measure and change."""
    protocol = protocol_of(study.current_protocol_version)
    build_demo(now=now_utc())
    db.session.commit()
    plan_ = protocol.endpoints
    for role, paths in PAGES.items():
        login_as(client, role, f"{role}-pages@site.test")
        for path in paths:
            page = client.get(path)
            assert page.status_code == 200, (role, path, page.status_code)
            if path == "/staff/summary":
                words = "% change" if plan_.primary_change == "pct_change" else "change"
                label = plan_.label[:1].lower() + plan_.label[1:]
                assert f"Mean {words} of the {label} from each period" in page.get_data(as_text=True)
        client.post("/staff/logout", data={"csrf_token": any_csrf(client)})
    login_as(client, Role.COORDINATOR, "coordinator-pages@site.test")
    from diary.models import Participant

    charted = 0
    for code in db.session.scalars(select(Participant.code)).all():
        page = client.get(f"/staff/participants/{code}")
        assert page.status_code == 200, code
        charted += f"{plan_.label} of {code}" in page.get_data(as_text=True)  # the measure's chart
    assert charted >= 5
