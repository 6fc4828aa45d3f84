"""Error pages a participant understands, and the pages for the refusals the rules raise."""

from __future__ import annotations

from flask import Flask, g, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from ..errors import Refused
from ..extensions import db


def _messages() -> dict[int, tuple[str, str]]:
    """Title and text per status, in the language of the request."""
    return {
        400: (_("Something was wrong with that request"), _("Please go back and try again. Nothing was saved.")),
        403: (
            _("This page is not for you"),
            _("You do not have access to this page. If you think you should, contact your study team."),
        ),
        404: (_("Page not found"), _("The page you asked for does not exist. Please check the link.")),
        405: (_("That did not work"), _("This page cannot be used that way. Nothing was saved.")),
        409: (_("That could not be saved"), _("It was already done, or it is no longer possible.")),
        413: (_("That was too much to send"), _("What you sent was larger than the diary accepts. Nothing was saved.")),
        422: (_("That could not be saved"), _("Please check your answers and try again.")),
        423: (
            _("The study is closed"),
            _("The study's data are locked, so nothing more can be saved. Please contact your study team."),
        ),
        429: (_("Please wait a moment"), _("Too many attempts. Please wait and try again later.")),
        503: (_("The diary is busy"), _("Please try again in a moment. Nothing was saved.")),
        500: (
            _("Sorry, something went wrong on our side"),
            _("Nothing you entered was half-saved. Please try again in a few minutes, or contact your study team."),
        ),
    }


STATUSES = (400, 403, 404, 405, 409, 413, 422, 429, 500)


def render_error(status: int, detail: str | None = None):
    """A refusal is a normal page: on the participant's diary it keeps their menu and a way back
    to Today (never a dead end), in their language."""
    messages = _messages()
    title, text = messages.get(status, messages[400])
    if status >= 500 and status != 503:
        # The database may be what failed (a restart, a dropped connection): end its transaction
        # and render a page that needs nothing from it.
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001  the page must render whatever the database does
            pass
        g.database_unreliable = True
        return render_template("error.html", status=status, title=title, text=detail or text), status
    template = "participant/error.html" if request.blueprint == "participant" else "error.html"
    return render_template(template, status=status, title=title, text=detail or text), status


def init_app(app: Flask) -> None:
    for status in STATUSES:
        if status == 409:
            continue  # only raised as a Refused with its own message
        app.register_error_handler(status, lambda error, status=status: render_error(status))

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(
            400,
            _(
                "This form has expired or did not come from this site. "
                "Please reload the page and try again. Nothing was saved."
            ),
        )

    @app.errorhandler(Refused)
    def refused(error):
        return render_error(error.status, error.message)
