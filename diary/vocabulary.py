"""The trial's words, each defined once.

Database check constraints, form choices, export allowed values and template globals are all
built from these enums, so a word added or renamed here changes everywhere at once.
"""

from __future__ import annotations

from enum import StrEnum


class Sex(StrEnum):
    """Sex as collected at enrolment, in CDISC's SEX codes; U when not collected or not known."""

    FEMALE = "F"
    MALE = "M"
    UNKNOWN = "U"


SEX_LABELS = {Sex.FEMALE: "Female", Sex.MALE: "Male", Sex.UNKNOWN: "Not collected / unknown"}


class ParticipantStatus(StrEnum):
    ACTIVE = "active"
    # Stopped treatment (no more infusions) but stays in follow-up: the diary keeps asking for the
    # entries of the current period, with reminders (ICH E6(R3) 3.16.1(u)).
    DISCONTINUED = "discontinued"
    # Withdrew consent: no further contact; the data already given is kept.
    WITHDRAWN = "withdrawn"

    @classmethod
    def in_diary(cls) -> tuple[ParticipantStatus, ...]:
        """Participants the diary still asks for entries, reminds and follows up."""
        return (cls.ACTIVE, cls.DISCONTINUED)


class DecidedBy(StrEnum):
    """Who decided that a participant stops treatment or leaves the study."""

    PARTICIPANT = "participant"
    INVESTIGATOR = "investigator"
    SPONSOR = "sponsor"


class WithdrawalReason(StrEnum):
    """Why a participant left, as a category an analyst can count (the words stay in the audit trail)."""

    PARTICIPANT_DECISION = "participant_decision"
    ADVERSE_EVENT = "adverse_event"
    LOST_TO_FOLLOW_UP = "lost_to_follow_up"
    INVESTIGATOR_DECISION = "investigator_decision"
    PROTOCOL_DEVIATION = "protocol_deviation"
    OTHER = "other"


WITHDRAWAL_LABELS = {
    WithdrawalReason.PARTICIPANT_DECISION: "The participant's decision",
    WithdrawalReason.ADVERSE_EVENT: "An adverse event",
    WithdrawalReason.LOST_TO_FOLLOW_UP: "Lost to follow-up",
    WithdrawalReason.INVESTIGATOR_DECISION: "The investigator's decision",
    WithdrawalReason.PROTOCOL_DEVIATION: "A protocol deviation",
    WithdrawalReason.OTHER: "Other",
}


class Source(StrEnum):
    """Who entered a submission: the participant, or staff on their behalf from a source."""

    PARTICIPANT = "participant"
    PHONE_INTERVIEW = "phone_interview"
    PAPER = "paper"
    CLINIC_VISIT = "clinic_visit"

    @classmethod
    def proxies(cls) -> tuple[Source, ...]:
        """Sources a coordinator may name when entering on a participant's behalf."""
        return tuple(source for source in cls if source is not cls.PARTICIPANT)


class SubmissionMode(StrEnum):
    """How an entry reached the server: on line from the phone, kept on the phone and sent when
    the connection came back, or entered by staff."""

    ONLINE = "online"
    OFFLINE_SYNC = "offline_sync"
    STAFF = "staff"


SOURCE_LABELS = {
    Source.PARTICIPANT: "Participant",
    Source.PHONE_INTERVIEW: "Phone interview",
    Source.PAPER: "Paper form",
    Source.CLINIC_VISIT: "Clinic visit",
}


class Severity(StrEnum):
    """Answers of the side-effect checklist; reports are stored only for the last three."""

    NONE = "none"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"

    @classmethod
    def reported(cls) -> tuple[Severity, ...]:
        return (cls.MILD, cls.MODERATE, cls.SEVERE)


def severity_label(level: str) -> str:
    """A severity as the participant reads it, in their language."""
    from flask_babel import gettext as _

    labels = {
        Severity.NONE: _("None"),
        Severity.MILD: _("Mild"),
        Severity.MODERATE: _("Moderate"),
        Severity.SEVERE: _("Severe"),
    }
    return labels.get(level, level)


