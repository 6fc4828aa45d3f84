"""Analysts' pages: the study summary, the export download, and unblinding (unblinded role)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, abort, flash, g, redirect, render_template, request, send_file, url_for

from ..errors import Refused
from ..exports import export_study, zip_bundle
from ..exports.bundle import table_order
from ..exports.writers import FORMATS
from ..extensions import db
from ..governance import audit
from ..models import now_utc
from ..reporting import figures
from ..reporting.adherence import timepoint_tallies
from ..reporting.charts import Point, line_chart
from ..reporting.summary import blinding_guess_summary, vas_change_summary
from ..study.blinding import SMALL_CELL, blinding_for
from ..study.trial import protocol_of, require_study, unblind
from ..vocabulary import Allocation, Role
from .auth import roles_required
from .forms import BaseForm

bp = Blueprint("analysis", __name__, url_prefix="/staff")

EXPORTERS = (Role.ANALYST, Role.UNBLINDED, Role.ADMIN)


@bp.get("/summary")
@roles_required(*Role)
def summary():
    study = require_study()
    protocol = protocol_of(study.current_protocol_version)
    blinding = blinding_for(study, g.staff.role)
    now = now_utc()
    snapshot = figures.fresh(study.id, now)
    rows = vas_change_summary(
        study,
        protocol,
        blinding.split,
        now,
        min_cell=blinding.min_cell,
        sums=figures.vas_rows(study.id) if snapshot is not None else None,
    )
    plan = protocol.endpoints
    percent = plan is None or plan.primary_change == "pct_change"
    unit = "%" if percent else ""
    series: dict[str, list[Point]] = {}
    for row in rows:
        if not row.shown:
            continue
        series.setdefault(f"{row.group}, infusion {row.period}", []).append(
            Point(
                row.nominal_hours,
                row.mean,
                f"{row.timepoint}: mean {row.mean}{unit}, SD {row.sd}, n {row.n}",
                spread=row.sd,
            )
        )
    if percent:
        lowest = min([row.mean - (row.sd or 0) for row in rows if row.shown] + [-60])
        floor = max(-100, 20 * int(lowest // 20))
    else:  # a change on the measure's own scale (an 11-point NRS: -10 to 10)
        lowest = min([row.mean - (row.sd or 0) for row in rows if row.shown] + [-5])
        floor, step = max(-100, 5 * int(lowest // 5)), 5
    label = plan.label if plan else "measure"
    change_words = f"{'% change' if percent else 'change'} of the {label[:1].lower() + label[1:]}"
    chart = (
        line_chart(
            series,
            title=f"Mean {change_words} from baseline, with SD",
            y_label=f"{'% change' if percent else 'change'} from baseline",
            y_range=(floor, 40) if percent else (floor, 10),
            y_ticks=tuple(range(floor, 41, 20)) if percent else tuple(range(floor, 11, step)),
        )
        if series
        else None
    )
    tallies = timepoint_tallies(study, now, snapshot)
    adherence = [
        (number, tp.code, tp.label, tallies.get((number, tp.code)))
        for number in range(1, protocol.periods + 1)
        for tp in protocol.timepoints
    ]
    # The guesses against the treatment given show the true allocation: unblinded readers only.
    guesses = blinding_guess_summary(study, protocol) if blinding.allocation is Allocation.TRUE else None
    treatment_label = (
        (lambda code: protocol.treatments.get(code, code))
        if blinding.drug_names
        else (lambda code: f"treatment {code}")
    )
    return render_template(
        "analysis/summary.html",
        rows=rows,
        chart=chart,
        change_words=change_words,
        measure_words=f"{label[:1].lower() + label[1:]} ratings",
        percent=percent,
        split=blinding.split,
        small_cell=SMALL_CELL,
        adherence=adherence,
        guesses=guesses,
        treatment_label=treatment_label,
        unblinded=study.unblinded_at is not None,
        as_of=snapshot.as_of if snapshot else now,
        live=snapshot is None,
    )


@bp.route("/exports", methods=["GET", "POST"])
@roles_required(*EXPORTERS)
def exports():
    study = require_study()
    form = BaseForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("analysis/exports.html", form=form, study=study, tables=_table_names(study)), 400
        fmt = request.form.get("format", "csv")
        if fmt not in FORMATS:
            return render_template(
                "analysis/exports.html", form=form, study=study, error="Choose CSV, Parquet or XLSX."
            ), 422
        identified = request.form.get("identified") == "yes"
        if identified and g.staff.role != Role.ADMIN:
            abort(403)
        now = now_utc()
        # The bundle is built in a folder removed right after; the ZIP is an anonymous temporary
        # file, deleted when the response has been sent. Nothing is left on the server's disk.
        archive = tempfile.TemporaryFile(prefix="diary-export-")
        try:
            with tempfile.TemporaryDirectory(prefix="diary-export-") as folder:
                export_study(
                    Path(folder),
                    study=study,
                    now=now,
                    fmt=fmt,
                    identified=identified,
                    reason=request.form.get("reason"),
                    actor=audit.staff_actor(g.staff),
                    role=g.staff.role,
                    free_text=request.form.get("free_text") != "no",
                    standards=request.form.get("standards") == "yes",
                    without_side_effects=request.form.get("side_effects") == "no",
                )
                zip_bundle(Path(folder), archive)
        except Refused as refusal:
            archive.close()
            db.session.rollback()
            return render_template(
                "analysis/exports.html", form=form, study=study, error=refusal.message
            ), refusal.status
        archive.seek(0)
        db.session.commit()
        return send_file(
            archive,
            mimetype="application/zip",
            as_attachment=True,
            download_name=f"diary-export-{now:%Y%m%dT%H%M%SZ}.zip",
        )
    return render_template("analysis/exports.html", form=form, study=study, tables=_table_names(study))


@bp.route("/unblind", methods=["GET", "POST"])
@roles_required(Role.UNBLINDED)
def unblind_study():
    study = require_study()
    form = BaseForm()
    error, status = None, 200
    if request.method == "POST" and form.validate_on_submit():
        if request.form.get("confirm", "").strip() != "UNBLIND":
            error, status = "Type UNBLIND in capitals to confirm.", 422
        else:
            try:
                unblind(study, user=g.staff, now=now_utc())
            except Refused as refusal:
                db.session.rollback()
                error, status = refusal.message, refusal.status
            else:
                db.session.commit()
                flash("The study is unblinded. Exports now carry the drug names.")
                return redirect(url_for(".unblind_study"))
    return render_template("analysis/unblind.html", form=form, study=study, error=error), status


def _table_names(study) -> list[str]:
    """The bundle's tables as the protocol names them (its endpoint tables among them)."""
    return [t for t in table_order(protocol_of(study.current_protocol_version)) if t != "data_dictionary"]
