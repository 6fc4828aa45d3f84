"""The investigator's sign-off of each participant-period (ICH E6(R3) 3.16.1(o)).

A signature records its meaning, the signer (re-authenticated with password and authenticator
code), the UTC time and the SHA-256 of the period's values at that moment. Its status is worked
out, not stored: when the period's values hash differently now (a change request applied, an
infusion time corrected, a late entry), the signature is invalid and the period is listed to
re-sign. A waiver is a signature of the kind "waived", with its reason.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import select

from ..errors import Refused
from ..extensions import db
from ..models import Assessment, ItemValue, Participant, Period, Signature, StaffUser, Submission
from ..vocabulary import AuditAction, Role, SignatureKind, SignatureStatus
from . import audit
from .second_factor import reauthenticate

MEANING = "I have reviewed these data and confirm that they are attributable, complete and accurate."
SIGNERS = (Role.INVESTIGATOR,)


def period_values(period_ids: list[int]) -> dict[int, list]:
    """Each period's values as a canonical list: its infusion start, then every entry (time
    point, when given, source) with its answers sorted. Two queries for any number of periods."""
    values: dict[int, list] = {period_id: [] for period_id in period_ids}
    if not period_ids:
        return values
    for period_id, dose_start in db.session.execute(
        select(Period.id, Period.dose_start).where(Period.id.in_(period_ids))
    ):
        values[period_id].append(["dose_start", dose_start.isoformat() if dose_start else None])
    rows = db.session.execute(
        select(
            Assessment.period_id,
            Assessment.timepoint,
            Submission.collected_at,
            Submission.source,
            ItemValue.instrument,
            ItemValue.item,
            ItemValue.value,
        )
        .join(Submission, Submission.assessment_id == Assessment.id)
        .outerjoin(ItemValue, ItemValue.submission_id == Submission.id)
        .where(Assessment.period_id.in_(period_ids))
        .order_by(Assessment.period_id, Assessment.timepoint, ItemValue.instrument, ItemValue.item)
    )
    for period_id, timepoint, collected_at, source, instrument, item, value in rows:
        values[period_id].append([timepoint, collected_at.isoformat(), source, instrument, item, value])
    return values


def values_sha256(values: list) -> str:
    return hashlib.sha256(json.dumps(values, separators=(",", ":"), sort_keys=True).encode("utf-8")).hexdigest()


def statuses(period_ids: list[int]) -> dict[int, tuple[SignatureStatus, Signature | None]]:
    """Each period's sign-off status now, with its latest signature (or None)."""
    latest: dict[int, Signature] = {}
    for signature in db.session.scalars(
        select(Signature).where(Signature.period_id.in_(period_ids)).order_by(Signature.id)
    ):
        latest[signature.period_id] = signature
    current = {period_id: values_sha256(values) for period_id, values in period_values(period_ids).items()}
    result = {}
    for period_id in period_ids:
        signature = latest.get(period_id)
        if signature is None:
            result[period_id] = (SignatureStatus.NOT_SIGNED, None)
        elif signature.values_sha256 != current[period_id]:
            result[period_id] = (SignatureStatus.INVALID, signature)
        else:
            result[period_id] = (SignatureStatus(signature.kind), signature)
    return result


def may_sign(user: StaffUser, participant: Participant) -> bool:
    """Investigators sign for their own site's participants (every site when they have none)."""
    return user.role in SIGNERS and (user.site is None or user.site == participant.site)


def _check(period: Period, by: StaffUser, kind: str, reason: str | None) -> SignatureStatus:
    """Refuse what may not be signed; return the period's status now. The period's row is locked
    first: of two investigators signing it at once, the second waits and then finds it signed."""
    db.session.execute(select(Period.id).where(Period.id == period.id).with_for_update())
    if not may_sign(by, period.participant):
        raise Refused("Only an investigator of this participant's site can sign their data.", status=403)
    if kind not in set(SignatureKind):
        raise Refused("Choose to sign or to waive.")
    if kind == SignatureKind.WAIVED and not reason:
        raise Refused("Waiving a signature needs a reason.", field="reason")
    if period.dose_start is None and kind == SignatureKind.SIGNED:
        raise Refused("This infusion has not been given: there are no data to sign (waive it with a reason).")
    status, _latest = statuses([period.id])[period.id]
    if status in (SignatureStatus.SIGNED, SignatureStatus.WAIVED):
        raise Refused("This period is already signed, and nothing has changed since.", status=409)
    return status


