"""Administration: staff accounts (admin) and the randomization list (unblinded role).

The unblinded role is the only one that sees sequences.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import lock_study, unlock_study
from ..governance.signoff import unsigned_periods
from ..governance.staff import change_user as change_staff_user
from ..governance.staff import create_user
from ..models import Participant, RandomizationSlot, StaffUser, now_utc
from ..study.blinding import blinding_for
from ..study.randomization import load_randomization_list
from ..study.trial import require_study
from ..vocabulary import Allocation, Role
from .auth import roles_required
from .forms import LockForm, RandomizationForm, UserChangeForm, UserForm

bp = Blueprint("admin", __name__, url_prefix="/staff/admin")


@bp.route("/users", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def users():
    form = UserForm()
    status = 200
    if form.validate_on_submit():
        try:
            # The admin chose this password: the person sets their own at first sign-in.
            user = create_user(
                form.email.data,
                form.password.data,
                form.role.data,
                actor=audit.staff_actor(g.staff),
                now=now_utc(),
                temporary=True,
            )
        except Refused as refusal:
            db.session.rollback()
            form.email.errors.append(refusal.message)
            status = refusal.status
        else:
            db.session.commit()
            flash(f"Created {user.role} {user.email}.")
            return redirect(url_for(".users"))
    elif request.method == "POST":
        status = 422
    accounts = db.session.scalars(select(StaffUser).order_by(StaffUser.email)).all()
    return render_template("admin/users.html", form=form, accounts=accounts, change_form=UserChangeForm()), status


@bp.post("/users/<int:user_id>")
@roles_required(Role.ADMIN)
def change_user(user_id):
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    form = UserChangeForm()
    if not form.validate_on_submit():
        flash("That change could not be made.", "error")
        return redirect(url_for(".users")), 303
    try:
        change_staff_user(
            user, role=form.role.data, active=form.active.data, by=g.staff, now=now_utc(), reason=form.reason.data
        )
    except Refused as refusal:
        db.session.rollback()
        flash(refusal.message, "error")
        return redirect(url_for(".users")), 303
    db.session.commit()
    flash(f"Saved {user.email}.")
    return redirect(url_for(".users"))


# --- Randomization (unblinded) -----------------------------------------------------------------


@bp.route("/randomization", methods=["GET", "POST"])
@roles_required(Role.UNBLINDED)
def randomization():
    study = require_study()
    if blinding_for(study, g.staff.role).allocation is not Allocation.TRUE:
        abort(403)  # the list names every participant's sequence: the guard's truth readers only
    form = RandomizationForm()
    status = 200
    if form.validate_on_submit():
        try:
            count = load_randomization_list(
                study, form.file.data.read(1_000_000), actor=audit.staff_actor(g.staff), now=now_utc()
            )
        except Refused as refusal:
            db.session.rollback()
            form.file.errors.append(refusal.message)
            status = 422
        else:
            db.session.commit()
            flash(f"Loaded {count} randomization slots.")
            return redirect(url_for(".randomization"))
    elif request.method == "POST":
        status = 422
    slots = db.session.execute(
        select(RandomizationSlot, Participant.code)
        .outerjoin(Participant, RandomizationSlot.participant_id == Participant.id)
        .where(RandomizationSlot.study_id == study.id)
        .order_by(RandomizationSlot.site, RandomizationSlot.position)
    ).all()
    free = db.session.scalar(
        select(func.count())
        .select_from(RandomizationSlot)
        .where(RandomizationSlot.study_id == study.id, RandomizationSlot.participant_id.is_(None))
    )
    return render_template("admin/randomization.html", form=form, slots=slots, free=free), status


@bp.route("/lock", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def lock():
    """Lock the study's data before unblinding, or unlock it; both with a reason."""
    study = require_study()
    form = LockForm()
    status = 200
    if form.validate_on_submit():
        now = now_utc()
        try:
            if request.form.get("action") == "unlock":
                unlock_study(study, reason=form.reason.data, actor=audit.staff_actor(g.staff), now=now)
            else:
                lock_study(study, reason=form.reason.data, actor=audit.staff_actor(g.staff), by_id=g.staff.id, now=now)
        except Refused as refusal:
            db.session.rollback()
            form.reason.errors.append(refusal.message)
            status = refusal.status
        else:
            db.session.commit()
            flash("The study is locked." if study.locked_at else "The study is unlocked.")
            return redirect(url_for(".lock"))
    elif request.method == "POST":
        status = 422
    waiting = unsigned_periods(study.id)
    return render_template("admin/lock.html", form=form, study=study, waiting=waiting), status
