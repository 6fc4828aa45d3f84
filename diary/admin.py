"""Administration: staff accounts (admin) and the randomization list (unblinded role).

The unblinded role is the only one that sees sequences.
"""
from __future__ import annotations

import csv
import io

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from . import audit
from .auth import roles_required
from .errors import Refused
from .extensions import db
from .forms import RandomizationForm, UserChangeForm, UserForm
from .models import Participant, RandomizationSlot, StaffUser, now_utc
from .staff import create_user
from .study import protocol_of, require_study

bp = Blueprint("admin", __name__, url_prefix="/staff/admin")


@bp.route("/users", methods=["GET", "POST"])
@roles_required("admin")
def users():
    form = UserForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = create_user(form.email.data, form.password.data, form.role.data,
                               actor=audit.staff_actor(g.staff), now=now_utc())
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
    return render_template("admin/users.html", form=form, accounts=accounts,
                           change_form=UserChangeForm()), status


@bp.post("/users/<int:user_id>")
@roles_required("admin")
def change_user(user_id):
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    form = UserChangeForm()
    if not form.validate_on_submit():
        flash("That change could not be made.", "error")
        return redirect(url_for(".users")), 303
    if user.id == g.staff.id and (form.role.data != "admin" or not form.active.data):
        flash("You cannot remove your own admin access.", "error")
        return redirect(url_for(".users")), 303
    now, who = now_utc(), audit.staff_actor(g.staff)
    if form.role.data != user.role:
        audit.record(actor=who, action="change_role", entity="staff_user", entity_id=user.id,
                     field="role", old=user.role, new=form.role.data, now=now)
        user.role = form.role.data
        user.session_generation += 1  # the new role applies from the next sign-in
    if form.active.data != user.active:
        audit.record(actor=who, action="change_active", entity="staff_user", entity_id=user.id,
                     field="active", old=user.active, new=form.active.data, now=now)
        user.active = form.active.data
        user.session_generation += 1
    db.session.commit()
    flash(f"Saved {user.email}.")
    return redirect(url_for(".users"))


# --- Randomization (unblinded) -----------------------------------------------------------------

def parse_randomization_csv(text: str, sequences) -> list[tuple[str, int, str]]:
    """Rows of (site, position, sequence); every problem is reported with its line number."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or {"site", "position", "sequence"} - {f.strip().lower() for f in reader.fieldnames}:
        raise Refused("The CSV needs a header row with the columns site, position, sequence.")
    rows, problems, seen = [], [], set()
    for line, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        site, position, sequence = row.get("site", ""), row.get("position", ""), row.get("sequence", "")
        if not site:
            problems.append(f"line {line}: site is empty")
        if not position.isdigit() or not position.isascii():
            problems.append(f"line {line}: position '{position}' is not a whole number")
            continue
        if sequence not in sequences:
            problems.append(f"line {line}: sequence '{sequence}' is not one of {', '.join(sequences)}")
        if (site, int(position)) in seen:
            problems.append(f"line {line}: position {position} appears twice for site {site}")
        seen.add((site, int(position)))
        rows.append((site, int(position), sequence))
    if problems:
        raise Refused("The randomization list was not loaded: " + "; ".join(problems[:20]))
    if not rows:
        raise Refused("The randomization list has no rows.")
    return rows


@bp.route("/randomization", methods=["GET", "POST"])
@roles_required("unblinded")
def randomization():
    study = require_study()
    form = RandomizationForm()
    status = 200
    if form.validate_on_submit():
        protocol = protocol_of(study.current_protocol_version)
        try:
            text = form.file.data.read(1_000_000).decode("utf-8-sig")
            rows = parse_randomization_csv(text, protocol.sequences)
            existing = set(db.session.execute(select(RandomizationSlot.site, RandomizationSlot.position)
                                              .where(RandomizationSlot.study_id == study.id)).all())
            clashes = [f"{site} {position}" for site, position, _ in rows if (site, position) in existing]
            if clashes:
                raise Refused("These slots already exist and were not changed: " + ", ".join(clashes[:20]))
        except UnicodeDecodeError:
            form.file.errors.append("The file is not UTF-8 text.")
            status = 422
        except Refused as refusal:
            form.file.errors.append(refusal.message)
            status = 422
        else:
            for site, position, sequence in rows:
                db.session.add(RandomizationSlot(study_id=study.id, site=site, position=position, sequence=sequence))
            audit.record(actor=audit.staff_actor(g.staff), action="upload_randomization",
                         entity="randomization_slot", entity_id=None, now=now_utc(),
                         new=f"{len(rows)} slots")
            db.session.commit()
            flash(f"Loaded {len(rows)} randomization slots.")
            return redirect(url_for(".randomization"))
    elif request.method == "POST":
        status = 422
    slots = db.session.execute(
        select(RandomizationSlot, Participant.code).outerjoin(Participant, RandomizationSlot.participant_id == Participant.id)
        .where(RandomizationSlot.study_id == study.id)
        .order_by(RandomizationSlot.site, RandomizationSlot.position)).all()
    free = db.session.scalar(select(func.count()).select_from(RandomizationSlot).where(
        RandomizationSlot.study_id == study.id, RandomizationSlot.participant_id.is_(None)))
    return render_template("admin/randomization.html", form=form, slots=slots, free=free), status
