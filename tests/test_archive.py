"""A site's archive (issue 28): reproducible, self-proving with no database, scoped to the site,
allocation-free until unblinding; and participants' own copies and treatment order."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pyotp
import pytest
from pypdf import PdfReader
from sqlalchemy import select

from diary.archive.build import SEALED, build_site_archive
from diary.archive.custody import confirm_received, refuse_unless_may_archive
from diary.archive.verify import verify_archive
from diary.demo import build_demo
from diary.documents import paper_time, render_pdf
from diary.dosing.infusions import record_dose
from diary.entries.change_requests import decide, open_request
from diary.entries.recording import record_submission
from diary.errors import Refused
from diary.exports.bundle import write_bundle
from diary.extensions import db
from diary.governance.signoff import sign_period
from diary.models import AuditEvent, Participant, SiteArchive, Submission, now_utc
from diary.participants.enrolment import enroll, reissue_link
from diary.protocol.model import in_language
from diary.study.blinding import treatment_order_for
from diary.study.trial import protocol_of, site_contact, unblind
from diary.vocabulary import AuditAction, ChangeRequestType, Role, Source

from .conftest import answers_for, assessment_of, ready_for_the_truth
from .participant_helpers import sign_in
from .staff_helpers import PASSWORD, TOTP_SECRET, any_csrf, login_as, make_staff

VAS = "fatigue_vas.fatigue"
SITE, OTHER_SITE = "NIH-CC", "HUVH"
ROOT = Path(__file__).resolve().parent.parent
SEQUENCE_WORD = re.compile(r"(?<![\w-])(AB|BA)(?![\w-])")


@pytest.fixture
def trial(study):
    """The demo study at NIH-CC, one participant at another site, a change request approved and
    a period signed for the first demo participant with entries."""
    now = now_utc().replace(microsecond=0)
    build_demo(now=now - timedelta(minutes=5))
    db.session.commit()
    protocol = protocol_of(study.current_protocol_version)
    elsewhere, _ = enroll(
        study, site=OTHER_SITE, timezone="Europe/Madrid", sequence="BA", actor="t", now=now - timedelta(days=12)
    )
    record_dose(elsewhere, 1, now - timedelta(days=10), actor="t", now=now - timedelta(days=10))
    baseline = assessment_of(elsewhere, 1, "BL")
    record_submission(
        baseline, answers_for(protocol, "BL", vas=77), now=baseline.window_close - timedelta(hours=1), actor="t"
    )
    db.session.commit()
    first = db.session.scalars(
        select(Participant)
        .join(Participant.periods)
        .where(Participant.site == SITE, Participant.withdrawn_at.is_(None))
        .order_by(Participant.code)
    ).first()
    submission = next(
        a.submission
        for a in first.periods[0].assessments
        if a.submission is not None and a.submission.source == Source.PARTICIPANT and a.timepoint == "M40"
    )
    coordinator, investigator = make_staff(Role.COORDINATOR), make_staff(Role.INVESTIGATOR)
    request = open_request(
        submission,
        VAS,
        "5",
        kind=ChangeRequestType.ENTERED_IN_ERROR,
        source="phone call with the participant",
        source_at=now - timedelta(minutes=4),
        reason="tapped 5, the line moved",
        by=coordinator,
        now=now - timedelta(minutes=3),
    )
    moment = now - timedelta(minutes=2)
    decide(request, approve=True, note="agreed", by=investigator, password=PASSWORD, code=_code(moment), now=moment)
    moment = now - timedelta(minutes=1)
    sign_period(first.periods[0], by=investigator, password=PASSWORD, code=_code(moment), now=moment)
    db.session.commit()
    return SimpleNamespace(now=now, first=first, request=request, protocol=protocol, elsewhere=elsewhere)


def _code(moment):
    return pyotp.TOTP(TOTP_SECRET).at(moment)


def build(study, out: Path, as_of) -> dict:
    return build_site_archive(
        out, study=study, site=SITE, as_of=as_of, language="en", render_pdf=render_pdf, app_version="test"
    )


def pdf_text(path_or_bytes) -> str:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return " ".join(" ".join(page.extract_text() for page in PdfReader(source).pages).split())


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def every_file(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rewrite_hashes(folder: Path) -> None:
    """What a forger who knows the format would do after changing a file: fix every hash."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        entry["sha256"] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    sums = "".join(f"{entry['sha256']}  {name}\n" for name, entry in manifest["files"].items())
    (folder / "SHA256SUMS").write_text(sums)
    manifest["archive_sha256"] = hashlib.sha256(sums.encode()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


# --- Reproducible and self-proving -------------------------------------------------------------


def test_the_archive_built_twice_is_the_same_bytes_and_verify_names_what_changed(study, trial, tmp_path):
    """Same snapshot -> same manifest and same files; only the site's participants are in it; one
    byte changed, a file removed or added, or an endpoint altered with every hash rewritten:
    verify-archive names each."""
    first, second = tmp_path / "first", tmp_path / "second"
    manifest = build(study, first, trial.now)
    assert build(study, second, trial.now) == manifest
    assert every_file(first) == every_file(second)
    site_codes = set(db.session.scalars(select(Participant.code).where(Participant.site == SITE)))
    assert {p.stem for p in (first / "participants").iterdir()} == site_codes
    assert {row["participant_id"] for row in read_csv(first / "data" / "participants.csv")} == site_codes
    assert trial.elsewhere.code not in (first / "data" / "responses.csv").read_text()
    assert manifest["participants"] == len(site_codes) and manifest["site"] == SITE

    report = verify_archive(first)
    assert report.ok, report.problems
    dosed = sum(
        1 for row in read_csv(first / "data" / "assessments.csv") if row["timepoint"] == "BL" and row["dose_start_utc"]
    )
    assert report.endpoint_rows == dosed > 10 and report.files_checked == len(manifest["files"])

    pdf = first / "participants" / f"{trial.first.code}.pdf"
    content = bytearray(pdf.read_bytes())
    content[len(content) // 2] ^= 0x01
    pdf.write_bytes(bytes(content))
    (first / "data" / "side_effects.csv").unlink()
    (first / "notes.txt").write_text("added later")
    problems = verify_archive(first).problems
    assert f"participants/{trial.first.code}.pdf: SHA-256 differs from the manifest (changed or damaged)" in problems
    assert "data/side_effects.csv: missing" in problems
    assert "notes.txt: not in the manifest (added)" in problems
    assert len(problems) == 3, problems

    # A forger changes a baseline and rewrites every hash: the endpoints no longer add up.
    endpoints = second / "data" / "fatigue_endpoints.csv"
    rows = read_csv(endpoints)
    target = next(row for row in rows if row["baseline_vas"])
    target["baseline_vas"] = str(int(target["baseline_vas"]) + 1)
    with open(endpoints, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    _rewrite_hashes(second)
    problems = verify_archive(second).problems
    assert problems == [
        f"fatigue_endpoints.csv {target['participant_id']} infusion {target['period']} baseline_vas: "
        f"exported {target['baseline_vas']!r}, recomputed {str(int(target['baseline_vas']) - 1)!r}"
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_with_the_database_deleted_verify_recomputes_the_endpoints_equal_to_the_export(
    app, study, trial, tmp_path, backend
):
    """The archive's endpoints are the study export's rows for the site; with the database file
    gone, `flask diary verify-archive` recomputes every one from the raw tables and agrees."""
    archive, export = tmp_path / "archive", tmp_path / "export"
    build(study, archive, trial.now)
    write_bundle(export, study=study, now=trial.now)
    site_codes = {row["participant_id"] for row in read_csv(archive / "data" / "participants.csv")}
    exported = [row for row in read_csv(export / "fatigue_endpoints.csv") if row["participant_id"] in site_codes]
    archived = read_csv(archive / "data" / "fatigue_endpoints.csv")
    blank = ("sequence", "treatment_code", "treatment", "allocation_is_dummy")
    assert [{k: v for k, v in row.items() if k not in blank} for row in archived] == [
        {k: v for k, v in row.items() if k not in blank} for row in exported
    ]

    database = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    db.session.remove()
    db.engine.dispose()
    database.unlink()
    env = {**os.environ, "DIARY_DATABASE_URL": f"sqlite:///{database}", "DIARY_SECRET_KEY": "x"}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "diary", "verify-archive", str(archive)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(archived)} endpoint rows ({len(archived) * 13} values) recomputed" in result.stdout
    assert "Archive verified" in result.stdout
    assert not database.exists(), "verify-archive must not touch a database"
    alone = subprocess.run(
        [sys.executable, "-m", "diary.archive.verify", str(archive)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alone.returncode == 0 and "Archive verified" in alone.stdout, alone.stdout + alone.stderr


# What the archive holds is decided the same way on both engines (the snapshot is tested on both).
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_participants_pdf_reads_like_a_paper_diary_with_its_audit_trail(backend, study, trial, tmp_path):
    """Text extracted from the PDF: each entry under its heading with its answers given, received
    and phone times, the change and its request, the signature, side effects, reminders and the
    audit trail."""
    build(study, tmp_path / "a", trial.now)
    text = pdf_text(tmp_path / "a" / "participants" / f"{trial.first.code}.pdf")
    participant = db.session.get(Participant, trial.first.id)
    tz = participant.timezone
    entries = [a for period in participant.periods for a in period.assessments if a.submission is not None]
    assert len(entries) >= 5
    for assessment in entries:
        submission = assessment.submission
        heading = f"Infusion {assessment.period.number} · {assessment.timepoint} · "
        start = text.index(heading)
        end = text.find("Infusion ", start + len(heading) + 40)
        section = text[start : end if end > 0 else None]
        vas = next(v.value for v in submission.values if v.instrument == "fatigue_vas")
        assert f"Answers given {paper_time(submission.collected_at, tz)}" in section, section
        assert f"Received by the diary {paper_time(submission.submitted_at, tz)}" in section
        assert f"Fatigue right now {vas}" in section, section
    assert f"from “{trial.request.current_value}” to “5” (data change request {trial.request.id})" in text
    assert "phone call with the participant" in text and "approved" in text
    assert "investigator@site.test" in text and "signed" in text
    assert "The treatment allocation is withheld" in text
    for event in db.session.scalars(select(AuditEvent).where(AuditEvent.participant_id == participant.id)):
        if event.action != AuditAction.ASSIGN_RANDOMIZATION_SLOT:
            assert event.action in text
    assert AuditAction.ASSIGN_RANDOMIZATION_SLOT not in text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_site_archive_prints_in_the_sites_language(app, study, trial, tmp_path, backend):
    """DIARY_SITE_LANGUAGES picks the PDFs' language: Spanish headings and the questions as the
    protocol words them in Spanish."""
    app.config["SITE_LANGUAGES"] = {SITE: "es"}
    result = app.test_cli_runner().invoke(args=["diary", "archive", "--site", SITE, "--out", str(tmp_path / "es")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "es" / "manifest.json").read_text())["language"] == "es"
    text = pdf_text(tmp_path / "es" / "participants" / f"{trial.first.code}.pdf")
    fatigue = trial.protocol.instruments["fatigue_vas"]
    assert f"Diario de {trial.first.code}" in text and "Respuestas dadas" in text and "Registro de auditoría" in text
    assert in_language(fatigue.title, "es") in text and "Answers given" not in text


# What the archive holds is decided the same way on both engines (the snapshot is tested on both).
@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_allocation_is_in_an_archive_only_after_unblinding(backend, study, trial, tmp_path):
    """Before: no sequence, no treatment code, no sealed name in any file or PDF (the protocol's
    names sealed). After the lock and unblinding: each participant's true sequence and drugs."""
    sealed = [name.lower() for name in trial.protocol.treatments.values()]
    before = tmp_path / "before"
    build(study, before, trial.now)
    for name, content in every_file(before).items():
        text = pdf_text(content) if name.endswith(".pdf") else content.decode("utf-8")
        if name == "data/data_dictionary.csv":
            # The dictionary names the two drugs in alphabetical order (as the consent form does),
            # never which code is which: that mapping is the protocol's, sealed below.
            assert "after unblinding " + "; ".join(sorted(trial.protocol.treatments.values())) in text
            continue
        assert not any(drug in text.lower() for drug in sealed), name
        if name.startswith("participants/"):
            assert not SEQUENCE_WORD.search(text), name
    for table in ("assessments", "responses", "fatigue_endpoints", "participants"):
        rows = read_csv(before / "data" / f"{table}.csv")
        assert rows and {row["sequence"] for row in rows} == {""}, table
    assert {row["ARMCD"] for row in read_csv(before / "data" / "sdtm" / "dm.csv")} == {""}
    sealed_protocol = (before / "protocol" / "ketamine-fatigue-crossover-1.3.yaml").read_text()
    assert SEALED in sealed_protocol and "dose:" not in sealed_protocol and "unit: mg/kg" in sealed_protocol

    ready_for_the_truth(study)
    unblind(study, user=make_staff(Role.UNBLINDED), now=now_utc())
    db.session.commit()
    after = tmp_path / "after"
    manifest = build(study, after, trial.now)
    assert manifest["allocation"].startswith("true allocation")
    truth = dict(
        db.session.execute(select(Participant.code, Participant.sequence).where(Participant.site == SITE)).all()
    )
    assert {row["participant_id"]: row["sequence"] for row in read_csv(after / "data" / "participants.csv")} == truth
    first_drug = trial.protocol.treatments[trial.protocol.sequences[truth[trial.first.code]][0]]
    assert first_drug in pdf_text(after / "participants" / f"{trial.first.code}.pdf")
    assert verify_archive(after).ok


# What the archive holds is decided the same way on both engines (the snapshot is tested on both).
@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_command_line_builds_verifies_and_audits(backend, runner, study, trial, tmp_path):
    out = tmp_path / "archive-nih"
    result = runner.invoke(args=["diary", "archive", "--site", SITE, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "archive sha256" in result.output
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.ARCHIVE_BUILT)).one()
    assert (
        event.actor == "cli"
        and event.field == SITE
        and json.loads((out / "manifest.json").read_text())["archive_sha256"] in (event.new_value or "")
    )
    checked = runner.invoke(args=["diary", "verify-archive", str(out)])
    assert checked.exit_code == 0 and "Archive verified" in checked.output
    (out / "data" / "responses.csv").write_text("participant_id\n")
    broken = runner.invoke(args=["diary", "verify-archive", str(out)])
    assert broken.exit_code == 1 and "data/responses.csv: SHA-256 differs" in broken.output
    again = runner.invoke(args=["diary", "archive", "--site", SITE, "--out", str(out)])
    assert again.exit_code != 0 and "is not empty" in again.output
    nowhere = runner.invoke(args=["diary", "archive", "--site", "NOWHERE", "--out", str(tmp_path / "x")])
    assert nowhere.exit_code != 0 and "No participant is enrolled at site NOWHERE" in nowhere.output


# --- Custody and site scoping -----------------------------------------------------------------


def test_who_may_take_a_sites_archive_refusals_where_the_rule_lives():
    for role in (Role.ANALYST, Role.ADMIN, Role.UNBLINDED, Role.EMERGENCY):
        with pytest.raises(Refused) as refused:
            refuse_unless_may_archive(role, None, SITE)
        assert refused.value.status == 403
    with pytest.raises(Refused) as refused:
        refuse_unless_may_archive(Role.INVESTIGATOR, OTHER_SITE, SITE)
    assert refused.value.status == 403 and OTHER_SITE in refused.value.message
    refuse_unless_may_archive(Role.INVESTIGATOR, SITE, SITE)
    refuse_unless_may_archive(Role.COORDINATOR, None, OTHER_SITE)
    with pytest.raises(Refused) as refused:
        confirm_received(
            actor="t", staff_id=1, archive=SimpleNamespace(received_at=now_utc(), site=SITE), now=now_utc()
        )
    assert refused.value.status == 409


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_web_archive_is_the_sites_own_and_its_custody_is_audited(app, client, study, trial, backend):
    """Another site's investigator and the analyst get 403; the site's investigator builds,
    downloads (the zip's manifest holds the recorded hash) and confirms receipt, once."""
    outsider = make_staff(Role.INVESTIGATOR, "outsider@site.test")
    outsider.site = OTHER_SITE
    owner = make_staff(Role.INVESTIGATOR, "owner@site.test")
    owner.site = SITE
    db.session.commit()
    login_as(client, Role.INVESTIGATOR, "outsider@site.test")
    page = client.get("/staff/archive").get_data(as_text=True)
    assert f'value="{OTHER_SITE}"' in page and f'value="{SITE}"' not in page
    assert client.post("/staff/archive", data={"csrf_token": any_csrf(client), "site": SITE}).status_code == 403
    analyst = app.test_client()
    login_as(analyst, Role.ANALYST)
    assert analyst.get("/staff/archive").status_code == 403

    mine = app.test_client()
    login_as(mine, Role.INVESTIGATOR, "owner@site.test")
    assert mine.post("/staff/archive", data={"csrf_token": any_csrf(mine), "site": SITE}).status_code == 302
    archive = db.session.scalars(select(SiteArchive)).one()
    assert client.get(f"/staff/archive/{archive.id}/download").status_code == 403
    assert (
        client.post(f"/staff/archive/{archive.id}/received", data={"csrf_token": any_csrf(client)}).status_code == 403
    )
    download = mine.get(f"/staff/archive/{archive.id}/download")
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert hashlib.sha256(download.get_data()).hexdigest() == archive.zip_sha256
    packed = zipfile.ZipFile(io.BytesIO(download.get_data()))
    manifest = json.loads(
        packed.read(next(n for n in packed.namelist() if n.endswith("/manifest.json") and n.count("/") == 1))
    )
    assert manifest["archive_sha256"] == archive.archive_sha256 and manifest["site"] == SITE
    assert mine.post(f"/staff/archive/{archive.id}/received", data={"csrf_token": any_csrf(mine)}).status_code == 302
    assert mine.post(f"/staff/archive/{archive.id}/received", data={"csrf_token": any_csrf(mine)}).status_code == 409
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity == "archive").order_by(AuditEvent.id)
    ).all()
    assert actions == [AuditAction.ARCHIVE_BUILT, AuditAction.ARCHIVE_DOWNLOADED, AuditAction.ARCHIVE_RECEIVED]
    db.session.expire_all()
    assert archive.received_by.email == "owner@site.test" and archive.downloaded_at is not None


# --- Data returned to participants -------------------------------------------------------------


def _phone(app, participant):
    token = reissue_link(participant, actor="t", now=now_utc())
    db.session.commit()
    phone = app.test_client()
    sign_in(phone, token)
    return phone


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_participants_download_equals_their_rows_in_the_export(app, study, trial, tmp_path, backend):
    participant = db.session.get(Participant, trial.first.id)
    participant.language = "es"
    db.session.commit()
    phone = _phone(app, participant)
    history = phone.get("/p/history").get_data(as_text=True)
    assert "/p/history/my-answers.csv" in history and "/p/history/my-answers.pdf" in history
    response = phone.get("/p/history/my-answers.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    write_bundle(tmp_path / "export", study=study, now=now_utc())
    exported = [r for r in read_csv(tmp_path / "export" / "responses.csv") if r["participant_id"] == participant.code]
    key = ("period", "timepoint", "instrument", "item", "value")
    mine = [(r["infusion"], r["time_point"], r["instrument"], r["item"], r["answer"]) for r in rows]
    instruments = {r["instrument"] for r in exported}
    assert sorted(m for m in mine if m[2] in instruments) == sorted(tuple(r[k] for k in key) for r in exported)
    side_effects = sorted(m[3:] for m in mine if m[2] == "side_effects")
    stored = sorted(
        (value.item, value.value)
        for submission in db.session.scalars(select(Submission))
        if submission.assessment.period.participant_id == participant.id
        for value in submission.values
        if value.instrument == "side_effects"
    )
    assert side_effects == stored and side_effects
    fatigue = trial.protocol.instruments["fatigue_vas"].items[0]
    assert {r["question"] for r in rows if r["instrument"] == "fatigue_vas"} == {in_language(fatigue.text, "es")}

    pdf = phone.get("/p/history/my-answers.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = pdf_text(pdf.get_data())
    assert text.count(in_language(fatigue.text, "es")) == sum(1 for r in rows if r["instrument"] == "fatigue_vas")
    downloads = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == AuditAction.OWN_DATA_DOWNLOADED, AuditEvent.participant_id == participant.id
        )
    ).all()
    assert len(downloads) == 2


def test_the_treatment_order_rule_where_it_lives(study):
    protocol = protocol_of(study.current_protocol_version)
    asked = SimpleNamespace(told_treatment_order=True, sequence="BA")
    assert treatment_order_for(SimpleNamespace(unblinded_at=None), asked, protocol) is None
    unblinded = SimpleNamespace(unblinded_at=now_utc())
    assert treatment_order_for(unblinded, SimpleNamespace(told_treatment_order=False, sequence="BA"), protocol) is None
    assert treatment_order_for(unblinded, asked, protocol) == [
        (1, protocol.treatments["B"]),
        (2, protocol.treatments["A"]),
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_treatment_order_shows_only_after_unblinding_and_only_to_those_who_asked(app, study, trial, backend):
    protocol = trial.protocol
    sealed = [name.lower() for name in protocol.treatments.values()]
    now = now_utc()
    asker, _ = enroll(study, site=SITE, timezone="UTC", sequence="BA", actor="t", now=now, told_treatment_order=True)
    other, _ = enroll(study, site=SITE, timezone="UTC", sequence="AB", actor="t", now=now)
    db.session.commit()
    phone, other_phone = _phone(app, asker), _phone(app, other)
    for url in ("/p/today", "/p/history", "/p/settings", "/p/history/my-answers.csv"):
        page = phone.get(url).get_data(as_text=True)
        assert not any(drug in page.lower() for drug in sealed), url
        assert "treatment-order" not in page and not SEQUENCE_WORD.search(re.sub(r"<[^>]+>", " ", page)), url
    assert not any(drug in pdf_text(phone.get("/p/history/my-answers.pdf").get_data()).lower() for drug in sealed)

    ready_for_the_truth(study)
    unblind(study, user=make_staff(Role.UNBLINDED), now=now_utc())
    db.session.commit()
    today = phone.get("/p/today").get_data(as_text=True)
    assert f"Infusion 1: {protocol.treatments['B']}" in today and f"Infusion 2: {protocol.treatments['A']}" in today
    assert site_contact(SITE) in today
    other_today = other_phone.get("/p/today").get_data(as_text=True)
    assert "treatment-order" not in other_today and not any(drug in other_today.lower() for drug in sealed)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_participant_changes_their_mind_in_settings_audited(app, study, trial, backend):
    participant, _ = enroll(study, site=SITE, timezone="UTC", sequence="AB", actor="t", now=now_utc())
    db.session.commit()
    phone = _phone(app, participant)
    page = phone.get("/p/settings").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "push": "on", "calendar": "on", "language": "en", "told_treatment_order": "on"}
    assert phone.post("/p/settings", data=form).status_code == 302
    db.session.expire_all()
    assert db.session.get(Participant, participant.id).told_treatment_order is True
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == AuditAction.CHANGE_TOLD_TREATMENT)).one()
    assert (event.old_value, event.new_value, event.participant_id) == ("False", "True", participant.id)
