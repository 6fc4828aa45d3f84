"""The trial's data, as typed SQLAlchemy 2 models.

Every time is a timezone-aware UTC ``datetime`` in Python (see ``UTCDateTime``). Nothing is
hard-deleted: ``forbid_deletes`` refuses any ORM delete, and changes leave audit events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .extensions import db
from .i18n import LANGUAGES
from .vocabulary import (
    AmendmentClass,
    AmendmentState,
    ChangeRequestState,
    ChangeRequestType,
    DecidedBy,
    FollowUpOutcome,
    ParticipantStatus,
    ReminderChannel,
    ReminderKind,
    ReminderState,
    ReviewState,
    Role,
    Severity,
    Sex,
    SignatureKind,
    Source,
    StaffMessageKind,
    SubmissionMode,
    WithdrawalReason,
    sql_in,
)


def now_utc() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores UTC, hands back aware UTC datetimes, and refuses naive ones.

    SQLite has no time zone type, so there the value is stored as naive UTC; PostgreSQL keeps a
    ``timestamptz``. Refusing naive datetimes catches the classic bug of a local time slipping in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; diary stores only timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect, coltype):
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse = datetime.fromisoformat

        # SQLite hands back the stored (naive UTC) text: parsed with its zone in one step, five
        # times faster than parsing and then replacing the zone. An export reads millions.
        def process(value):
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    return parse(value + "+00:00")
                except ValueError:  # written with an offset of its own (by hand)
                    value = parse(value)
            return self.process_result_value(value, dialect)

        return process


class Study(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    # Set once, by the unblinded role; never cleared (unblinding is irreversible).
    unblinded_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    unblinded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    # While set, no data may change (every write answers 423) and the scheduler sends nothing;
    # unlocking clears it (with a reason, in the audit trail).
    locked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    locked_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    lock_reason: Mapped[Optional[str]] = mapped_column(Text)

    protocol_versions: Mapped[list[ProtocolVersion]] = relationship(
        back_populates="study", order_by="ProtocolVersion.id"
    )

    @property
    def current_protocol_version(self) -> ProtocolVersion:
        return self.protocol_versions[-1]


class ProtocolVersion(db.Model):
    """The exact protocol text a study was run under; assessments point at the one they used."""

    __table_args__ = (UniqueConstraint("study_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    protocol_id: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(40))
    # Loaded only when a process first parses this version (``study.protocol_of``): every entry
    # page and submit loads the version, and the text is kilobytes.
    source_text: Mapped[str] = mapped_column(Text, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    study: Mapped[Study] = relationship(back_populates="protocol_versions")


class Participant(db.Model):
    __table_args__ = (
        UniqueConstraint("study_id", "code"),
        CheckConstraint(sql_in("status", ParticipantStatus), name="status"),
        CheckConstraint("sequence IS NULL OR length(sequence) > 0", name="sequence"),
        CheckConstraint(sql_in("withdrawal_reason", WithdrawalReason, nullable=True), name="withdrawal_reason"),
        CheckConstraint(
            sql_in("discontinuation_reason", WithdrawalReason, nullable=True), name="discontinuation_reason"
        ),
        CheckConstraint(
            sql_in("discontinuation_decided_by", DecidedBy, nullable=True), name="discontinuation_decided_by"
        ),
        CheckConstraint(sql_in("withdrawal_decided_by", DecidedBy, nullable=True), name="withdrawal_decided_by"),
        CheckConstraint(sql_in("language", LANGUAGES), name="language"),
        CheckConstraint(sql_in("sex", Sex), name="sex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    # Pseudonymous and random: never derived from a name or a hospital number.
    code: Mapped[str] = mapped_column(String(40))
    site: Mapped[str] = mapped_column(String(80))
    timezone: Mapped[str] = mapped_column(String(64))
    # The language of their diary, reminders and printed sheet (i18n.LANGUAGES).
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    # Sequence of masked treatment codes, e.g. "AB". Only the unblinded role sees it.
    sequence: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ParticipantStatus.ACTIVE.value)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    withdrawn_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    withdrawal_reason: Mapped[Optional[str]] = mapped_column(String(32))
    # Treatment stopped, diary continues (status discontinued); and who decided either stop.
    discontinued_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    discontinuation_reason: Mapped[Optional[str]] = mapped_column(String(32))
    discontinuation_decided_by: Mapped[Optional[str]] = mapped_column(String(16))
    withdrawal_decided_by: Mapped[Optional[str]] = mapped_column(String(16))
    # The dummy allocation blinded analysts' exports carry before unblinding (randomization.py):
    # drawn once, kept, so their programs see the same data export after export.
    dummy_sequence: Mapped[Optional[str]] = mapped_column(String(16))

    # Contact for reminders. Direct identifiers: never exported unless an identified export.
    email: Mapped[Optional[str]] = mapped_column(String(254))
    phone: Mapped[Optional[str]] = mapped_column(String(40))
    # Preferred reminder hours on the participant's clock ("08:00" to "21:00"); outside them
    # reminders wait, as in the protocol's quiet hours.
    reminder_from: Mapped[Optional[str]] = mapped_column(String(5))
    reminder_until: Mapped[Optional[str]] = mapped_column(String(5))
    # Each reminder channel can be turned off by the participant.
    email_reminders: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    push_reminders: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    calendar_feed: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")

    # Personal link: only a hash of the token is kept, so a database leak does not open diaries.
    link_token_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    link_issued_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    link_revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    pin_hash: Mapped[Optional[str]] = mapped_column(String(200))
    # Bumped whenever the PIN is set or reset, so remembered phones must log in again.
    pin_generation: Mapped[int] = mapped_column(Integer, default=0)
    pin_failed_count: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Set when one participant's code was broken in an emergency (the rest stays blinded).
    code_broken_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    code_broken_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    # Bumped when the participant signs out: every remembered phone must enter the PIN again.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Asked at enrolment: to be told their treatment order once the study is unblinded (ICH E6(R3)
    # 2.8.10); their diary shows it then, and only then.
    told_treatment_order: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Collected at enrolment for the SDTM demographics (DM.SEX, DM.AGE): sex in CDISC's codes (U
    # when not collected), and the year of birth only (a full date of birth identifies).
    sex: Mapped[str] = mapped_column(String(1), default=Sex.UNKNOWN.value, server_default=Sex.UNKNOWN.value)
    birth_year: Mapped[Optional[int]] = mapped_column(Integer)

    study: Mapped[Study] = relationship()
    periods: Mapped[list[Period]] = relationship(back_populates="participant", order_by="Period.number")


class Period(db.Model):
    """One dosing period. Its schedule is anchored to the actual infusion start once recorded,
    and before that to the planned start, so that pre-dose entries (BL) can open ahead."""

    __table_args__ = (
        UniqueConstraint("participant_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"))
    number: Mapped[int] = mapped_column(Integer)
    treatment: Mapped[str] = mapped_column(String(8))  # masked code: A or B
    # Set ahead by a coordinator; the assessments open against it until the dose is recorded.
    planned_start: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    dose_start: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, index=True)
    dose_recorded_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    participant: Mapped[Participant] = relationship(back_populates="periods")
    assessments: Mapped[list[Assessment]] = relationship(back_populates="period", order_by="Assessment.target")

    @property
    def anchor(self) -> datetime | None:
        """What the schedule is computed from: the actual start, else the planned one."""
        return self.dose_start or self.planned_start


class Assessment(db.Model):
    """One time point of one period: its window in UTC and at most one submission.

    The state is not stored: it follows from ``now`` and the submission (``dosing.assessments.state_of``).
    """

    __table_args__ = (
        UniqueConstraint("period_id", "timepoint"),
        CheckConstraint("window_open < window_close", name="window_order"),
        CheckConstraint("late_close >= window_close", name="late_after_close"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("period.id"))
    protocol_version_id: Mapped[int] = mapped_column(ForeignKey("protocol_version.id"))
    timepoint: Mapped[str] = mapped_column(String(16))
    target: Mapped[datetime] = mapped_column(UTCDateTime)
    window_open: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    window_close: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # End of the grace the protocol allows; entries between close and this are completed_late.
    late_close: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    not_applicable: Mapped[bool] = mapped_column(Boolean, default=False)

    period: Mapped[Period] = relationship(back_populates="assessments")
    protocol_version: Mapped[ProtocolVersion] = relationship()
    submission: Mapped[Optional[Submission]] = relationship(back_populates="assessment")


class Submission(db.Model):
    """What was entered for an assessment. The database allows one per assessment."""

    __table_args__ = (
        CheckConstraint(sql_in("source", Source), name="source"),
        CheckConstraint("source = 'participant' OR reason IS NOT NULL", name="reason_for_proxy"),
        CheckConstraint(sql_in("submission_mode", SubmissionMode), name="submission_mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessment.id"), unique=True)
    # When the answers reached the server, and when they were given (the same moment for a
    # participant's own entry; the paper's date or the interview's time for staff entries).
    # States, minutes from dose and endpoints use collected_at. The phone's clock is kept too.
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    device_time: Mapped[Optional[str]] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20), default=Source.PARTICIPANT.value)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    entered_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    # An answer the protocol marks as alerting (a severe side effect, say) was given.
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    # online, offline_sync (made without a connection, sent later) or staff.
    submission_mode: Mapped[str] = mapped_column(
        String(16), default=SubmissionMode.ONLINE.value, server_default=SubmissionMode.ONLINE.value
    )
    # The device it was answered on (bring-your-own-device evidence, no fingerprinting beyond
    # this): the page's size in CSS pixels, the screen's pixel ratio, the pinch zoom and text
    # scale where the browser tells, and the browser family with its major version.
    viewport_width: Mapped[Optional[int]] = mapped_column(Integer)
    viewport_height: Mapped[Optional[int]] = mapped_column(Integer)
    device_pixel_ratio: Mapped[Optional[float]] = mapped_column(Float)
    zoom: Mapped[Optional[float]] = mapped_column(Float)
    text_scale: Mapped[Optional[float]] = mapped_column(Float)
    browser: Mapped[Optional[str]] = mapped_column(String(40))

    assessment: Mapped[Assessment] = relationship(back_populates="submission")
    values: Mapped[list[ItemValue]] = relationship(back_populates="submission", order_by="ItemValue.id")


class ItemValue(db.Model):
    """One answered item of a submission. Corrections change it and leave an audit event."""

    __table_args__ = (UniqueConstraint("submission_id", "instrument", "item"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"))
    instrument: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    # The value as first stored, kept when a change is applied (None while never changed), with
    # when it last changed and the change request that changed it (None for a staff correction).
    original_value: Mapped[Optional[str]] = mapped_column(Text)
    changed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    change_request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("change_request.id"))

    submission: Mapped[Submission] = relationship(back_populates="values")


class SideEffectReport(db.Model):
    """A solicited checklist row (term and severity) or an unsolicited free-text report."""

    __table_args__ = (
        CheckConstraint(sql_in("severity", Severity.reported(), nullable=True), name="severity"),
        CheckConstraint(sql_in("review_state", ReviewState), name="review_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("period.id"), index=True)
    submission_id: Mapped[Optional[int]] = mapped_column(ForeignKey("submission.id"))
    timepoint: Mapped[Optional[str]] = mapped_column(String(16))
    term: Mapped[str] = mapped_column(String(64))
    severity: Mapped[Optional[str]] = mapped_column(String(16))
    solicited: Mapped[bool] = mapped_column(Boolean)
    verbatim: Mapped[Optional[str]] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Raised for a severe report or an answer the protocol marks as alerting.
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    # The study team's review: acknowledged_* say who reviewed it, when, and their note.
    acknowledged_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    acknowledgement_note: Mapped[Optional[str]] = mapped_column(Text)
    review_state: Mapped[str] = mapped_column(
        String(16), default=ReviewState.NEW.value, server_default=ReviewState.NEW.value
    )
    # Severe reports must be reviewed by then (the protocol's safety.severe_review_within).
    review_due_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # A verbatim (unsolicited) report coded by the study team: the dictionary's term, who coded it,
    # when and why (solicited terms are coded in the protocol itself).
    coded_term: Mapped[Optional[str]] = mapped_column(String(200))
    coded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    coded_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    coding_reason: Mapped[Optional[str]] = mapped_column(Text)

    period: Mapped[Period] = relationship()
    submission: Mapped[Optional[Submission]] = relationship()


class RandomizationSlot(db.Model):
    """One row of the randomization list: the next free slot per site gives the sequence."""

    __tablename__ = "randomization_slot"
    __table_args__ = (UniqueConstraint("study_id", "site", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    site: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[str] = mapped_column(String(16))
    # This slot's sequence in the dummy allocation: the uploaded list's sequences shuffled once,
    # so the dummy keeps the list's AB/BA counts (randomization.py).
    dummy_sequence: Mapped[Optional[str]] = mapped_column(String(16))
    participant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("participant.id"), unique=True)


class StaffUser(db.Model):
    __tablename__ = "staff_user"
    __table_args__ = (CheckConstraint(sql_in("role", Role), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    # The site whose participants an investigator controls (None: every site).
    site: Mapped[Optional[str]] = mapped_column(String(80))
    # Bumped at logout so that a copied session cookie stops working.
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    # An account an admin created signs in with the admin's password once, then must set its own.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Second factor (TOTP): the shared secret, set when the person confirms a first code.
    totp_secret: Mapped[Optional[str]] = mapped_column(String(64))
    totp_enabled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The last 30-second step whose code signed in: a code is accepted once, never replayed.
    totp_last_step: Mapped[Optional[int]] = mapped_column(BigInteger)


class RecoveryCode(db.Model):
    """A one-time code for signing in without the authenticator; only its keyed hash is kept."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class Reminder(db.Model):
    """One reminder owed: the outbox row a dispatch pass claims, sends and records.

    The unique key (assessment, kind, channel) means a reminder can exist only once, however
    many schedulers run; claiming is a conditional update, so only one of them sends it.
    """

    __table_args__ = (
        UniqueConstraint("assessment_id", "kind", "channel"),
        CheckConstraint(sql_in("kind", ReminderKind), name="kind"),
        CheckConstraint(sql_in("channel", ReminderChannel), name="channel"),
        CheckConstraint(sql_in("state", ReminderState), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessment.id"))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(12), default=ReminderState.PENDING.value, index=True)
    # When it should go out (after quiet hours), and the moment after which it is pointless.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    claim_token: Mapped[Optional[str]] = mapped_column(String(40), index=True)
    claimed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    # The participant followed the link this reminder carried (reached, and not ignored).
    opened_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    assessment: Mapped[Assessment] = relationship()


class StaffMessage(db.Model):
    """An email owed to the study team (a severe-answer alert, a code-break notice, a digest):
    an outbox row like a reminder, claimed, sent and recorded by the same dispatch pass. Its
    unique key makes it exist once whoever enqueues it."""

    __tablename__ = "staff_message"
    __table_args__ = (
        CheckConstraint(sql_in("kind", StaffMessageKind), name="kind"),
        CheckConstraint(sql_in("state", ReminderState), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    participant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("participant.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), default=ReminderState.PENDING.value, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    claim_token: Mapped[Optional[str]] = mapped_column(String(40), index=True)
    claimed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class FollowUpTask(db.Model):
    """A participant a coordinator should call, created once by a protocol follow-up rule."""

    __tablename__ = "follow_up_task"
    __table_args__ = (CheckConstraint(sql_in("outcome", FollowUpOutcome, nullable=True), name="outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    rule: Mapped[str] = mapped_column(String(40))
    # Names what raised it (rule, participant, time point...), so a task exists once.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    outcome: Mapped[Optional[str]] = mapped_column(String(20))
    note: Mapped[Optional[str]] = mapped_column(Text)
    closed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))

    participant: Mapped[Participant] = relationship()


class PushSubscription(db.Model):
    """A browser's web push subscription. Ended (not deleted) when the push service says 404/410."""

    __tablename__ = "push_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    endpoint: Mapped[str] = mapped_column(String(1000), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    ended_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    ended_reason: Mapped[Optional[str]] = mapped_column(String(200))


class LoginThrottle(db.Model):
    """Failed staff logins per account and per address, in the database so every process sees them."""

    __tablename__ = "login_throttle"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)  # "account:EMAIL" or "address:IP"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class ActionKey(db.Model):
    """The key of a staff form, stored with the action it did: a reloaded or double-posted form
    finds its key taken and does nothing a second time (its unique key decides, even in a race)."""

    __tablename__ = "action_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(300))
    participant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("participant.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class ChangeRequest(db.Model):
    """A request to change a value a participant entered (a DCR): opened by a coordinator with the
    source of the correct value, decided by an investigator other than the requester, applied
    only when approved."""

    __table_args__ = (
        CheckConstraint(sql_in("kind", ChangeRequestType), name="kind"),
        CheckConstraint(sql_in("state", ChangeRequestState), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id"), index=True)
    instrument: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    # Where the correct value comes from ("phone call with the participant"), and when.
    source: Mapped[str] = mapped_column(Text)
    source_at: Mapped[datetime] = mapped_column(UTCDateTime)
    current_value: Mapped[Optional[str]] = mapped_column(Text)
    proposed_value: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default=ChangeRequestState.OPEN.value, index=True)
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    decided_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    decision_note: Mapped[Optional[str]] = mapped_column(Text)

    submission: Mapped[Submission] = relationship()
    requested_by: Mapped[StaffUser] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[Optional[StaffUser]] = relationship(foreign_keys=[decided_by_id])


class Signature(db.Model):
    """The investigator's sign-off of one participant-period (or its waiver), with the SHA-256 of
    the period's values it covers: a later change makes the hashes differ, and the signature
    invalid, without anything else having to remember to say so. A new signature is a new row."""

    __table_args__ = (CheckConstraint(sql_in("kind", SignatureKind), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("period.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    meaning: Mapped[str] = mapped_column(Text)
    values_sha256: Mapped[str] = mapped_column(String(64))
    reason: Mapped[Optional[str]] = mapped_column(Text)
    signed_by_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    period: Mapped[Period] = relationship()
    signed_by: Mapped[StaffUser] = relationship()


class AuditReview(db.Model):
    """A reviewer's record of one audit-trail check: what they looked at and concluded."""

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    check: Mapped[str] = mapped_column(String(64))
    cases: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text)
    reviewed_by_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    reviewed_by: Mapped[StaffUser] = relationship()


class ProtocolAmendment(db.Model):
    """A new version of the running protocol as proposed: its text, why, what it changes (each
    change classified, ``protocol.diff``), who proposed it and, for a critical one, who else
    approved it. Applying it adds the ``ProtocolVersion`` it names."""

    __table_args__ = (
        CheckConstraint(sql_in("state", AmendmentState), name="state"),
        CheckConstraint(sql_in("classification", AmendmentClass), name="classification"),
        # One amendment waits at a time: two proposed at once, the database keeps one.
        Index(
            "ix_protocol_amendment_one_waiting",
            "study_id",
            unique=True,
            sqlite_where=text("state = 'proposed'"),
            postgresql_where=text("state = 'proposed'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    base_version_id: Mapped[int] = mapped_column(ForeignKey("protocol_version.id"))
    version: Mapped[str] = mapped_column(String(40))
    source_text: Mapped[str] = mapped_column(Text, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    classification: Mapped[str] = mapped_column(String(16))
    changes: Mapped[str] = mapped_column(Text)  # one classified change a line
    state: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(300))  # the audit actor
    proposed_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    approved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    applied_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("protocol_version.id"))
    applied_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    proposer: Mapped[Optional[StaffUser]] = relationship(foreign_keys=[proposed_by_id])
    approver: Mapped[Optional[StaffUser]] = relationship(foreign_keys=[approved_by_id])


class SiteArchive(db.Model):
    """One site's archive as built on the web: the zip kept under the instance folder, its
    SHA-256, and its custody (downloaded, confirmed received by the site)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    site: Mapped[str] = mapped_column(String(80))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    # The archive's own hash (manifest ``archive_sha256``) and the zip's, as downloaded.
    archive_sha256: Mapped[str] = mapped_column(String(64))
    zip_sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(200))
    built_by_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"))
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)
    downloaded_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    received_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_user.id"))
    received_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    built_by: Mapped[StaffUser] = relationship(foreign_keys=[built_by_id])
    received_by: Mapped[Optional[StaffUser]] = relationship(foreign_keys=[received_by_id])


class AuditEvent(db.Model):
    """Who, when, what, old value, new value, why. Append-only: see ``forbid_audit_changes``."""

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[Optional[int]] = mapped_column(Integer)
    participant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("participant.id"), index=True)
    field: Mapped[Optional[str]] = mapped_column(String(128))
    old_value: Mapped[Optional[str]] = mapped_column(Text)
    new_value: Mapped[Optional[str]] = mapped_column(Text)
    reason: Mapped[Optional[str]] = mapped_column(Text)


# --- Study figures: derived data, counted by the scheduler each minute (see figures.py) ---------
# Not records: each refresh replaces a study's rows whole, by Core statements (the no-delete
# rule above guards the trial's records, which these are computed from).


class FiguresSnapshot(db.Model):
    """When a study's figures were last counted, how long the counting took, and which
    generation of the figures rows is the count (the rows of a new count are written beside the
    old ones in short transactions, then this row moves to them)."""

    __tablename__ = "figures_snapshot"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    took_ms: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ParticipantFigures(db.Model):
    """One participant's adherence figures as of the snapshot: what the grid sorts and filters on."""

    __tablename__ = "figures_participant"

    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    scheduled: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer)
    completed_late: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)
    compliance_pct: Mapped[Optional[float]] = mapped_column(Float)
    missed_required: Mapped[int] = mapped_column(Integer)
    overdue: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[int] = mapped_column(Integer)
    unacknowledged: Mapped[int] = mapped_column(Integer)
    # adherence.STATE_BITS of the states the participant's assessments are in.
    states: Mapped[int] = mapped_column(Integer)
    needs_attention: Mapped[bool] = mapped_column(Boolean)


class TimepointFigures(db.Model):
    """Assessments in one state at one (site, period, time point), as of the snapshot."""

    __tablename__ = "figures_timepoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)
    site: Mapped[str] = mapped_column(String(80))
    period: Mapped[int] = mapped_column(Integer)
    timepoint: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(20))
    optional: Mapped[bool] = mapped_column(Boolean)
    count: Mapped[int] = mapped_column(Integer)


class VasFigures(db.Model):
    """The VAS % change from baseline summed per (sequence, dummy sequence, treatment, period,
    time point), as of the snapshot: n, sum and sum of squares, so any split's mean and SD
    follow by adding (the blinding guard chooses the split)."""

    __tablename__ = "figures_vas"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)
    sequence: Mapped[str] = mapped_column(String(16))
    dummy_sequence: Mapped[Optional[str]] = mapped_column(String(16))
    treatment: Mapped[str] = mapped_column(String(8))
    period: Mapped[int] = mapped_column(Integer)
    timepoint: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)
    squares: Mapped[float] = mapped_column(Float)


class SchedulerHeartbeat(db.Model):
    """One row per scheduler process, rewritten at the end of each of its passes: the status
    page and the staff banner say the scheduler is silent when the newest is over 3 minutes old."""

    __tablename__ = "scheduler_heartbeat"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)  # host:pid
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_pass_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_pass_ms: Mapped[int] = mapped_column(Integer)
    last_summary: Mapped[str] = mapped_column(String(500))


class PassWatermark(db.Model):
    """How far a scheduler step has judged the study: the next pass looks only at what changed
    since ``through`` (with an overlap, for writes that committed late), and judges everything
    again once ``full_at`` is an hour old or the protocol version changed. Derived data: losing
    it costs one full pass, nothing else."""

    __tablename__ = "pass_watermark"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)  # "planning", "follow_up"
    through: Mapped[datetime] = mapped_column(UTCDateTime)
    full_at: Mapped[datetime] = mapped_column(UTCDateTime)
    protocol_version_id: Mapped[Optional[int]] = mapped_column(Integer)


class HardDeleteRefused(Exception):
    pass


@event.listens_for(Session, "before_flush")
def forbid_deletes(session, flush_context, instances):
    """Rule 3: nothing is hard-deleted. Withdrawal and revocation are states, not deletes."""
    if session.deleted:
        names = sorted({type(obj).__name__ for obj in session.deleted})
        raise HardDeleteRefused(f"diary never deletes records ({', '.join(names)})")
    for obj in session.dirty:
        if isinstance(obj, AuditEvent) and session.is_modified(obj):
            raise HardDeleteRefused("audit events are append-only")
