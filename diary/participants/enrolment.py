"""Enrolment: participant codes, sequences from the randomization list, personal links."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..dosing.infusions import start_at_randomization
from ..errors import Refused
from ..extensions import db
from ..governance import audit
from ..governance.lock import refuse_if_locked
from ..i18n import DEFAULT_LANGUAGE, LANGUAGES
from ..models import Assessment, Participant, Period, Study
from ..study.randomization import dummy_for, next_sequence
from ..study.trial import protocol_of
from ..vocabulary import AuditAction, DecidedBy, ParticipantStatus, Role, Sex, WithdrawalReason
from .links import hash_token, participant_link  # noqa: F401  (participant_link: callers' name for it)
from .preferences import check_reminder_hours

# No 0/O or 1/I/L: codes get read out over the phone.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def generate_participant_code() -> str:
    """A random pseudonymous code, never derived from who the person is."""
    return "P-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Refused(f"'{name}' is not a time zone name such as Europe/Paris or America/New_York") from None
    return name


# An address the reminder email can carry as it is: ASCII (no SMTPUTF8 needed), no spaces or
# line breaks (no header injection), one @ with a dotted domain.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$",
    re.ASCII,
)
_PHONE = re.compile(r"^[0-9 +().-]{5,40}$", re.ASCII)


def check_contact(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """Contact details the reminders can use as they are, the same rules for web and CLI."""
    email, phone = (email or "").strip() or None, (phone or "").strip() or None
    if email is not None and (len(email) > 254 or not _EMAIL.match(email)):
        raise Refused(
            f"'{email}' cannot be used for reminders: give a plain address such as "
            "name@example.org (letters without accents, no spaces).",
            field="email",
        )
    if phone is not None and not _PHONE.match(phone):
        raise Refused("A phone number may hold digits, spaces and + ( ) - only.", field="phone")
    return email, phone


def mask_email(email: str | None) -> str:
    """An address as lists show it: enough to tell two apart, not to write to."""
    if not email or "@" not in email:
        return ""
    name, domain = email.split("@", 1)
    return f"{name[:1]}***@{domain}"


def mask_phone(phone: str | None) -> str:
    digits = [c for c in phone or "" if c.isdigit()]
    return f"••• {''.join(digits[-3:])}" if digits else ""


def reveal_contact(participant: Participant, *, by, now: datetime) -> tuple[str | None, str | None]:
    """A coordinator asks to see a participant's phone and email (to make a call): audited."""
    if by.role != Role.COORDINATOR:
        raise Refused("Only coordinators see participants' contact details.", status=403)
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.VIEW_CONTACT,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
        new="email and phone shown",
    )
    return participant.email, participant.phone


def change_contact(
    participant: Participant, *, email: str | None, phone: str | None, reason: str, by, now: datetime
) -> bool:
    """A coordinator corrects a participant's email or phone, with a reason. The audit event
    keeps the old and new values masked (the trail is exported; contact details never are)."""
    if by.role != Role.COORDINATOR:
        raise Refused("Only coordinators change participants' contact details.", status=403)
    email, phone = check_contact(email, phone)
    reason = (reason or "").strip()
    if not reason:
        raise Refused("Say why the contact details change.", field="reason")
    changed = False
    for field_name, new, mask in (("email", email, mask_email), ("phone", phone, mask_phone)):
        old = getattr(participant, field_name)
        if old == new:
            continue
        setattr(participant, field_name, new)
        changed = True
        audit.record(
            actor=audit.staff_actor(by),
            action=AuditAction.CHANGE_CONTACT,
            entity="participant",
            entity_id=participant.id,
            participant_id=participant.id,
            now=now,
            field=field_name,
            old=mask(old) or None,
            new=mask(new) or None,
            reason=reason,
        )
    return changed


def check_demographics(sex: str | None, birth_year, now: datetime) -> tuple[str, int | None]:
    """Sex in CDISC's codes (empty: U, not collected) and a plausible year of birth (or none)."""
    sex = (sex or Sex.UNKNOWN).strip().upper()
    if sex not in set(Sex):
        raise Refused("Sex is F, M or U (not collected).", field="sex")
    if birth_year in (None, ""):
        return sex, None
    try:
        year = int(birth_year)
    except (TypeError, ValueError):
        raise Refused("The year of birth is a year such as 1968.", field="birth_year") from None
    if not now.year - 120 <= year <= now.year - 12:
        raise Refused(f"A year of birth between {now.year - 120} and {now.year - 12}, please.", field="birth_year")
    return sex, year


