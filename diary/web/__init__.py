"""The web layer: every blueprint, form and request helper. Nothing outside ``diary.web``
imports it; views read the request, call a rule, then redirect or render."""

from __future__ import annotations

import re

from flask import Flask, abort, current_app, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from ..database import READ_ONLY
from ..extensions import babel, compress, db
from ..governance.lock import current_lock
from ..i18n import DEFAULT_LANGUAGE, TRANSLATIONS, best_language, compile_catalogs
from ..participants.enrolment import mask_email, mask_phone
from ..protocol.model import in_language
from ..vocabulary import TEMPLATE_GLOBALS
from .errors import render_error
from .times import staff_time


class BoundedInt(IntegerConverter):
    """``<int:…>`` in every URL, bounded to what the id columns hold (32-bit integers on
    PostgreSQL): a larger id is simply not found (404), never an overflow (500)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


# JSON bodies (offline entries, push subscriptions) are a few levels deep; a deeper one is refused
# before the parser's recursion can fail on it.
MAX_JSON_DEPTH = 20


# A carriage return not followed by a line feed.
_LONE_CR = re.compile(r"\r(?!\n)")


def unstorable_text(value: str) -> bool:
    """Text no person typed, which the diary refuses rather than store: a NUL byte (PostgreSQL
    refuses to store one) or a lone carriage return. Browsers send a typed line break as CR LF
    (a form) or LF (a script reading a text box); a lone CR is a line end to R's and pandas' CSV
    readers, and Python's csv writer does not quote it, so an export's row would split in two."""
    return "\x00" in value or ("\r" in value and _LONE_CR.search(value) is not None)


def json_depth(body: bytes) -> int:
    """The deepest nesting of brackets in a JSON text, strings skipped (no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def init_app(app: Flask) -> None:
    from . import (
        admin,
        analysis,
        archive,
        assets,
        coding,
        coordinator,
        errors,
        main,
        operations,
        participant,
        protocols,
        signin,
    )

    app.url_map.converters["int"] = BoundedInt  # before any rule is added

    app.register_blueprint(main.bp)
    app.register_blueprint(participant.bp)
    app.register_blueprint(signin.bp)
    app.register_blueprint(coordinator.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(analysis.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(coding.bp)
    app.register_blueprint(protocols.bp)
    assets.init_app(app)
    compress.init_app(app)
    errors.init_app(app)
    app.jinja_env.globals.update(TEMPLATE_GLOBALS, mask_email=mask_email, mask_phone=mask_phone, staff_time=staff_time)
    app.jinja_env.filters["tr"] = lambda text: in_language(text, current_language())
    app.context_processor(lambda: {"current_language": current_language()})
    compile_catalogs()
    babel.init_app(app, locale_selector=current_language, default_translation_directories=str(TRANSLATIONS))
    app.before_request(_refuse_unstorable_input)
    app.after_request(_security_headers)
    app.before_request(_read_only_for_safe_methods)
    app.before_request(_refuse_writes_while_locked)
    app.teardown_request(lambda error: READ_ONLY.set(False))
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:
        # Behind N trusted proxies, the client's address, scheme and host are theirs to say.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)


# Everything the pages use is served by the diary itself: no inline script or style, no other
# origin, no framing. Participant links carry a token in the path, so referrers stay on site.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"


def current_language() -> str:
    """The language of this request: a known participant's own; on the diary's pages before the
    participant is known (the link and PIN pages), the browser's Accept-Language; staff pages
    in English."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    participant = g.get("participant")
    if participant is not None:
        return participant.language or DEFAULT_LANGUAGE
    if g.get("language"):
        return g.language
    if request.blueprint == "participant" or request.path == "/":
        return best_language(request.accept_languages)
    return DEFAULT_LANGUAGE


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    if current_app.config["BASE_URL"].startswith("https://"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def _read_only_for_safe_methods():
    """GET and HEAD only read: their SQLite transactions do not take the write lock. A
    ``READ_FIRST`` endpoint reads in a read transaction too, and takes the write lock for its
    writes alone (``database.write_from_here``)."""
    READ_ONLY.set(request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint in READ_FIRST)


# A participant's submit: the reads and checks before its writes hold no write lock.
READ_FIRST = {"participant.submit"}


# What may still be posted while the study is locked: signing in and out (staff and participants)
# and one's own password; staff accounts (an account must be closable at any time); the lock page
# itself; exports and unblinding (they read; unblinding needs the lock); the emergency code break;
# sign-off and audit-trail reviews (they endorse or review the data, and change none of it).
WHILE_LOCKED = {
    "signin.login",
    "signin.second_step",
    "signin.second_factor_setup",
    "signin.logout",
    "signin.password",
    "participant.link",
    "participant.sign_out",
    "admin.users",
    "admin.change_user",
    "admin.lock",
    "analysis.exports",
    # A site's archive only reads the data: the end-of-study copy is taken after the lock.
    "archive.build",
    "archive.received",
    "analysis.unblind_study",
    "staff.code_break",
    "staff.show_contact",
    "staff.sign_period",
    "staff.sign_all_periods",
    "staff.audit_review",
}


def _refuse_writes_while_locked():
    """Every other POST answers 423 while the study is locked, before its view runs."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint in WHILE_LOCKED or request.endpoint is None:
        return None
    lock = current_lock()
    if lock is None:
        return None
    db.session.rollback()
    if request.blueprint == "participant":
        return render_error(423)
    return render_error(
        423,
        f"The study was locked on {lock.locked_at:%Y-%m-%d %H:%M} UTC ({lock.lock_reason}): its data cannot change.",
    )


def _refuse_unstorable_input():
    """A NUL byte or a lone carriage return is no text a person typed (``unstorable_text``):
    say so (400), the same on both engines. JSON bodies are checked for depth here and for such
    text by their views (an offline entry's refusal is recorded and answered in JSON)."""
    values = list(request.args.values()) + list(request.view_args.values() if request.view_args else [])
    if request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += list(request.form.values())
    if any(isinstance(value, str) and unstorable_text(value) for value in values) or "\x00" in request.path:
        abort(400)
    if request.method == "POST" and request.is_json and json_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
        abort(400)
