"""Staff sign-in: password, then the second factor; setting up the second factor; signing out;
changing one's password. Its own blueprint, under the same /staff addresses the staff know.

The rules (throttles, lockout, TOTP, recovery codes) live in ``diary.governance``; this module
holds only their request side.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlparse

import segno
from flask import Blueprint, flash, g, make_response, redirect, render_template, request, session, url_for

from ..errors import Refused
from ..extensions import db
from ..governance import second_factor
from ..governance.staff import (
    LoginRefused,
    address_delay,
    change_password,
    login_staff,
    record_sign_in,
    record_sign_out,
)
from ..models import StaffUser, now_utc
from ..vocabulary import Role
from .auth import end_staff_session, roles_required, start_staff_session
from .forms import CodeForm, LoginForm, PasswordForm

bp = Blueprint("signin", __name__, url_prefix="/staff")

EVERY_ROLE = tuple(Role)


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: never redirect to another host after login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parsed = urlparse(target)
    return target if not parsed.netloc and not parsed.scheme else None


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    status = 200
    if form.validate_on_submit():
        now = now_utc()
        address = request.remote_addr
        try:
            user = login_staff(form.email.data, form.password.data, address=address, now=now)
        except LoginRefused as refusal:
            delay = address_delay(address, now)  # many failures from here: answer slowly, never lock
            db.session.commit()  # the failure counters and the audit event persist
            form.password.errors.append(refusal.message)
            if delay and not TARPIT.acquire(blocking=False):
                # Every slow-answer slot is taken (a flood): refuse at once rather than let sleeping
                # sign-ins hold the threads participants' pages need.
                response = make_response(render_template("coordinator/login.html", form=form), 429)
                response.headers["Retry-After"] = str(int(delay) + 1)
                return response
            if delay:
                # The wait comes after the commit and opens no transaction: on SQLite a sleeping
                # request must not hold the write lock every participant's submit needs.
                try:
                    time.sleep(delay)
                finally:
                    TARPIT.release()
            return render_template("coordinator/login.html", form=form), refusal.status
        if user.totp_enabled_at is not None:
            # The password was right; the session starts only after the second factor.
            session.clear()
            session[PENDING] = {
                "id": user.id,
                "g": user.session_generation,
                "at": now.timestamp(),
                "next": _safe_next(form.next.data),
            }
            db.session.commit()
            return redirect(url_for(".second_step"))
        start_staff_session(user, now)
        record_sign_in(user, address=address, now=now)
        db.session.commit()
        return redirect(_safe_next(form.next.data) or _home_for(user))
    elif request.method == "POST":
        status = 422
    return render_template("coordinator/login.html", form=form), status


# Refused sign-ins answered slowly at once, per process; more are refused at once (429).
TARPIT = threading.BoundedSemaphore(1)

PENDING = "pending_second_factor"
SECOND_STEP_SECONDS = 300


@bp.route("/login/code", methods=["GET", "POST"])
def second_step():
    """Sign-in, second step: a code from the authenticator app, or a recovery code."""
    pending = session.get(PENDING)
    now = now_utc()
    user = db.session.get(StaffUser, pending["id"]) if pending else None
    if (
        user is None
        or not user.active
        or user.session_generation != pending.get("g")
        or now.timestamp() - pending.get("at", 0) > SECOND_STEP_SECONDS
    ):
        session.pop(PENDING, None)
        flash("Please sign in again.", "error")
        return redirect(url_for(".login"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            kind = second_factor.check(user, form.code.data, now=now)
        except Refused as refusal:
            db.session.commit()  # the failure counts and is audited
            form.code.errors.append(refusal.message)
            return render_template("coordinator/second_step.html", form=form), refusal.status
        start_staff_session(user, now)
        record_sign_in(user, address=request.remote_addr, now=now, second_factor=kind)
        db.session.commit()
        if kind == "recovery code":
            flash(f"You signed in with a recovery code; {second_factor.remaining_recovery_codes(user)} are left.")
        return redirect(pending.get("next") or _home_for(user))
    return render_template("coordinator/second_step.html", form=form), 422 if request.method == "POST" else 200


@bp.route("/second-factor", methods=["GET", "POST"])
@roles_required(*EVERY_ROLE)
def second_factor_setup():
    """Turn on the second factor: scan the QR code, type a first code, keep the recovery codes."""
    form = CodeForm()
    secret = session.get("totp_pending")
    if request.method == "GET" or not secret:
        secret = session["totp_pending"] = second_factor.new_secret()
    if form.validate_on_submit():
        try:
            codes = second_factor.enable(g.staff, secret, form.code.data, now=now_utc())
        except Refused as refusal:
            db.session.commit()  # the failed attempt is audited
            form.code.errors.append(refusal.message)
        else:
            session.pop("totp_pending", None)
            db.session.commit()
            response = make_response(
                render_template("coordinator/recovery_codes.html", codes=codes, home=_home_for(g.staff))
            )
            response.headers["Cache-Control"] = "no-store"
            return response
    uri = second_factor.provisioning_uri(g.staff, secret)
    qr = segno.make(uri, error="m").svg_inline(scale=4, dark="#1b1f24")
    return render_template(
        "coordinator/second_factor.html", form=form, qr=qr, secret=secret, enabled=g.staff.totp_enabled_at is not None
    ), 422 if request.method == "POST" else 200


def _home_for(user: StaffUser) -> str:
    return {
        Role.ADMIN: url_for("admin.users"),
        Role.UNBLINDED: url_for("admin.randomization"),
        Role.EMERGENCY: url_for("staff.code_break"),
        Role.ANALYST: url_for("staff.dashboard"),
    }.get(user.role, url_for("staff.dashboard"))


@bp.post("/logout")
@roles_required(*EVERY_ROLE)
def logout():
    record_sign_out(g.staff, now=now_utc())
    end_staff_session(g.staff)
    db.session.commit()
    flash("You are signed out.")
    return redirect(url_for(".login"))


@bp.route("/password", methods=["GET", "POST"])
@roles_required(*EVERY_ROLE)
def password():
    """Change one's own password; every other session of the account ends."""
    form = PasswordForm()
    if form.validate_on_submit():
        now = now_utc()
        try:
            change_password(g.staff, form.current.data, form.new.data, now=now)
        except Refused as refusal:
            db.session.rollback()
            form.current.errors.append(refusal.message)
            return render_template("coordinator/password.html", form=form), 422
        start_staff_session(g.staff, now)
        db.session.commit()
        flash("Your password is changed. Other sessions of your account have ended.")
        return redirect(_home_for(g.staff))
    return render_template("coordinator/password.html", form=form), 422 if request.method == "POST" else 200
