"""Error pages a participant understands, and the pages for the refusals the rules raise."""
from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError

from ..errors import Refused

MESSAGES = {
    400: ("Something was wrong with that request",
          "Please go back and try again. Nothing was saved."),
    403: ("This page is not for you",
          "You do not have access to this page. If you think you should, contact your study team."),
    404: ("Page not found", "The page you asked for does not exist. Please check the link."),
    405: ("That did not work", "This page cannot be used that way. Nothing was saved."),
    409: ("That could not be saved", "It was already done, or it is no longer possible."),
    413: ("That was too much to send",
          "What you sent was larger than the diary accepts. Nothing was saved."),
    422: ("That could not be saved", "Please check your answers and try again."),
    429: ("Please wait a moment", "Too many attempts. Please wait and try again later."),
    500: ("Sorry, something went wrong on our side",
          "Nothing you entered was half-saved. Please try again in a few minutes, or contact your "
          "study team."),
}


def render_error(status: int, detail: str | None = None):
    title, text = MESSAGES.get(status, MESSAGES[400])
    return render_template("error.html", status=status, title=title, text=detail or text), status


def init_app(app: Flask) -> None:
    for status in MESSAGES:
        if status == 409:
            continue  # only raised as a Refused with its own message
        app.register_error_handler(status, lambda error, status=status: render_error(status))

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(400, "This form has expired or did not come from this site. "
                                 "Please reload the page and try again. Nothing was saved.")

    @app.errorhandler(Refused)
    def refused(error):
        return render_error(error.status, error.message)
