"""The study and its protocol versions."""

from __future__ import annotations

from sqlalchemy import select, update

from ..errors import Refused
from ..extensions import db
from ..models import Participant, ProtocolVersion, Study, now_utc
from ..protocol import Protocol, load_protocol, parse_protocol, protocol_sha256, shipped_protocol_path
from ..settings import setting
from ..vocabulary import AuditAction, Role

# Parsed protocols by the hash of their text. Versions never change once stored, so a process
# parses each once and reads its stored text only then.
_BY_SHA256: dict[str, Protocol] = {}


def protocol_of(version: ProtocolVersion) -> Protocol:
    """The parsed protocol an assessment or study was scheduled under (parsed once per process;
    the stored text is read only then)."""
    protocol = _BY_SHA256.get(version.sha256)
    if protocol is None:
        if len(_BY_SHA256) >= 64:
            _BY_SHA256.clear()  # a bound for the test suite's many protocols; a trial has a few
        protocol = _BY_SHA256[version.sha256] = parse_protocol(
            version.source_text, source=f"protocol {version.sha256[:12]}"
        )
    return protocol


def current_study() -> Study | None:
    """The study this installation runs (one study per installation)."""
    return db.session.scalars(select(Study).order_by(Study.id).limit(1)).first()


def require_study() -> Study:
    study = current_study()
    if study is None:
        raise RuntimeError("no study yet: run 'flask --app wsgi diary init' first")
    return study


def _study_name(protocol: Protocol) -> str:
    """DIARY_STUDY_NAME, else the protocol's title. The shipped default name is the default
    protocol's: another protocol run without a name of its own takes its title."""
    from .. import config

    name = setting("STUDY_NAME", None)
    if name == config.STUDY_NAME and protocol.id != config.PROTOCOL:
        name = None
    return name or protocol.title


def _has_participants(study: Study) -> bool:
    return db.session.scalar(select(Participant.id).where(Participant.study_id == study.id).limit(1)) is not None


def ensure_study(protocol_path=None) -> tuple[Study, bool]:
    """Create the study on first run; add a protocol version when the protocol file changed.

    Returns the study and whether a new protocol version was stored. Assessments keep pointing
    at the version they were scheduled under.
    """
    path = protocol_path or setting("PROTOCOL_FILE", None) or shipped_protocol_path(setting("PROTOCOL"))
    protocol = load_protocol(path)
    sha = protocol_sha256(protocol.source_text)
    study = current_study()
    if study is None:
        study = Study(slug=protocol.id, name=_study_name(protocol))
        db.session.add(study)
        db.session.flush()
    versions = study.protocol_versions
    if versions and versions[-1].sha256 == sha:
        return study, False
    if versions and _has_participants(study):
        # A running study changes protocol only by an amendment: classified, with a reason, and
        # a second person's approval when it is critical (``dosing.amendments``).
        raise Refused(
            f"The protocol file {path} differs from the running version {versions[-1].version}, and the "
            "study has participants: amend it instead (flask diary protocol amend FILE --reason ...).",
            status=409,
        )
    label = protocol.version
    if any(v.version == label for v in versions):
        # Same declared version, different text: keep both, distinguishable.
        label = f"{protocol.version}+{sha[:8]}"
    version = ProtocolVersion(
        study=study,
        protocol_id=protocol.id,
        version=label,
        source_text=protocol.source_text,
        sha256=sha,
        loaded_at=now_utc(),
    )
    db.session.add(version)
    db.session.flush()
    return study, True


def unblind(study: Study, *, user, now) -> None:
    """Reveal the treatment names in exports. Irreversible, and only for the unblinded role."""
    from ..governance import audit

    if user.role != Role.UNBLINDED:
        raise Refused("Only the unblinded role can unblind the study.", status=403)
    from ..governance.lock import refuse_until_ready_for_the_truth

    refuse_until_ready_for_the_truth(study)
    # One conditional statement: of two unblinding at once, one does it and one is told.
    done = db.session.execute(
        update(Study)
        .where(Study.id == study.id, Study.unblinded_at.is_(None))
        .values(unblinded_at=now, unblinded_by_id=user.id)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(study)
    if done.rowcount != 1:
        raise Refused("The study is already unblinded.", status=409)
    audit.record(
        actor=audit.staff_actor(user),
        action=AuditAction.UNBLIND,
        entity="study",
        entity_id=study.id,
        field="unblinded_at",
        old=None,
        new=now.isoformat(),
        now=now,
        reason="treatment key revealed in exports",
    )


def site_contact(site: str) -> str:
    contacts = setting("SITE_CONTACTS", None) or {}
    return contacts.get(site) or setting("DEFAULT_SITE_CONTACT")
