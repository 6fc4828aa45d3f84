"""Analysts' pages: the study summary, the export download, and unblinding (unblinded role)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, abort, flash, g, redirect, render_template, request, send_file, url_for

from . import audit
from .adherence import load_grid
from .auth import roles_required
from .charts import Point, line_chart
from .errors import Refused
from .exports import write_bundle, zip_bundle
from .extensions import db
from .forms import BaseForm
from .models import now_utc
from .study import protocol_of, require_study, unblind
from .summary import split_label, vas_change_summary

bp = Blueprint("analysis", __name__, url_prefix="/staff")

EXPORTERS = ("analyst", "unblinded", "admin")


@bp.get("/summary")
@roles_required("analyst", "coordinator", "unblinded", "admin")
def summary():
    study = require_study()
    protocol = protocol_of(study.current_protocol_version)
    split = split_label(study, g.staff.role)
    rows = vas_change_summary(study, protocol, split)
    series: dict[str, list[Point]] = {}
    for row in rows:
        series.setdefault(f"{row.group}, infusion {row.period}", []).append(
            Point(row.nominal_hours, row.mean, f"{row.timepoint}: mean {row.mean}%, SD {row.sd}, n {row.n}",
                  spread=row.sd))
    lowest = min([row.mean - (row.sd or 0) for row in rows] + [-60])
    floor = max(-100, 20 * int(lowest // 20))
    chart = line_chart(series, title="Mean % change of the fatigue VAS from baseline, with SD",
                       y_label="% change from baseline", y_range=(floor, 40),
                       y_ticks=tuple(range(floor, 41, 20))) if rows else None
    grid = load_grid(study, now_utc())
    adherence = [(number, code, label, grid.by_timepoint.get((number, code))) for number, code, label in grid.columns]
    return render_template("analysis/summary.html", rows=rows, chart=chart, split=split, adherence=adherence,
                           unblinded=study.unblinded_at is not None)


@bp.route("/exports", methods=["GET", "POST"])
@roles_required(*EXPORTERS)
def exports():
    study = require_study()
    form = BaseForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("analysis/exports.html", form=form, study=study), 400
        fmt = request.form.get("format", "csv")
        if fmt not in ("csv", "parquet", "xlsx"):
            return render_template("analysis/exports.html", form=form, study=study,
                                   error="Choose CSV, Parquet or XLSX."), 422
        identified = request.form.get("identified") == "yes"
        reason = (request.form.get("reason") or "").strip()
        if identified and g.staff.role != "admin":
            abort(403)
        if identified and not reason:
            return render_template("analysis/exports.html", form=form, study=study,
                                   error="An identified export needs a reason."), 422
        now = now_utc()
        # The bundle is built in a folder removed right after; the ZIP is an anonymous temporary
        # file, deleted when the response has been sent. Nothing is left on the server's disk.
        archive = tempfile.TemporaryFile(prefix="diary-export-")
        with tempfile.TemporaryDirectory(prefix="diary-export-") as folder:
            manifest = write_bundle(Path(folder), study=study, now=now, fmt=fmt, identified=identified)
            zip_bundle(Path(folder), archive)
        archive.seek(0)
        audit.record(actor=audit.staff_actor(g.staff), action="identified_export" if identified else "export",
                     entity="study", entity_id=study.id, now=now, reason=reason or None,
                     new=f"{fmt}, {'blinded' if manifest['blinded'] else 'unblinded'}")
        db.session.commit()
        return send_file(archive, mimetype="application/zip", as_attachment=True,
                         download_name=f"diary-export-{now:%Y%m%dT%H%M%SZ}.zip")
    return render_template("analysis/exports.html", form=form, study=study)


@bp.route("/unblind", methods=["GET", "POST"])
@roles_required("unblinded")
def unblind_study():
    study = require_study()
    form = BaseForm()
    error = None
    if request.method == "POST" and form.validate_on_submit():
        if request.form.get("confirm", "").strip() != "UNBLIND":
            error = "Type UNBLIND in capitals to confirm."
        else:
            try:
                unblind(study, user=g.staff, now=now_utc())
            except Refused as refusal:
                db.session.rollback()
                error = refusal.message
            else:
                db.session.commit()
                flash("The study is unblinded. Exports now carry the drug names.")
                return redirect(url_for(".unblind_study"))
    status = 422 if error else 200
    return render_template("analysis/unblind.html", form=form, study=study, error=error), status
