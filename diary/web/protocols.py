"""The study's protocol on the staff pages: its versions, and the calendar one participant would
live through under it (``reminders.preview``), for the study team to check before enrolling."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template, request

from ..models import now_utc
from ..reminders.preview import preview
from ..study.trial import protocol_of, require_study
from ..vocabulary import Role
from .auth import roles_required
from .forms import PreviewForm

bp = Blueprint("protocols", __name__, url_prefix="/staff/protocol")

# Who schedules participants, and who amends the protocol.
READERS = (Role.ADMIN, Role.COORDINATOR, Role.INVESTIGATOR)


@bp.get("")
@roles_required(*READERS)
def overview():
    study = require_study()
    version = study.current_protocol_version
    protocol = protocol_of(version)
    form = PreviewForm(request.args)
    calendar, status = None, 200
    if request.args:
        if form.validate():
            calendar = preview(protocol, form.timezone.data, form.start.data)
        else:
            status = 422
    else:
        form.start.data = datetime.combine(now_utc().date(), datetime.min.time()).replace(hour=9)
    return (
        render_template(
            "protocols/overview.html",
            study=study,
            version=version,
            protocol=protocol,
            versions=study.protocol_versions,
            form=form,
            calendar=calendar,
        ),
        status,
    )
