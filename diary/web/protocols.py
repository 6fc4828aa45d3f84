"""The study's protocol on the staff pages: its versions, and the calendar one participant would
live through under it (``reminders.preview``), for the study team to check before enrolling."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from ..dosing.amendments import APPROVERS, approve_amendment, check_amendment, propose_amendment, withdraw_amendment
from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.second_factor import reauthenticate
from ..models import ProtocolAmendment, now_utc
from ..reminders.preview import preview
from ..study.trial import protocol_of, require_study
from ..vocabulary import AmendmentState, Role
from .auth import roles_required
from .forms import AmendmentForm, ApproveAmendmentForm, PreviewForm, WithdrawAmendmentForm

bp = Blueprint("protocols", __name__, url_prefix="/staff/protocol")

# Who schedules participants, and who amends the protocol.
READERS = (Role.ADMIN, Role.COORDINATOR, Role.INVESTIGATOR)


@bp.get("")
@roles_required(*READERS)
def overview():
    protocol = protocol_of(require_study().current_protocol_version)
    form = PreviewForm(request.args)
    calendar, status = None, 200
    if request.args:
        if form.validate():
            calendar = preview(protocol, form.timezone.data, form.start.data)
        else:
            status = 422
    else:
        form.start.data = datetime.combine(now_utc().date(), datetime.min.time()).replace(hour=9)
    return _overview(form=form, calendar=calendar, status=status)


def _overview(*, form=None, calendar=None, status=200, amendment_form=None, checked=None):
    study = require_study()
    version = study.current_protocol_version
    amendments = db.session.scalars(
        select(ProtocolAmendment).where(ProtocolAmendment.study_id == study.id).order_by(ProtocolAmendment.id.desc())
    ).all()
    if amendment_form is None and g.staff.role == Role.ADMIN:
        amendment_form = AmendmentForm()
    return (
        render_template(
            "protocols/overview.html",
            study=study,
            version=version,
            protocol=protocol_of(version),
            versions=study.protocol_versions,
            form=form or PreviewForm(formdata=None),
            calendar=calendar,
            amendments=amendments,
            amendment_form=amendment_form,
            checked=checked,
            approve_form=ApproveAmendmentForm(),
            withdraw_form=WithdrawAmendmentForm(),
            approvers=APPROVERS,
        ),
        status,
    )


def _second_factor(form) -> str | None:
    """The password and code typed again; a wrong one is counted and audited (kept), and said."""
    if not (form.password.data and form.code.data):
        return "Give your password and a code from your authenticator app."
    try:
        reauthenticate(g.staff, form.password.data, form.code.data, now=now_utc())
    except Refused as refusal:
        db.session.commit()  # the failure counts toward the throttle and is in the audit trail
        return refusal.message
    return None


@bp.post("/amend")
@roles_required(Role.ADMIN)
def amend():
    """Check an amended protocol (its changes, classified, nothing stored), or propose it: an
    additive one applies at once, a critical one waits for a second person."""
    study = require_study()
    form = AmendmentForm()
    if not form.validate_on_submit():
        return _overview(amendment_form=form, status=422)
    text = form.text.data.replace("\r\n", "\n")
    if request.form.get("action") != "propose":
        try:
            _, changes, kind = check_amendment(study, text)
        except Refused as refusal:
            form.text.errors.append(refusal.message)
            return _overview(amendment_form=form, status=refusal.status)
        return _overview(amendment_form=form, checked=(kind, changes))
    problem = _second_factor(form)
    if problem:
        form.code.errors.append(problem)
        return _overview(amendment_form=form, status=401)
    try:
        amendment = propose_amendment(
            study,
            text,
            reason=form.reason.data or "",
            actor=audit.staff_actor(g.staff),
            proposed_by=g.staff,
            now=now_utc(),
        )
    except Refused as refusal:
        db.session.rollback()
        form.text.errors.append(refusal.message)
        return _overview(amendment_form=form, status=refusal.status)
    db.session.commit()
    if amendment.state == AmendmentState.APPLIED:
        flash(f"Amendment {amendment.id} (additive) applied: version {amendment.version} is current.")
    else:
        flash(f"Amendment {amendment.id} is critical: it waits for a second person's approval.")
    return redirect(url_for(".overview"), 303)


def _amendment(amendment_id: int) -> ProtocolAmendment:
    amendment = db.session.get(ProtocolAmendment, amendment_id)
    if amendment is None or amendment.study_id != require_study().id:
        abort(404)
    return amendment


@bp.post("/amendments/<int:amendment_id>/approve")
@roles_required(*APPROVERS)
def approve(amendment_id):
    amendment = _amendment(amendment_id)
    form = ApproveAmendmentForm()
    if not form.validate_on_submit():
        flash("Give your password and a code from your authenticator app.", "error")
        return redirect(url_for(".overview"), 303)
    problem = _second_factor(form)
    if problem:
        flash(problem, "error")
        return redirect(url_for(".overview"), 303)
    try:
        version = approve_amendment(amendment, approver=g.staff, actor=audit.staff_actor(g.staff), now=now_utc())
    except Refused as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(url_for(".overview"), 303) if refusal.status == 409 else abort(refusal.status)
    db.session.commit()
    flash(f"Amendment {amendment_id} approved: version {version.version} is current.")
    return redirect(url_for(".overview"), 303)


@bp.post("/amendments/<int:amendment_id>/withdraw")
@roles_required(Role.ADMIN)
def withdraw(amendment_id):
    amendment = _amendment(amendment_id)
    form = WithdrawAmendmentForm()
    if not form.validate_on_submit():
        flash("A reason is required.", "error")
        return redirect(url_for(".overview"), 303)
    try:
        withdraw_amendment(
            amendment, by=g.staff, actor=audit.staff_actor(g.staff), reason=form.reason.data, now=now_utc()
        )
    except Refused as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(url_for(".overview"), 303)
    db.session.commit()
    flash(f"Amendment {amendment_id} withdrawn.")
    return redirect(url_for(".overview"), 303)