class Role(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    ANALYST = "analyst"
    UNBLINDED = "unblinded"
    # May break the code of one participant in an emergency (and nothing else of the blind).
    EMERGENCY = "emergency"
    # Controls the site's participant data: approves or rejects change requests, signs periods.
    INVESTIGATOR = "investigator"


class Allocation(StrEnum):
    """What a reader may see of the allocation (decided by ``blinding.blinding_for``)."""

    TRUE = "true"  # the true sequences (as masked A/B codes while the study is blinded)
    DUMMY = "dummy"  # the stored dummy allocation, flagged as such, for writing programs on
    NONE = "none"  # no allocation at all, not even aggregated by it


class Split(StrEnum):
    """How an aggregate (the study summary's means) is grouped for a reader."""

    TREATMENT = "treatment"  # by drug: the study is unblinded
    SEQUENCE = "sequence"  # by true sequence: the unblinded role, before unblinding
    DUMMY_SEQUENCE = "dummy_sequence"  # by the dummy allocation, said on the page
    POOLED = "pooled"  # everyone together


class AmendmentState(StrEnum):
    """Where a proposed protocol amendment stands."""

    PROPOSED = "proposed"  # a critical one, waiting for a second person's approval
    APPLIED = "applied"  # the study's current version from then on
    WITHDRAWN = "withdrawn"


class AmendmentClass(StrEnum):
    """How much an amendment changes (``protocol.diff``): additive ones apply at once."""

    ADDITIVE = "additive"
    CRITICAL = "critical"


class ReviewState(StrEnum):
    """Where a side-effect report stands with the study team."""

    NEW = "new"
    REVIEWED = "reviewed"
    AE_RECORDED = "ae_recorded"  # reviewed and recorded as an adverse event in the site's AE log


class FollowUpOutcome(StrEnum):
    """How a follow-up call ended; recording one closes the task."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    LEFT_MESSAGE = "left_message"
    WITHDRAWN = "withdrawn"
    # Closed by a pass: the cause is gone (the missing entry arrived, the report was reviewed,
    # the participant withdrew). Never recorded by a person.
    RESOLVED_BY_DATA = "resolved_by_data"


FOLLOW_UP_LABELS = {
    FollowUpOutcome.REACHED: "Reached the participant",
    FollowUpOutcome.NO_ANSWER: "No answer",
    FollowUpOutcome.LEFT_MESSAGE: "Left a message",
    FollowUpOutcome.WITHDRAWN: "Participant withdraws",
    FollowUpOutcome.RESOLVED_BY_DATA: "Resolved by data",
}
# How a person may close a call (a pass alone closes a task as resolved by data).
CALL_OUTCOMES = tuple(o for o in FollowUpOutcome if o is not FollowUpOutcome.RESOLVED_BY_DATA)


class StaffMessageKind(StrEnum):
    """Emails to the study team, sent through the outbox like reminders."""

    SEVERE_ALERT = "severe_alert"
    CODE_BREAK = "code_break"
    FOLLOW_UP_DIGEST = "follow_up_digest"


class AssessmentState(StrEnum):
    """The state of an assessment, worked out from ``now`` and its submission (never stored)."""

    UPCOMING = "upcoming"
    OPEN = "open"
    COMPLETED = "completed"
    COMPLETED_LATE = "completed_late"
    MISSED = "missed"
    NOT_APPLICABLE = "not_applicable"
    # A baseline collected after the infusion had started: kept, shown, not a baseline.
    AFTER_DOSE = "after_dose"
    # A corrected infusion time left the submitted entry outside its window.
    OUT_OF_WINDOW = "out_of_window"

    @classmethod
    def counted(cls) -> tuple[AssessmentState, ...]:
        """Entries whose answers stand for their time point: the endpoints, the summary and
        adherence ("done") count these and nothing else."""
        return (cls.COMPLETED, cls.COMPLETED_LATE)

    @classmethod
    def flagged(cls) -> tuple[AssessmentState, ...]:
        """Entries kept and shown but no longer inside the rules (an infusion time was corrected
        after they were given): left out of the endpoints, counted as missed in adherence."""
        return (cls.AFTER_DOSE, cls.OUT_OF_WINDOW)


# The short words of the staff pages' badges.
STATE_TEXT = {
    AssessmentState.UPCOMING: "upcoming",
    AssessmentState.OPEN: "open",
    AssessmentState.COMPLETED: "done",
    AssessmentState.COMPLETED_LATE: "late",
    AssessmentState.MISSED: "missed",
    AssessmentState.NOT_APPLICABLE: "n/a",
    AssessmentState.AFTER_DOSE: "after dose",
    AssessmentState.OUT_OF_WINDOW: "out of window",
}


class ReminderKind(StrEnum):
    WINDOW_OPEN = "window_open"
    CLOSING_SOON = "closing_soon"


class ReminderChannel(StrEnum):
    EMAIL = "email"
    PUSH = "push"


class ReminderState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    # No channel is configured to carry it (no SMTP server, no web push key): said, with the
    # reason, and printed by the scheduler, never marked sent.
    NOT_SENT = "not_sent"

    @classmethod
    def undelivered(cls) -> tuple[ReminderState, ...]:
        """Given up on or never sent: what the status page and the site digest report."""
        return (cls.NOT_SENT, cls.FAILED, cls.EXPIRED)

    @classmethod
    def waiting(cls) -> tuple[ReminderState, ...]:
        """Still to be (re)tried by a dispatch pass."""
        return (cls.PENDING, cls.SENDING, cls.FAILED)


class ChangeRequestType(StrEnum):
    """Why a participant's value should change (the C-Path eCOA consortium's categories)."""

    ENTERED_IN_ERROR = "entered_in_error"
    WRONG_TIMEPOINT = "wrong_timepoint"
    DUPLICATE = "duplicate"
    WRONG_PARTICIPANT = "wrong_participant"
    OTHER = "other"


CHANGE_REQUEST_LABELS = {
    ChangeRequestType.ENTERED_IN_ERROR: "Entered in error, as reported by the participant",
    ChangeRequestType.WRONG_TIMEPOINT: "Entered at the wrong time point",
    ChangeRequestType.DUPLICATE: "Duplicate entry",
    ChangeRequestType.WRONG_PARTICIPANT: "Entered for the wrong participant",
    ChangeRequestType.OTHER: "Other",
}


class ChangeRequestState(StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"


class SignatureKind(StrEnum):
    """What the investigator did with a participant-period: signed it, or waived the signature."""

    SIGNED = "signed"
    WAIVED = "waived"


class SignatureStatus(StrEnum):
    """A participant-period's sign-off as of now (worked out, never stored)."""

    NOT_SIGNED = "not_signed"
    SIGNED = "signed"
    WAIVED = "waived"
    # Signed (or waived), then a value changed: the period is listed to re-sign.
    INVALID = "invalid"