def enroll(
    study: Study,
    *,
    site: str,
    timezone: str,
    actor: str,
    now: datetime,
    code: str | None = None,
    sequence: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    reminder_from: str | None = None,
    reminder_until: str | None = None,
    language: str = DEFAULT_LANGUAGE,
    told_treatment_order: bool = False,
    sex: str = Sex.UNKNOWN,
    birth_year: int | None = None,
) -> tuple[Participant, str]:
    """Enrol a participant and issue their personal link. Returns the participant and the token.

    ``told_treatment_order``: they asked to be told their treatment order once the study is
    unblinded (``study.blinding.treatment_order_for``).

    The sequence is given (by the unblinded role or a script) or taken from the next free slot of
    the site's randomization list. Periods are created now; their schedules when dosed.
    """
    refuse_if_locked(study)
    protocol = protocol_of(study.current_protocol_version)
    site = site.strip()
    if not site:
        raise Refused("A site is required.")
    check_timezone(timezone)
    if language not in LANGUAGES:
        raise Refused(f"Unknown language '{language}'; the diary speaks {', '.join(LANGUAGES)}.", field="language")
    email, phone = check_contact(email, phone)
    sex, birth_year = check_demographics(sex, birth_year, now)
    reminder_from, reminder_until = check_reminder_hours(reminder_from, reminder_until)
    slot = None
    if sequence is None:
        slot = next_sequence(study, site)
        sequence = slot.sequence
    if sequence not in protocol.sequences:
        raise Refused(f"Unknown sequence '{sequence}'; the protocol has {', '.join(protocol.sequences)}.")
    code = (code or generate_participant_code()).strip()
    taken = db.session.scalar(select(Participant.id).where(Participant.study_id == study.id, Participant.code == code))
    if taken:
        raise Refused(f"Participant code {code} is already used in this study.", status=409)
    token = secrets.token_urlsafe(32)
    participant = Participant(
        study=study,
        code=code,
        site=site,
        timezone=timezone,
        sequence=sequence,
        dummy_sequence=dummy_for(slot, protocol.sequences),
        status=ParticipantStatus.ACTIVE,
        email=email or None,
        phone=phone or None,
        enrolled_at=now,
        reminder_from=reminder_from,
        reminder_until=reminder_until,
        language=language,
        told_treatment_order=bool(told_treatment_order),
        sex=sex,
        birth_year=birth_year,
        link_token_hash=hash_token(token),
        link_issued_at=now,
        pin_generation=0,
        pin_failed_count=0,
    )
    try:
        with db.session.begin_nested():  # the unique code decides a race the check above lost
            db.session.add(participant)
            for number, treatment in enumerate(protocol.sequences[sequence], start=1):
                db.session.add(Period(participant=participant, number=number, treatment=treatment))
    except IntegrityError:
        raise Refused(f"Participant code {code} is already used in this study.", status=409) from None
    audit.record(
        actor=actor,
        action=AuditAction.ENROLL,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
        new=f"code={code} site={site} timezone={timezone} language={language}",
    )
    if slot is not None:
        slot.participant_id = participant.id
        # Names the allocation, so only the unblinded role's pages show this event (see
        # audit.UNBLINDED_ONLY); it lets a monitor check no slot was given twice.
        audit.record(
            actor=actor,
            action=AuditAction.ASSIGN_RANDOMIZATION_SLOT,
            entity="randomization_slot",
            entity_id=slot.id,
            participant_id=participant.id,
            now=now,
            new=f"site={slot.site} position={slot.position} sequence={slot.sequence}",
        )
    if not protocol.has_infusions:  # day 1 is the randomization date: the diary starts now
        start_at_randomization(participant, actor=actor, now=now)
    return participant, token


def reissue_link(participant: Participant, *, actor: str, now: datetime, reason: str | None = None) -> str:
    """A new link; the old one stops working at once."""
    if participant.status not in ParticipantStatus.in_diary():
        raise Refused("This participant has withdrawn; their link cannot be reissued.", status=409)
    token = secrets.token_urlsafe(32)
    participant.link_token_hash = hash_token(token)
    participant.link_issued_at = now
    participant.link_revoked_at = None
    audit.record(
        actor=actor,
        action=AuditAction.REISSUE_LINK,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
        reason=(reason or "").strip() or None,
    )
    return token


