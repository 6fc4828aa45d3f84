"""Coding the side effects participants describe in their own words (``safety.coding``)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for

from ..extensions import db
from ..models import SideEffectReport, now_utc
from ..safety.coding import CODERS, code_side_effect, to_code
from ..study.trial import protocol_of, require_study
from .auth import roles_required
from .forms import CodingForm

bp = Blueprint("coding", __name__, url_prefix="/staff/coding")


@bp.get("")
@roles_required(*CODERS)
def reports():
    study = require_study()
    protocol = protocol_of(study.current_protocol_version)
    return render_template(
        "coordinator/coding.html",
        reports=to_code(study.id, g.staff.site),
        coding=protocol.coding,
    )


@bp.post("/<int:report_id>")
@roles_required(*CODERS)
def code(report_id):
    report = db.session.get(SideEffectReport, report_id)
    study = require_study()
    if report is None or report.period.participant.study_id != study.id:
        abort(404)
    if g.staff.site is not None and report.period.participant.site != g.staff.site:
        abort(403)
    form = CodingForm()
    if not form.validate_on_submit():
        flash("Give the dictionary's term and why.", "error")
        return redirect(url_for(".reports"), 303)
    code_side_effect(
        report, form.term.data, reason=form.reason.data, by=g.staff, now=now_utc(), seen=form.seen.data or None
    )
    db.session.commit()
    flash(f"Report {report_id} coded: {form.term.data.strip()}.")
    return redirect(url_for(".reports"), 303)
