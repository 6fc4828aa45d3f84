"""Who may take a site's archive, and the audit of its custody: built, downloaded, received."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..models import SiteArchive
from ..vocabulary import AuditAction, Role

# The site's own staff take its archive: the investigator (who keeps the essential records) and
# the coordinator. Analysts, admins and the unblinded roles have their own exports.
ARCHIVE_ROLES = (Role.INVESTIGATOR, Role.COORDINATOR)
# Audit events of custody are about the archive, not the study's data: an archive built twice from
# unchanged data names the same snapshot (exports.bundle.CUSTODY_ACTIONS).
ENTITY = "archive"


def refuse_unless_may_archive(role: str, own_site: str | None, site: str) -> None:
    """Refuse (403) anyone but the site's investigator or coordinator. Staff without a site work
    for every site (as on every other page) and may take any site's archive."""
    if role not in ARCHIVE_ROLES:
        raise Refused("Only the site's investigator or coordinator takes its archive.", status=403)
    if own_site is not None and own_site != site:
        raise Refused(f"You work for site {own_site}: the archive of site {site} is not yours to take.", status=403)


def record_built(*, actor: str, site: str, manifest: dict, now: datetime, archive_id: int | None = None) -> None:
    audit.record(
        actor=actor,
        action=AuditAction.ARCHIVE_BUILT,
        entity=ENTITY,
        entity_id=archive_id,
        now=now,
        field=site,
        new=f"as of {manifest['as_of_utc']}, {manifest['snapshot']}, {manifest['participants']} participants, "
        f"sha256 {manifest['archive_sha256']}",
    )


def record_downloaded(*, actor: str, archive, now: datetime) -> None:
    audit.record(
        actor=actor,
        action=AuditAction.ARCHIVE_DOWNLOADED,
        entity=ENTITY,
        entity_id=archive.id,
        now=now,
        field=archive.site,
        new=f"zip sha256 {archive.zip_sha256}",
    )


def confirm_received(*, actor: str, staff_id: int, archive, now: datetime) -> None:
    """The site says it holds the archive: once. One conditional UPDATE decides between two
    people confirming at the same moment: one records it, the other is told (409)."""
    if archive.received_at is not None:
        raise Refused("This archive's receipt is already confirmed.", status=409)
    done = db.session.execute(
        update(SiteArchive)
        .where(SiteArchive.id == archive.id, SiteArchive.received_at.is_(None))
        .values(received_at=now, received_by_id=staff_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        raise Refused("This archive's receipt is already confirmed.", status=409)
    audit.record(
        actor=actor,
        action=AuditAction.ARCHIVE_RECEIVED,
        entity=ENTITY,
        entity_id=archive.id,
        now=now,
        field=archive.site,
        new=f"archive sha256 {archive.archive_sha256}",
    )