def revoke_link(participant: Participant, *, actor: str, now: datetime, reason: str) -> None:
    """End the participant's link at once (a lost phone, a link shared by mistake): every phone
    signed in with it is signed out at its next request, and reminders' links stop working. A
    new link is given with *Reissue link*."""
    reason = (reason or "").strip()
    if not reason:
        raise Refused("Say why the link is revoked.", field="reason")
    if participant.link_revoked_at is not None:
        raise Refused("This link is already revoked.", status=409)
    participant.link_revoked_at = now
    audit.record(
        actor=actor,
        action=AuditAction.REVOKE_LINK,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        now=now,
        reason=reason,
    )


def _locked_afresh(participant: Participant) -> None:
    """Lock the participant's row and read it again (two stops at once see each other)."""
    db.session.execute(
        select(Participant)
        .where(Participant.id == participant.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _check_stop(participant: Participant, reason: str, category: str, decided_by: str, what: str) -> None:
    refuse_if_locked(participant.study)
    if not reason or not reason.strip():
        raise Refused(f"A reason is required to {what}.")
    if category not in set(WithdrawalReason):
        raise Refused(f"Choose why: {', '.join(WithdrawalReason)}.", field="category")
    if decided_by not in set(DecidedBy):
        raise Refused(f"Say who decided: {', '.join(DecidedBy)}.", field="decided_by")


def withdraw(
    participant: Participant,
    *,
    actor: str,
    now: datetime,
    reason: str,
    category: str = WithdrawalReason.OTHER,
    decided_by: str = DecidedBy.PARTICIPANT,
) -> int:
    """Withdrawal of consent: no further contact. Remaining assessments become not_applicable;
    the data already given is kept (nothing is deleted).

    ``category`` is the reason an analyst counts (exported); ``reason`` the words, kept in the
    audit trail; ``decided_by`` who decided. Returns how many assessments were marked not
    applicable. A participant who only stops treatment is ``discontinue``d instead.
    """
    _check_stop(participant, reason, category, decided_by, "withdraw a participant")
    _locked_afresh(participant)  # two withdrawals at once must not both pass the check below
    if participant.status == ParticipantStatus.WITHDRAWN:
        raise Refused("This participant is already withdrawn.", status=409)
    previous = participant.status
    participant.status = ParticipantStatus.WITHDRAWN
    participant.withdrawn_at = now
    participant.withdrawal_reason = category
    participant.withdrawal_decided_by = decided_by
    remaining = db.session.scalars(
        select(Assessment)
        .join(Period)
        .where(Period.participant_id == participant.id, Assessment.late_close > now)
        .where(~Assessment.submission.has())
    ).all()
    for assessment in remaining:
        assessment.not_applicable = True
    closed = ", ".join(
        f"infusion {a.period.number} {a.timepoint}"
        for a in sorted(remaining, key=lambda a: (a.period.number, a.target))
    )
    audit.record(
        actor=actor,
        action=AuditAction.WITHDRAW,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        field="status",
        old=previous,
        new=f"{ParticipantStatus.WITHDRAWN} ({category}, decided by the {decided_by}); "
        f"entries closed as not applicable: {closed or 'none'}",
        reason=reason.strip(),
        now=now,
    )
    return len(remaining)


def discontinue(
    participant: Participant,
    *,
    actor: str,
    now: datetime,
    reason: str,
    category: str = WithdrawalReason.OTHER,
    decided_by: str = DecidedBy.INVESTIGATOR,
) -> None:
    """Treatment discontinued, follow-up continues: no more infusions can be planned or
    recorded, but the diary keeps asking for the entries already scheduled, with reminders and
    follow-up calls, until the participant completes them or withdraws."""
    _check_stop(participant, reason, category, decided_by, "discontinue treatment")
    _locked_afresh(participant)
    if participant.status != ParticipantStatus.ACTIVE:
        raise Refused(f"This participant is already {participant.status}.", status=409)
    participant.status = ParticipantStatus.DISCONTINUED
    participant.discontinued_at = now
    participant.discontinuation_reason = category
    participant.discontinuation_decided_by = decided_by
    audit.record(
        actor=actor,
        action=AuditAction.DISCONTINUE,
        entity="participant",
        entity_id=participant.id,
        participant_id=participant.id,
        field="status",
        old=ParticipantStatus.ACTIVE,
        new=f"{ParticipantStatus.DISCONTINUED} ({category}, decided by the {decided_by}); the diary continues",
        reason=reason.strip(),
        now=now,
    )
