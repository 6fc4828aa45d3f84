"""Operations for staff: the status page (and its JSON for monitoring), and the banner every
staff page carries while the scheduler is silent or safety messages cannot be delivered."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, render_template
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import now_utc
from ..operations.status import banners, gather
from ..vocabulary import Role
from .auth import roles_required

bp = Blueprint("operations", __name__, url_prefix="/staff")

WATCHERS = (Role.ADMIN, Role.COORDINATOR)


@bp.get("/status")
@roles_required(*WATCHERS)
def status():
    report = gather(current_app.config, now_utc())
    return render_template("coordinator/status.html", report=report), 200


@bp.get("/status.json")
@roles_required(*WATCHERS)
def status_json():
    report = gather(current_app.config, now_utc())
    response = jsonify(report.as_json())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def staff_banners():
    """Banners for a signed-in staff member's page (computed only for staff pages)."""
    if g.get("staff") is None or g.get("database_unreliable"):
        return {}
    try:
        return {"staff_banners": banners(current_app.config, now_utc())}
    except SQLAlchemyError:  # a page about a failure must not fail on its banner
        db.session.rollback()
        return {}