SIGNATURE_TEXT = {
    SignatureStatus.NOT_SIGNED: "not signed",
    SignatureStatus.SIGNED: "signed",
    SignatureStatus.WAIVED: "waived",
    SignatureStatus.INVALID: "changed since signed: to re-sign",
}


class AuditAction(StrEnum):
    """What an audit event records (``audit.record`` refuses any other word)."""

    ACKNOWLEDGE_SIDE_EFFECT = "acknowledge_side_effect"
    APPLY_AMENDMENT = "apply_amendment"
    APPROVE_AMENDMENT = "approve_amendment"
    PROPOSE_AMENDMENT = "propose_amendment"
    REWINDOW_BY_AMENDMENT = "rewindow_by_amendment"
    WITHDRAW_AMENDMENT = "withdraw_amendment"
    ASSIGN_RANDOMIZATION_SLOT = "assign_randomization_slot"
    BREAK_CODE = "break_code"
    CHANGE_ACTIVE = "change_active"
    CHANGE_CONTACT = "change_contact"
    CHANGE_LANGUAGE = "change_language"
    CHANGE_PASSWORD = "change_password"
    CHANGE_REMINDER_CHANNEL = "change_reminder_channel"
    CHANGE_ROLE = "change_role"
    CLOSE_FOLLOW_UP = "close_follow_up"
    CORRECT_DOSE = "correct_dose"
    CORRECT_VALUE = "correct_value"
    CREATE_USER = "create_user"
    ENROLL = "enroll"
    EXPORT = "export"
    IDENTIFIED_EXPORT = "identified_export"
    LOAD_PROTOCOL = "load_protocol"
    OFFLINE_ENTRY_REFUSED = "offline_entry_refused"
    PARTICIPANT_SIGN_OUT = "participant_sign_out"
    PIN_LOCKED = "pin_locked"
    PLAN_DOSE = "plan_dose"
    PROXY_ENTRY = "proxy_entry"
    PUSH_SUBSCRIBE = "push_subscribe"
    RECORD_DOSE = "record_dose"
    RECOVERY_CODE_USED = "recovery_code_used"
    REISSUE_LINK = "reissue_link"
    REPLAN_DOSE = "replan_dose"
    RESET_PIN = "reset_pin"
    RESOLVE_FOLLOW_UP = "resolve_follow_up"
    REVOKE_LINK = "revoke_link"
    SECOND_FACTOR_ENABLED = "second_factor_enabled"
    SECOND_FACTOR_FAILED = "second_factor_failed"
    SECOND_FACTOR_SETUP_FAILED = "second_factor_setup_failed"
    SESSION_EXPIRED = "session_expired"
    SET_PIN = "set_pin"
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_OUT = "sign_out"
    SUBMIT = "submit"
    UNBLIND = "unblind"
    UPLOAD_RANDOMIZATION = "upload_randomization"
    VIEW_CONTACT = "view_contact"
    WITHDRAW = "withdraw"
    DISCONTINUE = "discontinue"
    REQUEST_CHANGE = "request_change"
    APPROVE_CHANGE = "approve_change"
    REJECT_CHANGE = "reject_change"
    SIGN_PERIOD = "sign_period"
    WAIVE_SIGNATURE = "waive_signature"
    LOCK_STUDY = "lock_study"
    UNLOCK_STUDY = "unlock_study"
    REVIEW_AUDIT_CHECK = "review_audit_check"
    # A site's archive (its custody: built, downloaded, confirmed received by the site).
    ARCHIVE_BUILT = "archive_built"
    ARCHIVE_DOWNLOADED = "archive_downloaded"
    ARCHIVE_RECEIVED = "archive_received"
    # A participant took a copy of their own answers (PDF or CSV).
    OWN_DATA_DOWNLOADED = "own_data_downloaded"
    CHANGE_TOLD_TREATMENT = "change_told_treatment"
    # A verbatim side effect coded (or recoded) to the protocol's dictionary.
    CODE_SIDE_EFFECT = "code_side_effect"


