"""The web layer: every blueprint, form and request helper. Nothing outside ``diary.web``
imports it; views read the request, call a rule, then redirect or render."""
from __future__ import annotations

from flask import Flask

from ..vocabulary import TEMPLATE_GLOBALS


def init_app(app: Flask) -> None:
    from . import admin, analysis, coordinator, errors, main, participant

    app.register_blueprint(main.bp)
    app.register_blueprint(participant.bp)
    app.register_blueprint(coordinator.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(analysis.bp)
    errors.init_app(app)
    app.jinja_env.globals.update(TEMPLATE_GLOBALS)