def _sign(
    period: Period, status: SignatureStatus, *, by: StaffUser, now: datetime, kind: str, reason: str | None
) -> Signature:
    digest = values_sha256(period_values([period.id])[period.id])
    signature = Signature(
        period=period,
        kind=kind,
        meaning=MEANING if kind == SignatureKind.SIGNED else "Signature waived",
        values_sha256=digest,
        reason=reason,
        signed_by_id=by.id,
        signed_at=now,
    )
    db.session.add(signature)
    db.session.flush()
    audit.record(
        actor=audit.staff_actor(by),
        action=AuditAction.SIGN_PERIOD if kind == SignatureKind.SIGNED else AuditAction.WAIVE_SIGNATURE,
        entity="signature",
        entity_id=signature.id,
        participant_id=period.participant.id,
        field=f"period {period.number}",
        old=status,
        new=f"{kind}: {signature.meaning}; values sha256 {digest}",
        reason=reason,
        now=now,
    )
    return signature


def sign_period(
    period: Period,
    *,
    by: StaffUser,
    password: str,
    code: str,
    now: datetime,
    kind: str = SignatureKind.SIGNED,
    reason: str | None = None,
) -> Signature:
    """Sign (or waive, with a reason) one participant-period, after re-authentication."""
    reason = (reason or "").strip() or None
    status = _check(period, by, kind, reason)
    reauthenticate(by, password, code, now=now)
    return _sign(period, status, by=by, now=now, kind=kind, reason=reason)


def sign_all(
    periods: list[Period],
    *,
    by: StaffUser,
    password: str,
    code: str,
    now: datetime,
    kind: str = SignatureKind.SIGNED,
    reason: str | None = None,
) -> int:
    """Sign every given period that has data (or waive every one, with one reason) after one
    re-authentication; each period gets its own signature, hash and audit event. Periods
    already signed, or without data when signing, are left as they are. Returns how many."""
    reason = (reason or "").strip() or None
    if kind == SignatureKind.WAIVED and not reason:
        raise Refused("Waiving a signature needs a reason.", field="reason")
    todo = []
    for period in periods:
        if kind == SignatureKind.SIGNED and period.dose_start is None:
            continue
        try:
            todo.append((period, _check(period, by, kind, reason)))
        except Refused as refusal:
            if refusal.status == 409:
                continue
            raise
    if not todo:
        return 0
    reauthenticate(by, password, code, now=now)
    for period, status in todo:
        _sign(period, status, by=by, now=now, kind=kind, reason=reason)
    return len(todo)


def unsigned_periods(study_id: int) -> list[tuple[Period, SignatureStatus]]:
    """Every period not signed or waived now (never signed, or signed and changed since)."""
    periods = db.session.scalars(
        select(Period)
        .join(Participant)
        .where(Participant.study_id == study_id)
        .order_by(Participant.code, Period.number)
    ).all()
    found = statuses([period.id for period in periods])
    return [
        (period, found[period.id][0])
        for period in periods
        if found[period.id][0] in (SignatureStatus.NOT_SIGNED, SignatureStatus.INVALID)
    ]


def statuses_for_study(study_id: int) -> dict[int, SignatureStatus]:
    """Every signed or waived period's status (valid or invalid) for an export: only periods with
    a signature have their values hashed (others are simply not signed), 500 at a time."""
    signed = list(
        db.session.scalars(
            select(Signature.period_id)
            .join(Period, Signature.period_id == Period.id)
            .join(Participant, Period.participant_id == Participant.id)
            .where(Participant.study_id == study_id)
            .distinct()
        )
    )
    result: dict[int, SignatureStatus] = {}
    for start in range(0, len(signed), 500):
        for period_id, (status, _signature) in statuses(signed[start : start + 500]).items():
            result[period_id] = status
    return result
