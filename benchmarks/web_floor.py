"""The web benchmark's floor: a participant's submit done in a bare Flask app, the least that
storing an entry asks of any web app, with none of the diary's request machinery.

It does a submit's work on the diary's own database and tables: checks the phone's signed cookie
and the form's CSRF token (the same secret, salts and session cookie as the diary, so the forms
the diary served are valid here), reads in one Core statement what the rules need (the
participant's phone fields, the assessment with its period and protocol version, any stored
submission, the study lock), judges the window and the answers with the diary's own rules
(``window_refusal``, ``validate_answers``), and writes with the diary's own statements
(``write_submission``) plus the reminders' cancel, in one transaction. What it leaves out is what
the diary adds around that work: Flask-SQLAlchemy's session and ORM objects, the hooks that run
before every request (the refusal of unstorable text, the lock check as a statement of its own),
Flask-Babel, the security headers, the signal to the reminders.

Its ratio to the bare INSERT says how much of the diary's distance from the goal is the
submit's own work; the diary's ratio to the floor, how much is the diary's machinery.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from types import SimpleNamespace

from flask import Flask, abort, redirect, request
from flask_wtf.csrf import CSRFError, validate_csrf
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import bindparam, create_engine, select

from diary.database import engine_options, tune_sqlite
from diary.entries.recording import (
    DEVICE_COLUMNS,
    answers_summary,
    device_facts,
    validate_answers,
    window_refusal,
    write_submission,
)
from diary.governance import audit
from diary.models import Assessment, Participant, Period, ProtocolVersion, Study, Submission
from diary.protocol.loader import parse_protocol
from diary.reminders.planning import CANCEL_FOR
from diary.vocabulary import AuditAction, Source, SubmissionMode
from diary.web.auth import phone_still_holds

# What the rules read, in one statement (the diary reads it in three: the lock, the participant,
# the assessment with its period, version and submission).
FACTS = (
    select(
        Participant.pin_hash,
        Participant.pin_generation,
        Participant.session_generation,
        Participant.link_revoked_at,
        Participant.link_token_hash,
        Assessment.id,
        Assessment.timepoint,
        Assessment.window_open,
        Assessment.late_close,
        Assessment.target,
        Assessment.not_applicable,
        Assessment.protocol_version_id,
        Period.number,
        Period.dose_start,
        Period.planned_start,
        Period.participant_id,
        Submission.id.label("submission_id"),
        select(Study.locked_at).order_by(Study.id).limit(1).scalar_subquery().label("locked_at"),
    )
    .select_from(Assessment)
    .join(Period, Assessment.period_id == Period.id)
    .join(Participant, Period.participant_id == Participant.id)
    .outerjoin(Submission, Submission.assessment_id == Assessment.id)
    .where(Assessment.id == bindparam("assessment"), Period.participant_id == bindparam("participant"))
)


def install(app: Flask) -> None:
    """Add ``POST /floor/<assessment>`` to ``app``, on the diary's database."""
    url, secret = os.environ["DIARY_DATABASE_URL"], os.environ["DIARY_SECRET_KEY"]
    app.secret_key = secret
    app.config["WTF_CSRF_TIME_LIMIT"] = 4 * 3600
    engine = create_engine(url, **engine_options(url, {}))
    if url.startswith("sqlite"):
        tune_sqlite(engine)
    phone = URLSafeTimedSerializer(secret, salt="diary-participant-phone")
    protocols = {}  # protocol version id -> parsed protocol (the diary parses each once too)

    def protocol_for(connection, version_id: int):
        if version_id not in protocols:
            text = connection.scalar(select(ProtocolVersion.source_text).where(ProtocolVersion.id == version_id))
            protocols[version_id] = parse_protocol(text, source="floor")
        return protocols[version_id]

    @app.post("/floor/<int:assessment_id>")
    def floor(assessment_id):
        try:
            claims = phone.loads(request.cookies.get("diary_phone", ""), max_age=30 * 86400)
            validate_csrf(request.form.get("csrf_token"))
        except (BadSignature, CSRFError, ValueError):
            abort(400)
        form, now = request.form, datetime.now(UTC)
        with engine.begin() as connection:
            facts = connection.execute(FACTS, {"assessment": assessment_id, "participant": claims["p"]}).first()
            if facts is None:
                abort(404)
            if facts.locked_at is not None:
                abort(423)
            if not phone_still_holds(facts, claims):
                abort(401)
            if facts.submission_id is not None:
                abort(409)
            period = SimpleNamespace(dose_start=facts.dose_start, planned_start=facts.planned_start)
            assessment = SimpleNamespace(**facts._asdict(), period=period)
            if window_refusal(assessment, now):
                abort(409)
            answers = validate_answers(protocol_for(connection, facts.protocol_version_id), facts.timepoint, form)
            if answers.errors:
                abort(422)
            device = device_facts(form.get("device"), request.user_agent.string)
            row = dict(
                assessment_id=facts.id,
                submitted_at=now,
                collected_at=now,
                device_time=None,
                source=Source.PARTICIPANT,
                reason=None,
                entered_by_id=None,
                idempotency_key=form.get("idempotency_key"),
                alert=bool(answers.alerts),
                submission_mode=SubmissionMode.ONLINE,
                **{name: device.get(name) for name in DEVICE_COLUMNS},
            )
            event = audit.row(
                actor=f"participant {facts.participant_id}",
                action=AuditAction.SUBMIT,
                entity="submission",
                entity_id=None,
                participant_id=facts.participant_id,
                field=f"period {facts.number} {facts.timepoint}",
                now=now,
                new=answers_summary(answers.values),
            )
            write_submission(connection, row, answers.values, event)
            connection.execute(CANCEL_FOR, {"cancel_assessment": facts.id, "cancel_reason": "entry completed"})
        return redirect(f"/p/entry/{assessment_id}/saved")
