"""Pages that belong to no audience in particular: the landing page and a health check."""

from flask import Blueprint, render_template
from sqlalchemy import text

from ..extensions import db

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/healthz")
def health():
    """For load balancers and `make run`'s wait: the database answers."""
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}