class ActorKind(StrEnum):
    """Who an audit event's actor is: ``staff:EMAIL``, ``participant:CODE``, or one of the
    server's own actors without a name (the command line, a scheduler pass, the demo loader)."""

    STAFF = "staff"
    PARTICIPANT = "participant"
    CLI = "cli"
    SYSTEM = "system"
    DEMO = "demo"


class ItemType(StrEnum):
    """The kinds of question a protocol's instrument may ask."""

    VAS = "vas"
    NRS = "nrs"
    SINGLE_CHOICE = "single_choice"
    SEVERITY_CHECKLIST = "severity_checklist"
    FREE_TEXT = "free_text"


class ExportFormat(StrEnum):
    """The file formats of the analysis tables."""

    CSV = "csv"
    PARQUET = "parquet"
    XLSX = "xlsx"


def sql_in(column: str, words, *, nullable: bool = False) -> str:
    """A check constraint's text: ``column IN ('a', 'b')`` from an enum (or a subset of it)."""
    listed = ", ".join(f"'{word}'" for word in words)
    text = f"{column} IN ({listed})"
    return f"{column} IS NULL OR {text}" if nullable else text


def listed(words) -> str:
    """Allowed values as the data dictionary writes them: 'a; b; c'."""
    return "; ".join(str(word) for word in words)


def spoken(words) -> str:
    """Words as a sentence lists them: 'none, mild, moderate or severe'."""
    words = [str(word) for word in words]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


# Exposed to every template, so pages compare against the same words (see web/__init__).
TEMPLATE_GLOBALS = {
    "AssessmentState": AssessmentState,
    "ParticipantStatus": ParticipantStatus,
    "ReviewState": ReviewState,
    "FollowUpOutcome": FollowUpOutcome,
    "Source": Source,
    "Severity": Severity,
    "Role": Role,
    "ReminderState": ReminderState,
    "Split": Split,
    "STATE_TEXT": STATE_TEXT,
    "SOURCE_LABELS": SOURCE_LABELS,
    "FOLLOW_UP_LABELS": FOLLOW_UP_LABELS,
    "severity_label": severity_label,
    "ItemType": ItemType,
    "ReminderChannel": ReminderChannel,
    "AuditAction": AuditAction,
    "ExportFormat": ExportFormat,
    "SignatureStatus": SignatureStatus,
    "SIGNATURE_TEXT": SIGNATURE_TEXT,
    "AmendmentState": AmendmentState,
    "AmendmentClass": AmendmentClass,
}
