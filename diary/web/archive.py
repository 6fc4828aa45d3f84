"""The site's archive on the web: its investigator or coordinator builds it, downloads the zip
and confirms the site holds it; each step is audited (``archive.custody``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, send_file, url_for
from sqlalchemy import select

from ..archive.build import archive_moment, build_site_archive, site_language, zip_archive
from ..archive.custody import (
    ARCHIVE_ROLES,
    confirm_received,
    record_built,
    record_downloaded,
    refuse_unless_may_archive,
)
from ..documents import render_pdf
from ..errors import Refused
from ..extensions import db
from ..governance.audit import staff_actor as audit_actor
from ..models import Participant, SiteArchive, now_utc
from ..study.trial import require_study
from .auth import roles_required
from .forms import ArchiveForm, ConfirmForm

bp = Blueprint("archive", __name__, url_prefix="/staff/archive")


def archives_folder() -> Path:
    folder = Path(current_app.instance_path) / "archives"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sites_of(study, staff) -> list[str]:
    """The sites this staff member may archive: their own, or every site with participants."""
    if staff.site is not None:
        return [staff.site]
    return list(
        db.session.scalars(
            select(Participant.site).where(Participant.study_id == study.id).distinct().order_by(Participant.site)
        )
    )


@bp.get("")
@roles_required(*ARCHIVE_ROLES)
def archives():
    study = require_study()
    sites = _sites_of(study, g.staff)
    form = ArchiveForm()
    form.site.choices = [(site, site) for site in sites]
    built = db.session.scalars(
        select(SiteArchive)
        .where(SiteArchive.study_id == study.id, SiteArchive.site.in_(sites or [""]))
        .order_by(SiteArchive.id.desc())
    ).all()
    return render_template("coordinator/archive.html", form=form, built=built, study=study)


@bp.post("")
@roles_required(*ARCHIVE_ROLES)
def build():
    study = require_study()
    form = ArchiveForm()
    form.site.choices = [(site, site) for site in _sites_of(study, g.staff)]
    site = form.site.data
    refuse_unless_may_archive(g.staff.role, g.staff.site, site or "")
    if not form.validate_on_submit():
        abort(400, "Choose a site of this study.")
    now = now_utc()
    as_of = archive_moment(study, None, now)
    name = f"archive-{site}-{as_of:%Y%m%dT%H%M%SZ}"
    folder = archives_folder() / name
    shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way at this same second
    manifest = build_site_archive(
        folder,
        study=study,
        site=site,
        as_of=as_of,
        language=site_language(site, current_app.config.get("SITE_LANGUAGES") or {}),
        render_pdf=render_pdf,
        app_version=current_app.config["DIARY_VERSION"],
    )
    zip_path = folder.with_suffix(".zip")
    archive = SiteArchive(
        study_id=study.id,
        site=site,
        as_of=as_of,
        archive_sha256=manifest["archive_sha256"],
        zip_sha256=zip_archive(folder, zip_path),
        file_name=zip_path.name,
        built_by_id=g.staff.id,
        built_at=now,
    )
    db.session.add(archive)
    db.session.flush()
    record_built(actor=audit_actor(g.staff), site=site, manifest=manifest, now=now, archive_id=archive.id)
    db.session.commit()
    shutil.rmtree(folder)
    flash(
        f"Archive of {site} built: {manifest['participants']} participants, SHA-256 {manifest['archive_sha256'][:16]}…"
    )
    return redirect(url_for(".archives"))


def _own_archive(archive_id: int) -> SiteArchive:
    archive = db.session.get(SiteArchive, archive_id)
    if archive is None or archive.study_id != require_study().id:
        abort(404)
    refuse_unless_may_archive(g.staff.role, g.staff.site, archive.site)
    return archive


@bp.get("/<int:archive_id>/download")
@roles_required(*ARCHIVE_ROLES)
def download(archive_id):
    archive = _own_archive(archive_id)
    path = archives_folder() / archive.file_name
    if not path.is_file():
        raise Refused("This archive's file is no longer on the server: build a new one.", status=410)
    now = now_utc()
    archive.downloaded_at = archive.downloaded_at or now
    record_downloaded(actor=audit_actor(g.staff), archive=archive, now=now)
    db.session.commit()
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=archive.file_name)


@bp.post("/<int:archive_id>/received")
@roles_required(*ARCHIVE_ROLES)
def received(archive_id):
    archive = _own_archive(archive_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    confirm_received(actor=audit_actor(g.staff), staff_id=g.staff.id, archive=archive, now=now_utc())
    db.session.commit()
    flash(f"Receipt of the {archive.site} archive confirmed.")
    return redirect(url_for(".archives"))
